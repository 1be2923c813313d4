"""The deployment files are kept in step with the code: shellcheck passes on every script, the MinIO
wiring's functions file loads in the real gateway (`--check`), the compose file only uses flags the binary
has and files that exist, and MinIO's webhook target, token and ARN agree across the files."""
import glob
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import binary

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MINIO = os.path.join(ROOT, "infra", "minio")


def env_file(path):
    values = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_shellcheck_passes_on_every_script():
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is not installed (scripts/test installs it)")
    scripts = [os.path.join(ROOT, "scripts", name) for name in ("demo", "test", "lib.sh", "bench-gateway", "bench-store",
                                                                 "bench-triggers", "bench-transcode", "bench-pipeline")]
    scripts += glob.glob(os.path.join(ROOT, "infra", "**", "*.sh"), recursive=True)
    scripts += glob.glob(os.path.join(ROOT, "localstack", "**", "*.sh"), recursive=True)
    scripts += [os.path.join(ROOT, ".ci", "run")]
    out = subprocess.run(["shellcheck", "-x", "-S", "warning", *scripts], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout


def test_minio_compose_matches_the_binary_and_the_wiring():
    compose = yaml.safe_load(open(os.path.join(MINIO, "compose.yaml")))
    gateway = compose["services"]["gateway"]
    minio_env = env_file(os.path.join(MINIO, "minio.env"))

    # The functions file loads in the real gateway with the environment compose gives it.
    environment = {**os.environ, **{k: str(v) for k, v in gateway["environment"].items()}}
    out = subprocess.run([binary("CINESCALE_BIN"), "gateway", "--config", os.path.join(MINIO, "functions.yaml"), "--check"],
                         capture_output=True, text=True, env=environment)
    assert out.returncode == 0, out.stderr
    assert "trigger ingest uploads/* → probe" in out.stdout and "trigger media */metadata.json → transcode" in out.stdout

    # Every flag the compose command uses exists.
    help_text = subprocess.run([binary("CINESCALE_BIN"), "gateway", "--help"], capture_output=True, text=True).stdout
    for flag in [part for part in gateway["command"] if part.startswith("--")]:
        assert re.search(rf"(^|\s){re.escape(flag)}(\s|$)", help_text, re.M), f"{flag} is not a gateway option"

    # The webhook target MinIO posts to is the gateway, with the token the gateway checks, under the id the
    # bucket rules name.
    assert minio_env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_CINESCALE"] == "http://gateway:8080/events"
    assert minio_env["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_CINESCALE"] == gateway["environment"]["CINESCALE_EVENT_TOKEN"]
    assert minio_env["MINIO_API_SYNC_EVENTS"] == "on" and minio_env["MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_CINESCALE"]
    setup = open(os.path.join(MINIO, "setup.sh")).read()
    assert 'ARN="arn:minio:sqs::CINESCALE:webhook"' in setup
    # The gateway signs with MinIO's root credentials, and hands the same to the functions.
    assert gateway["environment"]["CINESCALE_ACCESS_KEY"] == minio_env["MINIO_ROOT_USER"]
    assert gateway["environment"]["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]

    # Files compose and the Dockerfile refer to exist, and the Dockerfile builds products the package has.
    for volume in compose["services"]["setup"]["volumes"] + gateway["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("."):
            assert os.path.exists(os.path.join(MINIO, source)), volume
    dockerfile = os.path.join(MINIO, gateway["build"]["context"], gateway["build"]["dockerfile"])
    package = open(os.path.join(ROOT, "Package.swift")).read()
    for product in re.findall(r"--product (\S+)", open(dockerfile).read()):
        assert f'.executable(name: "{product}"' in package, product


def test_kubernetes_manifests_are_valid_and_match_the_binary(tmp_path):
    manifests = sorted(glob.glob(os.path.join(ROOT, "infra", "k8s", "*.yaml")))
    validate = os.path.join(os.path.dirname(os.sys.executable), "kubernetes-validate")
    out = subprocess.run([validate, "--strict", "--quiet", *manifests], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

    documents = [d for path in manifests for d in yaml.safe_load_all(open(path)) if d]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    deployment = by_kind[("Deployment", "cinescale-gateway")]
    gateway = deployment["spec"]["template"]["spec"]
    container = gateway["containers"][0]

    # The flags exist; the functions file in the ConfigMap loads in the real gateway.
    help_text = subprocess.run([binary("CINESCALE_BIN"), "gateway", "--help"], capture_output=True, text=True).stdout
    for flag in [part for part in container["args"] if part.startswith("--")]:
        assert re.search(rf"(^|\s){re.escape(flag)}(\s|$)", help_text, re.M), f"{flag} is not a gateway option"
    functions = tmp_path / "functions.yaml"
    functions.write_text(by_kind[("ConfigMap", "cinescale-functions")]["data"]["functions.yaml"])
    out = subprocess.run([binary("CINESCALE_BIN"), "gateway", "--config", str(functions), "--check"], capture_output=True,
                         text=True, env={**os.environ, "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b",
                                         "PGPASSWORD": "c"})
    assert out.returncode == 0, out.stderr

    # Several replicas (and an autoscaler) only on the shared queue: the functions file names PostgreSQL at
    # the Service that exists, its ${PGPASSWORD} comes from the Secret, and the HPA scales this Deployment.
    queue = yaml.safe_load(functions.read_text())["queue"]
    assert "postgres" in queue and "path" not in queue, queue
    assert "@postgres:5432/" in queue["postgres"] and ("Service", "postgres") in by_kind
    assert any(v["name"] == "PGPASSWORD" for v in container["env"])
    hpa = by_kind[("HorizontalPodAutoscaler", "cinescale-gateway")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cinescale-gateway"}
    assert deployment["spec"]["replicas"] >= hpa["minReplicas"] >= 2
    # No pod-local durable state: every volume is the ConfigMap or scratch.
    assert all("configMap" in v or "emptyDir" in v for v in gateway["volumes"]), gateway["volumes"]

    # Every Secret key the pod reads exists; probes hit /healthz on the served port; the pod runs as the
    # image's user; the ConfigMap is mounted where --config points.
    secret = by_kind[("Secret", "cinescale-credentials")]["stringData"]
    for variable in container["env"]:
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference:
            assert reference["name"] == "cinescale-credentials" and reference["key"] in secret, variable
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == int(container["args"][container["args"].index("--port") + 1])
    dockerfile = open(os.path.join(ROOT, "infra", "docker", "Dockerfile")).read()
    assert f"--uid {gateway['securityContext']['runAsUser']} " in dockerfile
    mount = next(m for m in container["volumeMounts"] if m["name"] == "functions")["mountPath"]
    assert container["args"][container["args"].index("--config") + 1] == mount + "/functions.yaml"


# --- AWS (infra/aws): the CloudFormation template, package.sh and deploy.sh -------------------------------------
# None of it can reach AWS from here. cfn-lint checks the template (schema, references, dependency cycles); the
# tests below hold it to the Swift sources (the variables the functions read, the keys they write), to the
# wiring infra/minio and `cinescale dev` use, and run package.sh and deploy.sh for real (deploy.sh against a
# stub aws-cli that records what it is asked).

AWS = os.path.join(ROOT, "infra", "aws")
TEMPLATE = os.path.join(AWS, "template.yaml")
# Set by Lambda itself; a function may not set them (AWS_REGION and the role's credentials reach the executables
# this way, instead of the AWS_* entries of infra/minio/functions.yaml).
LAMBDA_RESERVED = {
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
}


class CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms: !Ref X → {"Ref": X}, !Sub s → {"Fn::Sub": s}, !GetAtt A.B → [A, B]."""


def _short_form(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _short_form)


def cfn_template(text=None):
    return yaml.load(text if text is not None else open(TEMPLATE).read(), Loader=CloudFormationLoader)


def resources(template, kind):
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def lambda_functions(template):
    """{handler (the executable's name): (logical id, properties)}."""
    return {r["Properties"]["Handler"]: (name, r["Properties"])
            for name, r in resources(template, "AWS::Lambda::Function").items()}


def variables_read_by(function):
    """The environment variables a media function's Swift sources read (its main.swift, MediaFunctionSupport and
    FunctionRuntime): `environment["X"]`, `variables["X"]`, `number("X", …)`."""
    paths = [os.path.join(ROOT, "functions", function, "main.swift")]
    paths += glob.glob(os.path.join(ROOT, "Sources", "MediaFunctionSupport", "*.swift"))
    paths += glob.glob(os.path.join(ROOT, "Sources", "FunctionRuntime", "*.swift"))
    names = set()
    for path in paths:
        source = open(path).read()
        names |= set(re.findall(r'(?:environment|variables)\[\s*"([A-Z][A-Z0-9_]*)"\s*\]', source))
        names |= set(re.findall(r'\bnumber\(\s*"([A-Z][A-Z0-9_]*)"', source))
    return names


def bucket_named(template, name):
    """The bucket resource whose BucketName is PREFIX-<name>-ACCOUNT-REGION, and that name's Fn::Sub string."""
    found = [(logical, r) for logical, r in resources(template, "AWS::S3::Bucket").items()
             if f"-{name}-" in r["Properties"]["BucketName"]["Fn::Sub"]]
    assert len(found) == 1, f"one bucket named *-{name}-*: {found}"
    logical, bucket = found[0]
    return logical, bucket, bucket["Properties"]["BucketName"]["Fn::Sub"]


def test_aws_template_passes_cfn_lint_and_its_cycle_check_bites(tmp_path):
    lint = os.path.join(os.path.dirname(os.sys.executable), "cfn-lint")
    out = subprocess.run([lint, "--include-checks", "I", "--", TEMPLATE], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr

    # The pitfall the template avoids: a role (or permission) naming its trigger bucket through the bucket
    # resource closes the cycle bucket → permission → function → role → bucket, which cfn-lint reports.
    text = open(TEMPLATE).read()
    _, _, ingest_name = bucket_named(cfn_template(), "ingest")
    pinned = f'!Sub "arn:${{AWS::Partition}}:s3:::{ingest_name}/uploads/*"'
    assert pinned in text
    cyclic = tmp_path / "cyclic.yaml"
    cyclic.write_text(text.replace(pinned, '!Sub "${IngestBucket.Arn}/uploads/*"'))
    out = subprocess.run([lint, "--", str(cyclic)], capture_output=True, text=True)
    assert out.returncode != 0 and "E3004" in out.stdout, out.stdout


def test_aws_functions_run_the_executables_with_the_variables_they_read():
    template = cfn_template()
    functions = lambda_functions(template)
    gateway = yaml.safe_load(open(os.path.join(MINIO, "functions.yaml")))["functions"]
    package = open(os.path.join(ROOT, "Package.swift")).read()
    package_sh = open(os.path.join(AWS, "package.sh")).read()
    deploy_sh = open(os.path.join(AWS, "deploy.sh")).read()
    assert set(functions) == set(gateway) == {"probe", "transcode"}
    _, _, media_name = bucket_named(template, "media")

    for name, (logical, properties) in functions.items():
        # The executable package.sh zips as bootstrap, on the OS-only runtime, for the architecture it builds.
        assert f'.executable(name: "{name}"' in package, name
        assert properties["Runtime"] == "provided.al2023" and properties["Architectures"] == ["x86_64"], logical
        assert "FUNCTIONS=(probe transcode)" in package_sh and "--static-swift-stdlib" in package_sh
        code_key = properties["Code"]["S3Key"]["Ref"]
        assert code_key == f"{name.capitalize()}CodeKey" and code_key in template["Parameters"]
        assert f'"{code_key}=$' in deploy_sh and f"upload {name})" in deploy_sh, code_key

        # Every variable set is one the Swift code reads (TMPDIR: Foundation's temporary directory), none is one
        # Lambda reserves, and every setting the gateway's functions file gives it is given here too.
        variables = properties["Environment"]["Variables"]
        read = variables_read_by(name)
        assert {"MEDIA_BUCKET", "CINESCALE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_REGION", "LOG_LEVEL"} <= read
        unknown = set(variables) - read - {"TMPDIR"}
        assert not unknown, f"{logical} sets variables {name} never reads: {unknown}"
        assert not set(variables) & LAMBDA_RESERVED
        expected = set(gateway[name]["environment"]) - LAMBDA_RESERVED
        assert expected <= set(variables), f"{logical} lacks {expected - set(variables)}"
        assert variables["MEDIA_BUCKET"] == {"Fn::Sub": media_name}
        assert variables["CINESCALE_S3_ENDPOINT"] == {"Fn::Sub": "https://s3.${AWS::Region}.${AWS::URLSuffix}"}

    # transcode's scratch directory (WORK_DIR, else the temporary directory) is on /tmp, the only writable place
    # on Lambda, sized by EphemeralStorage; Lambda's ceilings bound the defaults.
    _, transcode = functions["transcode"]
    assert "WORK_DIR" in read and transcode["Environment"]["Variables"]["WORK_DIR"] == "/tmp"
    assert transcode["Environment"]["Variables"]["TMPDIR"] == "/tmp"
    parameters = template["Parameters"]
    storage = parameters[transcode["EphemeralStorage"]["Size"]["Ref"]]
    assert storage["MaxValue"] == 10240 and storage["Default"] >= 4096
    for _, properties in functions.values():
        timeout = parameters[properties["Timeout"]["Ref"]]
        assert timeout["MaxValue"] <= 900 and timeout["Default"] <= timeout["MaxValue"]
        memory = parameters[properties["MemorySize"]["Ref"]]
        assert 128 <= memory["Default"] <= memory["MaxValue"] <= 10240


def test_aws_triggers_mirror_the_minio_and_dev_wiring():
    template = cfn_template()
    functions = lambda_functions(template)
    by_logical = {logical: name for name, (logical, _) in functions.items()}
    gateway = yaml.safe_load(open(os.path.join(MINIO, "functions.yaml")))

    # The rules of infra/minio and `cinescale dev` agree: (function, bucket, filter, value).
    minio_rules = {(t["function"], t["bucket"], kind, t[kind]) for t in gateway["triggers"] for kind in ("prefix", "suffix")
                   if kind in t}
    dev = open(os.path.join(ROOT, "Sources", "cinescale", "DevCommand.swift")).read()
    dev_rules = set(re.findall(
        r'\["function": "(\w+)", "bucket": apiOptions\.(\w+)Bucket, "(prefix|suffix)": "([^"]+)"\]', dev))
    assert minio_rules == dev_rules and len(minio_rules) == 2

    aws_rules = set()
    permissions = resources(template, "AWS::Lambda::Permission")
    for bucket_name in {rule[1] for rule in minio_rules}:
        logical, bucket, name = bucket_named(template, bucket_name)
        for configuration in bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]:
            assert configuration["Event"] == "s3:ObjectCreated:*"
            target = configuration["Function"]["Fn::GetAtt"]
            assert target[1] == "Arn"
            rules = configuration["Filter"]["S3Key"]["Rules"]
            assert len(rules) == 1
            aws_rules.add((by_logical[target[0]], bucket_name, rules[0]["Name"], rules[0]["Value"]))

            # No cycle: S3 checks the permission when the configuration is written, so the bucket waits for
            # it, and the permission names the bucket by the same built name, not through the bucket resource.
            permission = [p["Properties"] for p in permissions.values()
                          if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [target[0], "Arn"]}]
            assert len(permission) == 1
            assert logical != target[0] and bucket.get("DependsOn") in (
                [n for n, p in permissions.items() if p["Properties"] is permission[0]][0],)
            assert permission[0]["Principal"] == "s3.amazonaws.com"
            assert permission[0]["Action"] == "lambda:InvokeFunction"
            assert permission[0]["SourceArn"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::" + name}
            assert permission[0]["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert aws_rules == minio_rules

    # Asynchronous invocations: the gateway's attempts (retries = attempts - 1), then the dead-letter queue.
    queues = resources(template, "AWS::SQS::Queue")
    assert len(queues) == 1
    queue = next(iter(queues))
    configs = {c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
               for c in resources(template, "AWS::Lambda::EventInvokeConfig").values()}
    for name, (logical, _) in functions.items():
        config = configs[logical]
        assert config["MaximumRetryAttempts"] == gateway["functions"][name]["retry"]["maxAttempts"] - 1, name
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [queue, "Arn"]}
        assert config["Qualifier"] == "$LATEST"


def keys_written_by(function):
    """Sample keys of everything a media function writes to the media bucket, from the Swift sources: the
    VideoKeys helpers its sources call (MediaFunctionSupport) and the "\\(id)/…" literals it builds itself."""
    support = open(os.path.join(ROOT, "Sources", "MediaFunctionSupport", "MediaFunctionSupport.swift")).read()
    helpers = dict(re.findall(r'static func (\w+)\([^)]*\) -> String \{ "([^"]+)" \}', support))
    assert {"metadata", "status", "mp4", "hls", "hlsMaster", "hlsPlaylist"} <= set(helpers)
    directory = os.path.join(ROOT, "functions", function)
    main = "".join(open(os.path.join(directory, f)).read() for f in sorted(os.listdir(directory)) if f.endswith(".swift"))
    patterns = [helpers[h] for h in set(re.findall(r"VideoKeys\.(\w+)\(", main)) if h in helpers]
    patterns += re.findall(r'"(\\\(id\)/[^"]+)"', main)
    samples = set()
    for pattern in patterns:
        key = re.sub(r"\\\([^)]*\)", "v1", pattern)
        samples.add(key + "360p/seg-00001.m4s" if key.endswith("/") else key)
    return samples


def test_aws_roles_grant_what_the_functions_touch_and_no_more():
    import fnmatch

    template = cfn_template()
    functions = lambda_functions(template)
    _, _, ingest = bucket_named(template, "ingest")
    _, _, media = bucket_named(template, "media")
    gateway = yaml.safe_load(open(os.path.join(MINIO, "functions.yaml")))
    upload_prefix = next(t["prefix"] for t in gateway["triggers"] if t["function"] == "probe")
    metadata_suffix = next(t["suffix"] for t in gateway["triggers"] if t["function"] == "transcode")

    def grants(properties):
        """{action: [(bucket sub-string, key pattern) or other resource]} of the function's role."""
        role = template["Resources"][properties["Role"]["Fn::GetAtt"][0]]["Properties"]
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
        granted = {}
        for policy in role["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                assert statement["Effect"] == "Allow"
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                for action in actions:
                    assert "*" not in action, action
                    for target in targets:
                        assert target != "*", statement
                        if isinstance(target, dict) and "Fn::Sub" in target:
                            arn = target["Fn::Sub"]
                            prefix = "arn:${AWS::Partition}:s3:::"
                            assert arn.startswith(prefix), arn
                            bucket, _, key = arn[len(prefix):].partition("/")
                            assert bucket in (ingest, media) and key, arn
                            target = (bucket, key)
                        granted.setdefault(action, []).append(target)
        return granted

    written = {name: keys_written_by(name) for name in functions}
    assert written["probe"] == {"v1/metadata.json", "v1/status.json"}
    assert {"v1/mp4/v1.mp4", "v1/hls/master.m3u8", "v1/status.json"} <= written["transcode"]
    for name, (logical, properties) in functions.items():
        granted = grants(properties)
        puts = [key for bucket, key in granted["s3:PutObject"] if bucket == media]
        assert len(puts) == len(granted["s3:PutObject"]), "writes go to the media bucket only"
        # Every key the function writes is allowed, and every allowed pattern is one it writes.
        for key in written[name]:
            assert any(fnmatch.fnmatchcase(key, pattern) for pattern in puts), f"{logical} may not write {key}"
        others = set().union(*written.values()) - written[name]
        for pattern in puts:
            assert any(fnmatch.fnmatchcase(key, pattern) for key in written[name]), f"{logical} need not write {pattern}"
            # Nor what only the other stage writes (transcode writing metadata.json would trigger itself).
            assert not any(fnmatch.fnmatchcase(key, pattern) for key in others), f"{logical} may write {others} by {pattern}"
        # Reads: the uploads under the probe's trigger prefix; transcode also the metadata.json that triggers it.
        reads = set(granted["s3:GetObject"])
        expected = {(ingest, upload_prefix + "*")}
        if name == "transcode":
            expected.add((media, "*" + metadata_suffix))
            assert set(granted["s3:AbortMultipartUpload"]) <= set(granted["s3:PutObject"])
        assert reads == expected, f"{logical} reads {reads}"
        assert set(granted) <= {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "sqs:SendMessage",
                                "logs:CreateLogStream", "logs:PutLogEvents"}, granted
        log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
        assert granted["logs:PutLogEvents"] == [{"Fn::GetAtt": [log_group, "Arn"]}]

    # The buckets: encrypted, never public, TLS only, and CORS for the web page's presigned PUT (ingest) and
    # signed GETs with Range and HLS (media).
    for name, methods in (("ingest", {"PUT"}), ("media", {"GET", "HEAD"})):
        logical, bucket, _ = bucket_named(template, name)
        properties = bucket["Properties"]
        assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        assert all(properties["PublicAccessBlockConfiguration"].values()) and len(properties["PublicAccessBlockConfiguration"]) == 4
        cors = properties["CorsConfiguration"]["CorsRules"][0]
        assert set(cors["AllowedMethods"]) == methods and "ETag" in cors["ExposedHeaders"]
        if name == "media":
            assert {"Content-Range", "Accept-Ranges", "Content-Length"} <= set(cors["ExposedHeaders"])
        policies = [p["Properties"] for p in resources(template, "AWS::S3::BucketPolicy").values()
                    if p["Properties"]["Bucket"] == {"Ref": logical}]
        statement = policies[0]["PolicyDocument"]["Statement"][0]
        assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_aws_scripts_are_strict_shellcheck_clean_and_explain_themselves():
    scripts = [os.path.join(AWS, "package.sh"), os.path.join(AWS, "deploy.sh")]
    out = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout
    for script in scripts:
        assert "\nset -euo pipefail\n" in open(script).read(), script
        out = subprocess.run([script, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.startswith("usage: infra/aws/"), out.stdout + out.stderr
        out = subprocess.run([script, "--no-such-option"], capture_output=True, text=True)
        assert out.returncode == 2 and "usage:" in out.stderr


def lambda_stub(event):
    """One local server as Lambda's Runtime API (hands out `event` once, then answers /next with 500, which ends
    the function) and as an S3 endpoint that has no object (404 to every GET and HEAD); records what it is sent."""
    import http.server
    import json
    import threading

    seen = []
    handed = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self, status, body=b"", headers=()):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            if not self.path.startswith("/2018-06-01/"):
                seen.append((self.command, self.path, self.headers.get("x-amz-security-token")))
                return self.answer(404, b"<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>",
                                   [("Content-Type", "application/xml")])
            if handed:
                return self.answer(500)
            handed.append(True)
            self.answer(200, json.dumps(event).encode(), [
                ("Content-Type", "application/json"), ("Lambda-Runtime-Aws-Request-Id", "request-1"),
                ("Lambda-Runtime-Deadline-Ms", "4102444800000")])

        do_HEAD = do_GET

        def do_POST(self):
            seen.append(("POST", self.path, self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()))
            self.answer(202)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_aws_package_zips_a_bootstrap_that_needs_nothing_from_the_runtime_image(tmp_path):
    """package.sh on an executable linked against the same FFmpeg libraries as the functions (a C stand-in, so no
    Swift build is needed here; the real probe too when scripts/test built it): the zip holds `bootstrap` and its
    whole library closure, glibc's loader included, and runs unzipped at /var/task in an empty chroot — no
    library of the machine (nor of provided.al2023) is loaded."""
    for tool in ("patchelf", "zip", "unzip", "pkg-config", "readelf"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed (scripts/test installs it)")
    compiler = shutil.which("cc") or shutil.which("clang")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "stand_in.c").write_text(
        "#include <stdio.h>\n#include <libavformat/avformat.h>\n#include <libavcodec/avcodec.h>\n"
        "#include <libswscale/swscale.h>\n#include <libswresample/swresample.h>\n"
        'int main(void) { printf("avformat %u avcodec %u swscale %u swresample %u\\n", avformat_version(), '
        "avcodec_version(), swscale_version(), swresample_version()); return 0; }\n")
    # The libraries the CFFmpeg module map links, exactly.
    modulemap = open(os.path.join(ROOT, "Sources", "CFFmpeg", "module.modulemap")).read()
    libraries = re.findall(r'link "(\w+)"', modulemap)
    assert {"avformat", "avcodec", "swscale", "swresample", "avutil"} == set(libraries)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", *[f"lib{name}" for name in libraries]],
                           capture_output=True, text=True, check=True).stdout.split()
    subprocess.run([compiler, "-o", str(bin_dir / "probe"), str(tmp_path / "stand_in.c"), *flags], check=True)

    dist = tmp_path / "dist"
    out = subprocess.run([os.path.join(AWS, "package.sh"), "--bin-dir", str(bin_dir), "--out", str(dist), "probe"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    import zipfile
    with zipfile.ZipFile(dist / "probe.zip") as archive:
        entries = {info.filename: info for info in archive.infolist()}
        assert (entries["bootstrap"].external_attr >> 16) & 0o777 == 0o755
        names = {name[len("lib/"):] for name in entries if name.startswith("lib/")}
        assert set(entries) == {"bootstrap"} | {f"lib/{n}" for n in names}
        # Everything ldd resolves for the executable, the loader and libc included.
        ldd = subprocess.run(["ldd", str(bin_dir / "probe")], capture_output=True, text=True, check=True).stdout
        needed = {line.split()[0].rsplit("/", 1)[-1] for line in ldd.splitlines() if "=>" in line or "ld-linux" in line}
        needed.discard("linux-vdso.so.1")
        assert needed <= names and {"libavcodec.so.59", "libc.so.6", "ld-linux-x86-64.so.2"} <= names, needed - names
        task = tmp_path / "root" / "var" / "task"
        archive.extractall(task)
    for entry in entries.values():
        if (entry.external_attr >> 16) & 0o111:
            os.chmod(task / entry.filename, (entry.external_attr >> 16) & 0o777)
    headers = subprocess.run(["readelf", "-l", "-d", str(task / "bootstrap")], capture_output=True, text=True).stdout
    assert "[Requesting program interpreter: /var/task/lib/ld-linux-x86-64.so.2]" in headers
    assert "(RPATH)              Library rpath: [/var/task/lib:$ORIGIN/lib]" in headers

    if os.geteuid() != 0:
        pytest.skip("the chroot runs of the bundle need root (the packaging checks above ran)")
    run = subprocess.run([shutil.which("chroot"), str(tmp_path / "root"), "/var/task/bootstrap"], capture_output=True, text=True,
                         env={})
    assert run.returncode == 0 and run.stdout.startswith("avformat "), run.stdout + run.stderr

    # The real probe as scripts/test built it (debug, so over Lambda's size limit), in the same chroot with only
    # /proc added (Lambda has one; the Swift runtime needs it) and Lambda's LD_LIBRARY_PATH: it takes an S3 event
    # in AWS's format from the Runtime API, signs its HEAD of the upload with the role's session token, and
    # posts the 404 as the invocation's error.
    probe = os.environ.get("CINESCALE_PROBE_BIN")
    if not probe or not os.path.exists(probe):
        return
    shutil.copy(probe, bin_dir / "probe")
    out = subprocess.run([os.path.join(AWS, "package.sh"), "--bin-dir", str(bin_dir), "--out", str(dist),
                          "--no-size-limit", "probe"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    shutil.rmtree(tmp_path / "root")
    with zipfile.ZipFile(dist / "probe.zip") as archive:
        archive.extractall(task)
    os.chmod(task / "bootstrap", 0o755)
    os.chmod(task / "lib" / "ld-linux-x86-64.so.2", 0o755)
    event = {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1", "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "cinescale-ingest-123456789012-eu-west-1"},
               "object": {"key": "uploads/a+b.mp4", "size": 1000}}}]}
    server, seen = lambda_stub(event)
    (tmp_path / "root" / "proc").mkdir()
    subprocess.run(["mount", "-t", "proc", "proc", str(tmp_path / "root" / "proc")], check=True)
    try:
        endpoint = f"127.0.0.1:{server.server_address[1]}"
        run = subprocess.run([shutil.which("chroot"), str(tmp_path / "root"), "/var/task/bootstrap"],
                             capture_output=True, text=True, timeout=120, env={
                                 "AWS_LAMBDA_RUNTIME_API": endpoint, "AWS_REGION": "eu-west-1",
                                 "AWS_ACCESS_KEY_ID": "AKIDLAMBDA", "AWS_SECRET_ACCESS_KEY": "secret",
                                 "AWS_SESSION_TOKEN": "session-token", "CINESCALE_S3_ENDPOINT": f"http://{endpoint}",
                                 "MEDIA_BUCKET": "cinescale-media-123456789012-eu-west-1",
                                 "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:"
                                                    "/var/task:/var/task/lib:/opt/lib"})
    finally:
        subprocess.run(["umount", str(tmp_path / "root" / "proc")], check=True)
        server.shutdown()
    assert ("HEAD", "/cinescale-ingest-123456789012-eu-west-1/uploads/a%20b.mp4", "session-token") in seen, seen
    errors = [body for method, path, body in seen if path == "/2018-06-01/runtime/invocation/request-1/error"]
    assert len(errors) == 1 and "404" in errors[0], (seen, run.stderr)


def test_aws_deploy_uploads_by_content_hash_and_deploys_the_template(tmp_path):
    """deploy.sh against a stub aws-cli that records its arguments: each zip goes to the artifact bucket under its
    SHA-256 (once), and `aws cloudformation deploy` gets the template, CAPABILITY_IAM and parameters it declares."""
    import hashlib
    import json

    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ("probe", "transcode"):
        (dist / f"{name}.zip").write_bytes(f"{name} zip".encode())
    calls = tmp_path / "calls.jsonl"
    stub = tmp_path / "bin" / "aws"
    stub.parent.mkdir()
    stub.write_text(
        f"#!{os.sys.executable}\nimport json, os, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "sys.exit(0 if 's3api' not in sys.argv or os.environ.get('STUB_HAS_OBJECTS') else 254)\n")
    stub.chmod(0o755)
    environment = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}"}
    command = [os.path.join(AWS, "deploy.sh"), "--artifact-bucket", "acme-artifacts", "--region", "eu-west-1",
               "--stack-name", "video", "--dist", str(dist), "Ladder=360,720", "X264Preset=faster"]
    out = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert out.returncode == 0, out.stderr
    recorded = [json.loads(line) for line in open(calls)]

    keys = {name: f"cinescale/lambda/{name}-{hashlib.sha256(f'{name} zip'.encode()).hexdigest()}.zip"
            for name in ("probe", "transcode")}
    copies = [c for c in recorded if c[2:4] == ["s3", "cp"]]
    assert [c[:2] for c in recorded] == [["--region", "eu-west-1"]] * len(recorded)
    assert [(c[4], c[5]) for c in copies] == [(str(dist / f"{n}.zip"), f"s3://acme-artifacts/{keys[n]}")
                                              for n in ("probe", "transcode")]
    deploy = next(c for c in recorded if c[2:4] == ["cloudformation", "deploy"])
    assert deploy[deploy.index("--template-file") + 1] == TEMPLATE
    assert deploy[deploy.index("--stack-name") + 1] == "video"
    assert deploy[deploy.index("--capabilities") + 1] == "CAPABILITY_IAM"
    overrides = dict(p.split("=", 1) for p in deploy[deploy.index("--parameter-overrides") + 1:])
    parameters = cfn_template()["Parameters"]
    assert set(overrides) <= set(parameters), set(overrides) - set(parameters)
    assert {name for name, p in parameters.items() if "Default" not in p} <= set(overrides)
    assert overrides == {"ArtifactBucket": "acme-artifacts", "ProbeCodeKey": keys["probe"],
                         "TranscodeCodeKey": keys["transcode"], "Ladder": "360,720", "X264Preset": "faster"}
    assert re.fullmatch(parameters["Ladder"]["AllowedPattern"], overrides["Ladder"])
    assert overrides["X264Preset"] in parameters["X264Preset"]["AllowedValues"]

    # The same zips again: already in the bucket, not uploaded twice; the stack deploy still runs.
    calls.unlink()
    out = subprocess.run(command, capture_output=True, text=True, env={**environment, "STUB_HAS_OBJECTS": "1"})
    assert out.returncode == 0, out.stderr
    recorded = [json.loads(line) for line in open(calls)]
    assert not [c for c in recorded if c[2:4] == ["s3", "cp"]]
    assert [c for c in recorded if c[2:4] == ["cloudformation", "deploy"]]

    # Without the zips it says what to run first.
    out = subprocess.run(command[:-2] + ["--dist", str(tmp_path / "none")], capture_output=True, text=True,
                         env=environment)
    assert out.returncode != 0 and "run infra/aws/package.sh first" in out.stderr
