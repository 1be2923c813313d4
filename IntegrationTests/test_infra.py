"""The deployment files are kept in step with the code: shellcheck passes on every script, the MinIO and
Kubernetes functions files load in the real gateway (`--check`) and wire the chunked pipeline as `cinescale dev`
does (the same functions, executables, priorities, retries and triggers, and bucket events for exactly those
triggers), the compose file only uses flags the binary has and files that exist, MinIO's webhook target, token and
ARN agree across the files, and the AWS template runs the same executables with the variables they read, the same
triggers, and roles that grant each function what its steps' Swift sources touch in S3 and no more."""
import glob
import itertools
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import binary

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MINIO = os.path.join(ROOT, "infra", "minio")
K8S = os.path.join(ROOT, "infra", "k8s")
DEV = os.path.join(ROOT, "Sources", "cinescale", "DevCommand.swift")
CHUNKED_FUNCTIONS = {"probe", "transcode", "transcode-lead", "transcode-chunk"}


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
    # Every file in scripts/: entry points and the lib.sh they source, all shell (Python modules live with the
    # benchmarks and the integration tests).
    names = [name for name in os.listdir(os.path.join(ROOT, "scripts"))
             if not name.startswith(".") and name != "__pycache__"]
    assert not [name for name in names if name.endswith(".py")], names
    scripts = sorted(os.path.join(ROOT, "scripts", name) for name in names)
    scripts += glob.glob(os.path.join(ROOT, "infra", "**", "*.sh"), recursive=True)
    scripts += glob.glob(os.path.join(ROOT, "localstack", "**", "*.sh"), recursive=True)
    scripts += [os.path.join(ROOT, ".ci", "run")]
    out = subprocess.run(["shellcheck", "-x", "-S", "warning", *scripts], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout




# --- The gateway deployments (infra/minio, infra/k8s) against `cinescale dev` -----------------------------------

def dev_wiring():
    """`cinescale dev`'s gateway file at its default options, read from DevCommand.swift: {"functions": {name:
    {"executable", "timeout", "concurrency", "retry", "nice", "idle"}}, "environment": the transcode functions'
    chunking variables, "triggers": {(function, bucket, kind, value)}, "store": the store's bucket rules
    {(bucket, kind, value)}}."""
    text = open(DEV).read()
    source = Swift(text)
    constants = KeyHelpers().constants
    defaults = {name: float(value) if "." in value or kind == "Double" else int(value)
                for name, kind, value in re.findall(r"var (\w+): (Int|Double) = ([\d.]+)\n", text)}
    assert {"transcoders", "chunkSeconds"} <= set(defaults), defaults

    def literal(expression):
        expression = expression.strip()
        constant = re.fullmatch(r"ChunkKeys\.(\w+)", expression)
        if constant:
            return constants[constant.group(1)]
        assert re.fullmatch(r'"[^"\\]*"', expression), expression
        return expression[1:-1]

    def number(expression):
        return eval(expression, {"__builtins__": {}, "max": max, "min": min}, dict(defaults))

    def entries(open_bracket):
        """The entries of the Swift dictionary literal at open_bracket: {key text: (value text, value start)}."""
        found = {}
        for start, end in source.split(open_bracket + 1, source.close(open_bracket) - 1):
            pieces = source.split(start, end, ":")
            assert len(pieces) == 2, source.text[start:end]
            key, value = (clean(*piece) for piece in pieces)
            found[source.text[key[0]:key[1]]] = (source.text[value[0]:value[1]], value[0])
        return found

    def clean(start, end):
        """The span without the whitespace and comments around it."""
        while source.masked[start].isspace():
            start += 1
        while source.masked[end - 1].isspace():
            end -= 1
        return start, end

    # The typed configuration DevCommand builds: `function("name", "executable", timeout: …, …)` per function and
    # `TriggerRule(function: …, bucket: apiOptions.<x>Bucket, prefix|suffix: …)` per trigger.
    body = text[text.index("let gatewayConfiguration = GatewayConfiguration("):]
    functions = {}
    for name, executable, timeout, concurrency, environment, attempts, nice, idle in re.findall(
            r'function\(\s*"([\w-]+)", "(\w+)", timeout: (.+?),\s*concurrency: (.+?),\s*environment: (\w+),'
            r'\s*maxAttempts: (.+?),\s*nice: (\d+)(?:, idle: (true|false))?\)', body):
        functions[name] = {
            "executable": executable, "timeout": number(timeout), "concurrency": number(concurrency),
            "retry": {"maxAttempts": number(attempts)}, "nice": number(nice), "idle": idle == "true",
            "environment": environment}
    assert functions, "no function(...) in DevCommand.swift"
    triggers = set()
    for function, bucket, kind, value in re.findall(
            r'TriggerRule\(\s*function: "([\w-]+)", bucket: apiOptions\.(\w+)Bucket, (prefix|suffix): '
            r'("[^"]*"|ChunkKeys\.\w+)\)', body):
        triggers.add((function, bucket, kind, literal(value)))

    # The chunking variables dev gives the transcode functions (when --chunk-seconds is not 0, its default).
    assert defaults["chunkSeconds"] > 0
    environment = {name: number(expression) for name, expression in
                   re.findall(r'transcodeEnvironment\["(\w+)"\] = String\((.+)\)\n', text)}
    # The store's rules: what makes the events the gateway's triggers take.
    store = set()
    for kind, value, bucket in re.findall(
            r'QueueRule\(id: "[\w-]+", arn: target\.arn, events: \["s3:ObjectCreated:\*"\], (prefix|suffix): '
            r'("[^"]*")\)\s*\]\), for: apiOptions\.(\w+)Bucket\)', text):
        store.add((bucket, kind, literal(value)))
    media_rules = re.search(r"let mediaRules: \[\(String, String\)\] = \[(.*?)\n        \]\n", text, re.S)
    assert media_rules and re.search(r"QueueRule\(id: id, arn: target\.arn, events: \[\"s3:ObjectCreated:\*\"\], "
                                     r"suffix: suffix\)\s*\}\), for: apiOptions\.mediaBucket\)", text)
    for value in re.findall(r'\("[\w-]+", ("[^"]*"|ChunkKeys\.\w+)\)', media_rules.group(1)):
        store.add(("media", "suffix", literal(value)))
    return {"functions": functions, "environment": environment, "triggers": triggers, "store": store}


def trigger_rules(functions_file):
    """{(function, bucket, "prefix"|"suffix", value)} of a gateway functions file."""
    return {(t["function"], t["bucket"], kind, t[kind]) for t in functions_file["triggers"] for kind in ("prefix", "suffix")
            if kind in t}


def minio_bucket_rules():
    """{(bucket, kind, value)} setup.sh gives MinIO with `mc event add` (its `for suffix in …` loop unrolled)."""
    setup = open(os.path.join(MINIO, "setup.sh")).read()
    rules = set()
    for bucket, kind, value in re.findall(r'mc event add cinescale/(\w+) "\$ARN" --event put --(prefix|suffix) (\S+)',
                                          setup):
        values = [value]
        if value.startswith('"$'):
            variable = value.strip('"$')
            loop = re.search(rf"for {variable} in ([^;]+); do\n(?:.*\n)*?\s*mc event add cinescale/{bucket} ", setup)
            assert loop, value
            values = loop.group(1).split()
        rules |= {(bucket, kind, v) for v in values}
    return rules


def k8s_documents():
    manifests = sorted(glob.glob(os.path.join(K8S, "*.yaml")))
    documents = [d for path in manifests for d in yaml.safe_load_all(open(path)) if d]
    return manifests, {(d["kind"], d["metadata"]["name"]): d for d in documents}


def test_gateway_deployments_wire_the_chunked_pipeline_as_dev_does():
    """infra/minio (one gateway) and infra/k8s (gateway pods sharing PostgreSQL) run dev's functions: the same
    executables, timeouts, priorities (the lead at the servers' priority, the bulk chunks under SCHED_IDLE),
    retries and per-gateway concurrency, one environment for the three transcode functions (whichever gets an
    event runs the step its key names), chunked with dev's CHUNK_SECONDS, a window of one chunk per chunk worker
    of the whole deployment and one more (dev's rule, with one gateway), and dev's five triggers; and the store's
    bucket events (setup.sh's, which infra/k8s runs too) are exactly the triggers' filters, as dev's store rules are."""
    dev = dev_wiring()
    assert set(dev["functions"]) == CHUNKED_FUNCTIONS
    # The store's rules: the triggers' filters, and the two the API's webhooks read (no function's).
    webhooks = {("media", "suffix", "/status.json"), ("media", "suffix", "/chunks/00000.json")}
    assert len(dev["triggers"]) == 5 and dev["store"] == {(b, k, v) for _, b, k, v in dev["triggers"]} | webhooks
    chunk_workers = dev["functions"]["transcode-chunk"]["concurrency"]
    assert dev["environment"]["CHUNK_WINDOW"] == chunk_workers + 1, dev["environment"]

    _, by_kind = k8s_documents()
    k8s = yaml.safe_load(by_kind[("ConfigMap", "cinescale-functions")]["data"]["functions.yaml"])
    max_replicas = by_kind[("HorizontalPodAutoscaler", "cinescale-gateway")]["spec"]["maxReplicas"]
    minio = yaml.safe_load(open(os.path.join(MINIO, "functions.yaml")))
    for label, config, gateways in (("infra/minio", minio, 1), ("infra/k8s", k8s, max_replicas)):
        functions = config["functions"]
        assert set(functions) == CHUNKED_FUNCTIONS, label
        assert trigger_rules(config) == dev["triggers"], label
        for name, expected in dev["functions"].items():
            function = functions[name]
            assert os.path.basename(function["command"][0]) == expected["executable"], (label, name)
            actual = {"timeout": function["timeout"], "concurrency": function.get("concurrency", 1),
                      "retry": function["retry"], "nice": function.get("nice", 0), "idle": function.get("idle", False)}
            assert actual == {k: expected[k] for k in actual}, (label, name, actual)
        family = [name for name in functions if dev["functions"][name]["executable"] == "transcode"]
        assert len(family) == 3 and all(functions[n]["environment"] == functions[family[0]]["environment"] for n in family)
        environment = functions["transcode"]["environment"]
        assert float(environment["CHUNK_SECONDS"]) == dev["environment"]["CHUNK_SECONDS"], label
        assert int(environment["CHUNK_WINDOW"]) == gateways * functions["transcode-chunk"]["concurrency"] + 1, label
        assert {"LADDER", "X264_PRESET", "WORK_DIR"} <= set(environment)
    assert minio_bucket_rules() == {(b, k, v) for _, b, k, v in dev["triggers"]} | webhooks
    assert "infra/minio/setup.sh" in open(os.path.join(K8S, "minio.yaml")).read()


def test_minio_compose_matches_the_binary_and_the_wiring():
    compose = yaml.safe_load(open(os.path.join(MINIO, "compose.yaml")))
    gateway = compose["services"]["gateway"]
    minio_env = env_file(os.path.join(MINIO, "minio.env"))

    # The functions file loads in the real gateway with the environment compose gives it, with every trigger.
    environment = {**os.environ, **{k: str(v) for k, v in gateway["environment"].items()}}
    out = subprocess.run([binary("CINESCALE_BIN"), "gateway", "--config", os.path.join(MINIO, "functions.yaml"), "--check"],
                         capture_output=True, text=True, env=environment)
    assert out.returncode == 0, out.stderr
    rules = trigger_rules(yaml.safe_load(open(os.path.join(MINIO, "functions.yaml"))))
    for function, bucket, kind, value in rules:
        shown = f"{value}*" if kind == "prefix" else f"*{value}"
        assert f"trigger {bucket} {shown} → {function}\n" in out.stdout, out.stdout
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
    # The manifest loads only when every target's folder is there: the image copies each top-level one.
    copied = set(re.findall(r"^COPY (\S+) \./", open(dockerfile).read(), re.M))
    for folder in {"Sources"} | set(re.findall(r'path: "([^/"]+)/', package)):
        assert folder in copied, folder



def test_kubernetes_manifests_are_valid_and_match_the_binary(tmp_path):
    manifests, by_kind = k8s_documents()
    validate = os.path.join(os.path.dirname(os.sys.executable), "kubernetes-validate")
    out = subprocess.run([validate, "--strict", "--quiet", *manifests], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

    deployment = by_kind[("Deployment", "cinescale-gateway")]
    gateway = deployment["spec"]["template"]["spec"]
    container = gateway["containers"][0]

    # The flags exist; the functions file in the ConfigMap loads in the real gateway, with every trigger.
    help_text = subprocess.run([binary("CINESCALE_BIN"), "gateway", "--help"], capture_output=True, text=True).stdout
    for flag in [part for part in container["args"] if part.startswith("--")]:
        assert re.search(rf"(^|\s){re.escape(flag)}(\s|$)", help_text, re.M), f"{flag} is not a gateway option"
    functions = tmp_path / "functions.yaml"
    functions.write_text(by_kind[("ConfigMap", "cinescale-functions")]["data"]["functions.yaml"])
    out = subprocess.run([binary("CINESCALE_BIN"), "gateway", "--config", str(functions), "--check"], capture_output=True,
                         text=True, env={**os.environ, "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b",
                                         "PGPASSWORD": "c"})
    assert out.returncode == 0, out.stderr
    for function, bucket, kind, value in trigger_rules(yaml.safe_load(functions.read_text())):
        shown = f"{value}*" if kind == "prefix" else f"*{value}"
        assert f"trigger {bucket} {shown} → {function}\n" in out.stdout, out.stdout

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
# tests below hold it to the Swift sources (the variables the functions read, what they touch in S3), to the
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
    """{gateway function name: (logical id, properties)}: the function resource for `transcode-lead` is
    TranscodeLeadFunction (the functions are unnamed; Lambda names them after the stack and the logical id)."""
    found = {}
    for logical, resource in resources(template, "AWS::Lambda::Function").items():
        words = re.fullmatch(r"((?:[A-Z][a-z0-9]*)+)Function", logical)
        assert words, f"{logical}: name Lambda functions <CamelCase gateway name>Function"
        found["-".join(w.lower() for w in re.findall(r"[A-Z][a-z0-9]*", words.group(1)))] = (logical, resource["Properties"])
    return found


def variables_read_by(executable):
    """The environment variables a media function's Swift sources read (functions/<executable>/*.swift,
    MediaFunctionSupport, VideoContract and FunctionRuntime): `environment["X"]`, `variables["X"]`, `number("X", …)`."""
    paths = glob.glob(os.path.join(ROOT, "functions", executable, "*.swift"))
    paths += glob.glob(os.path.join(ROOT, "Sources", "MediaFunctionSupport", "*.swift"))
    paths += glob.glob(os.path.join(ROOT, "Sources", "VideoContract", "*.swift"))
    paths += glob.glob(os.path.join(ROOT, "Sources", "FunctionRuntime", "*.swift"))
    names = set()
    for path in paths:
        source = open(path).read()
        names |= set(re.findall(r'(?:environment|variables)\[\s*"([A-Z][A-Z0-9_]*)"\s*\]', source))
        names |= set(re.findall(r'\bnumber\(\s*"([A-Z][A-Z0-9_]*)"', source))
    return names


def executables(gateway_functions):
    """{function: the executable its gateway command runs} (transcode, transcode-lead, transcode-chunk: transcode)."""
    return {name: os.path.basename(f["command"][0]) for name, f in gateway_functions.items()}


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
    # resource closes the cycle bucket → permission → function → role → bucket, which cfn-lint reports — for the
    # ingest bucket and the probe, and for the media bucket and each function it triggers.
    text = open(TEMPLATE).read()
    template = cfn_template()
    _, _, ingest_name = bucket_named(template, "ingest")
    _, _, media_name = bucket_named(template, "media")
    cases = [(None, f'!Sub "arn:${{AWS::Partition}}:s3:::{ingest_name}/uploads/*"', '!Sub "${IngestBucket.Arn}/uploads/*"')]
    for role in ("TranscodeRole", "TranscodeLeadRole", "TranscodeChunkRole"):
        cases.append((role, f'!Sub "arn:${{AWS::Partition}}:s3:::{media_name}/*/status.json"',
                      '!Sub "${MediaBucket.Arn}/*/status.json"'))
    for role, pinned, through_bucket in cases:
        assert pinned in text
        if role is None:
            broken = text.replace(pinned, through_bucket)
        else:  # only in this role's policy
            start = text.index(f"\n  {role}:\n")
            end = text.index("\n\n", start)
            broken = text[:start] + text[start:end].replace(pinned, through_bucket) + text[end:]
            assert broken != text, role
        cyclic = tmp_path / "cyclic.yaml"
        cyclic.write_text(broken)
        out = subprocess.run([lint, "--", str(cyclic)], capture_output=True, text=True)
        assert out.returncode != 0 and "E3004" in out.stdout, (role, out.stdout)


def test_aws_functions_run_the_executables_with_the_variables_they_read():
    template = cfn_template()
    functions = lambda_functions(template)
    gateway = yaml.safe_load(open(os.path.join(MINIO, "functions.yaml")))["functions"]
    package = open(os.path.join(ROOT, "Package.swift")).read()
    package_sh = open(os.path.join(AWS, "package.sh")).read()
    deploy_sh = open(os.path.join(AWS, "deploy.sh")).read()
    assert set(functions) == set(gateway) == CHUNKED_FUNCTIONS
    runs = executables(gateway)
    assert set(runs.values()) == {"probe", "transcode"} and "FUNCTIONS=(probe transcode)" in package_sh
    assert "--static-swift-stdlib" in package_sh
    _, _, media_name = bucket_named(template, "media")
    parameters = template["Parameters"]

    for name, (logical, properties) in functions.items():
        # The executable package.sh zips as bootstrap (the gateway's command's), on the OS-only runtime, for the
        # architecture it builds; functions that share an executable share its zip.
        executable = runs[name]
        assert properties["Handler"] == executable and f'.executable(name: "{executable}"' in package, logical
        assert properties["Runtime"] == "provided.al2023" and properties["Architectures"] == ["x86_64"], logical
        code_key = properties["Code"]["S3Key"]["Ref"]
        assert code_key == f"{executable.capitalize()}CodeKey" and code_key in parameters
        assert f'"{code_key}=$' in deploy_sh and f"upload {executable})" in deploy_sh, code_key

        # Every variable set is one the Swift code reads (TMPDIR: Foundation's temporary directory), none is one
        # Lambda reserves, and every setting the gateway's functions file gives it is given here too.
        variables = properties["Environment"]["Variables"]
        read = variables_read_by(executable)
        assert {"MEDIA_BUCKET", "CINESCALE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_REGION", "LOG_LEVEL"} <= read
        unknown = set(variables) - read - {"TMPDIR"}
        assert not unknown, f"{logical} sets variables {executable} never reads: {unknown}"
        assert not set(variables) & LAMBDA_RESERVED
        expected = set(gateway[name]["environment"]) - LAMBDA_RESERVED
        assert expected <= set(variables), f"{logical} lacks {expected - set(variables)}"
        assert variables["MEDIA_BUCKET"] == {"Fn::Sub": media_name}
        assert variables["CINESCALE_S3_ENDPOINT"] == {"Fn::Sub": "https://s3.${AWS::Region}.${AWS::URLSuffix}"}

        timeout = parameters[properties["Timeout"]["Ref"]]
        assert timeout["MaxValue"] <= 900 and timeout["Default"] <= timeout["MaxValue"]
        memory = parameters[properties["MemorySize"]["Ref"]]
        assert 128 <= memory["Default"] <= memory["MaxValue"] <= 10240

    # One environment for the three transcode functions: the step is chosen by the triggering key, whichever
    # function gets it. Chunked, always: CHUNK_SECONDS is ChunkSeconds, which cannot be 0 (so `transcode` plans
    # and finishes, never transcodes a whole video, which its role does not allow), and CHUNK_WINDOW is 0 (the
    # plan queues every chunk at once: Lambda scales out).
    family = [name for name in functions if runs[name] == "transcode"]
    assert len(family) == 3
    environment = functions["transcode"][1]["Environment"]["Variables"]
    assert all(functions[name][1]["Environment"]["Variables"] == environment for name in family)
    assert environment["CHUNK_WINDOW"] == "0"
    chunk_seconds = parameters[environment["CHUNK_SECONDS"]["Ref"]]
    assert chunk_seconds["Type"] == "Number" and 0 < chunk_seconds["MinValue"] <= chunk_seconds["Default"]
    first = parameters[environment["FIRST_CHUNK_SECONDS"]["Ref"]]
    main = open(os.path.join(ROOT, "functions", "transcode", "main.swift")).read()
    code_default = re.search(r'number\("FIRST_CHUNK_SECONDS", ([\d.]+)\)', main).group(1)
    assert first["Default"] == float(code_default) and first["MinValue"] > 0
    assert parameters[environment["KEYFRAME_SECONDS"]["Ref"]]["Default"] == float(
        re.search(r'number\("KEYFRAME_SECONDS", ([\d.]+)\)', main).group(1))

    # The scratch directory (WORK_DIR, else the temporary directory) is on /tmp, the only writable place on
    # Lambda, sized by EphemeralStorage. A finish holds a rung's segments and its MP4 there; a chunk only its own
    # outputs: at most ChunkSeconds of the whole ladder at its VBV ceilings (MediaKit's default rungs), which the
    # chunks' /tmp holds four times over at the default chunk length and with room at the longest.
    for name in family:
        variables = functions[name][1]["Environment"]["Variables"]
        assert "WORK_DIR" in variables_read_by("transcode") and variables["WORK_DIR"] == "/tmp" == variables["TMPDIR"]
    storage = {name: parameters[functions[name][1]["EphemeralStorage"]["Size"]["Ref"]] for name in family}
    assert storage["transcode"]["MaxValue"] == 10240 and storage["transcode"]["Default"] >= 4096
    transcoder = open(os.path.join(ROOT, "Sources", "MediaKit", "Ladder.swift")).read()  # Rung.defaultLadder
    ceilings = {int(h): int(r.replace("_", "")) for h, r in
                re.findall(r'Rung\(name: "\d+p", height: (\d+), maxBitRate: ([\d_]+)\)', transcoder)}
    ladder = [int(h) for h in parameters["Ladder"]["Default"].split(",")]
    bits_per_second = sum(ceilings[h] for h in ladder)
    for name in ("transcode-lead", "transcode-chunk"):
        assert functions[name][1]["EphemeralStorage"]["Size"] == functions["transcode-lead"][1]["EphemeralStorage"]["Size"]
        megabytes = storage[name]["Default"] * 2**20
        assert megabytes >= 4 * chunk_seconds["Default"] * bits_per_second / 8, (name, storage[name])
        assert megabytes >= 1.5 * chunk_seconds["MaxValue"] * bits_per_second / 8, (name, storage[name])
        assert storage[name]["Default"] < storage["transcode"]["Default"]


def test_aws_triggers_mirror_the_minio_and_dev_wiring():
    template = cfn_template()
    functions = lambda_functions(template)
    by_logical = {logical: name for name, (logical, _) in functions.items()}
    gateway = yaml.safe_load(open(os.path.join(MINIO, "functions.yaml")))

    # The rules of infra/minio and `cinescale dev` agree: (function, bucket, filter, value).
    minio_rules = trigger_rules(gateway)
    assert minio_rules == dev_wiring()["triggers"] and len(minio_rules) == 5

    aws_rules = set()
    permissions = resources(template, "AWS::Lambda::Permission")
    for bucket_name in {rule[1] for rule in minio_rules}:
        logical, bucket, name = bucket_named(template, bucket_name)
        configurations = bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
        depends_on = bucket.get("DependsOn")
        depends_on = [depends_on] if isinstance(depends_on, str) else depends_on or []
        named = set()
        filters = []  # (event, prefix, suffix)
        for configuration in configurations:
            assert configuration["Event"] == "s3:ObjectCreated:*"
            target = configuration["Function"]["Fn::GetAtt"]
            assert target[1] == "Arn"
            rules = configuration["Filter"]["S3Key"]["Rules"]
            assert len(rules) == 1
            aws_rules.add((by_logical[target[0]], bucket_name, rules[0]["Name"], rules[0]["Value"]))
            filters.append((configuration["Event"], *[rules[0]["Value"] if rules[0]["Name"] == kind else ""
                                                      for kind in ("prefix", "suffix")]))

            # No cycle: S3 checks the permission when the configuration is written, so the bucket waits for
            # it, and the permission names the bucket by the same built name, not through the bucket resource.
            permission = [(n, p["Properties"]) for n, p in permissions.items()
                          if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [target[0], "Arn"]}]
            assert len(permission) == 1
            permission_name, permission = permission[0]
            assert logical != target[0] and permission_name in depends_on, (logical, depends_on)
            named.add(permission_name)
            assert permission["Principal"] == "s3.amazonaws.com"
            assert permission["Action"] == "lambda:InvokeFunction"
            assert permission["SourceArn"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::" + name}
            assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}
        # The bucket waits for the permissions of the functions it notifies, and for nothing else.
        assert set(depends_on) == named, (logical, depends_on, named)
        # S3 refuses a configuration with two rules for one event whose filters overlap (a key both could match:
        # the prefixes overlap, one starting the other, and the suffixes too, one ending the other; a missing
        # prefix or suffix overlaps any).
        for (event, prefix, suffix), (other_event, other_prefix, other_suffix) in itertools.combinations(filters, 2):
            prefixes = prefix.startswith(other_prefix) or other_prefix.startswith(prefix)
            suffixes = suffix.endswith(other_suffix) or other_suffix.endswith(suffix)
            assert event != other_event or not (prefixes and suffixes), (logical, prefix + "*" + suffix,
                                                                         other_prefix + "*" + other_suffix)
    assert aws_rules == minio_rules

    # Asynchronous invocations: the gateway's attempts (retries = attempts - 1), then the dead-letter queue.
    queues = resources(template, "AWS::SQS::Queue")
    assert len(queues) == 1
    queue = next(iter(queues))
    configs = {c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
               for c in resources(template, "AWS::Lambda::EventInvokeConfig").values()}
    assert set(configs) == {logical for logical, _ in functions.values()}
    for name, (logical, _) in functions.items():
        config = configs[logical]
        assert config["MaximumRetryAttempts"] == gateway["functions"][name]["retry"]["maxAttempts"] - 1, name
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [queue, "Arn"]}
        assert config["Qualifier"] == "$LATEST"
        assert config["MaximumEventAgeInSeconds"] == {"Ref": "MaximumEventAgeSeconds"}

    # What the stack hands over: the buckets, the endpoint, every function and the queue.
    outputs = template["Outputs"]
    for name, (logical, _) in functions.items():
        assert {"Fn::GetAtt": [logical, "Arn"]} in [o["Value"] for o in outputs.values()], logical
    description = " ".join(template["Description"].split())
    for function, _, kind, value in minio_rules:
        assert function in description and value in description, (function, value)



# --- What the functions touch in S3, read from their Swift sources ------------------------------------------------
# A small reader of the media functions' Swift, enough to tell, per step, which S3 operations reach which keys: it
# follows each step from the dispatch in `handle` (the branch the trigger's key takes) through the functions it
# calls, drops the `if` blocks the step's facts rule out (a lead chunk has index 0; the bulk chunks do not; on AWS
# the plan's window is the functions' CHUNK_WINDOW), and turns every key an S3 call names — a VideoKeys/ChunkKeys
# helper, a "\(id)/…" literal, a variable bound to one, a parameter filled by its callers, the elements of a list
# of uploads — into a glob. An S3 call or key it cannot place fails the test, so a change to the functions'
# S3 use has to be taught here (and granted on AWS) rather than slip by.

# The functions' support sources: the bucket layout and the objects' types (VideoContract), their helpers.
SWIFT_SUPPORT = [os.path.join(ROOT, "Sources", name) for name in ("VideoContract", "MediaFunctionSupport")]
S3_ACTIONS = {
    # S3Client method -> the IAM actions it needs on its key (ListBucket: a missing key answers 404 only to a caller
    # that may list it, with s3:prefix = the key; optionalJSON relies on the 404).
    "getJSON": {"s3:GetObject"}, "getObject": {"s3:GetObject"}, "getObjectStream": {"s3:GetObject"},
    "headObject": {"s3:GetObject"}, "downloadObject": {"s3:GetObject"},
    "optionalJSON": {"s3:GetObject", "s3:ListBucket"},
    "putJSON": {"s3:PutObject"}, "putObject": {"s3:PutObject"}, "createJSON": {"s3:PutObject"},
    "uploadFile": {"s3:PutObject", "s3:AbortMultipartUpload"},
    "deleteObjects": {"s3:DeleteObject"}, "deleteObject": {"s3:DeleteObject"},
    "listAllObjects": {"s3:ListBucket"}, "listObjectsV2": {"s3:ListBucket"},
}


class Swift:
    """Swift source with string contents and comments masked (same offsets), so brackets can be matched."""

    def __init__(self, text):
        self.text = text
        masked = list(text)
        i, n = 0, len(text)
        stack = []  # "code" (interpolation, with its paren depth) or "string"
        depth = []

        def code_step(i):
            # returns new i
            if text.startswith("//", i):
                j = text.find("\n", i)
                j = n if j < 0 else j
                for k in range(i, j):
                    masked[k] = " "
                return j
            if text.startswith("/*", i):
                j = text.find("*/", i + 2)
                j = n if j < 0 else j + 2
                for k in range(i, j):
                    if masked[k] != "\n":
                        masked[k] = " "
                return j
            if text[i] == '"':
                assert not text.startswith('"""', i), "multi-line string literals are not read"
                stack.append("string")
                return i + 1
            return i + 1

        while i < n:
            if stack and stack[-1] == "string":
                c = text[i]
                if c == "\\" and i + 1 < n and text[i + 1] == "(":
                    masked[i] = masked[i + 1] = "\x01"
                    stack.append("code")
                    depth.append(1)
                    i += 2
                    continue
                if c == "\\":
                    masked[i] = masked[i + 1] = "_"
                    i += 2
                    continue
                if c == '"':
                    stack.pop()
                    i += 1
                    continue
                masked[i] = "_"
                i += 1
                continue
            if stack and stack[-1] == "code":
                c = text[i]
                if c == "(":
                    depth[-1] += 1
                elif c == ")":
                    depth[-1] -= 1
                    if depth[-1] == 0:
                        masked[i] = "\x02"
                        stack.pop()
                        depth.pop()
                        i += 1
                        continue
                i = code_step(i)
                continue
            i = code_step(i)
        self.masked = "".join(masked)

    def close(self, start):
        """The index just past the bracket that closes the one at `start`."""
        pairs = {"(": ")", "[": "]", "{": "}"}
        opening = self.masked[start]
        closing = pairs[opening]
        level = 0
        for i in range(start, len(self.masked)):
            c = self.masked[i]
            if c in "([{":
                level += 1
            elif c in ")]}":
                level -= 1
                if level == 0:
                    assert c == closing, (self.text[start:i + 1])
                    return i + 1
        raise AssertionError(f"unbalanced {opening} at {start}")

    def split(self, start, end, separator=","):
        """Top-level pieces of text[start:end] split at `separator`, as (start, end) spans."""
        pieces, level, begin = [], 0, start
        for i in range(start, end):
            c = self.masked[i]
            if c in "([{":
                level += 1
            elif c in ")]}":
                level -= 1
            elif c == separator and level == 0:
                pieces.append((begin, i))
                begin = i + 1
        if self.text[begin:end].strip():
            pieces.append((begin, end))
        return pieces


class SwiftFunction:
    def __init__(self, source, name, params, body_start, body_end):
        self.source, self.name, self.body_start, self.body_end = source, name, body_start, body_end
        self.params = params  # [(label, name, type)]

    def __repr__(self):
        return f"func {self.name}"


def swift_functions(source):
    functions = []
    for match in re.finditer(r"\bfunc\s+(\w+)\s*(?:<[^>{]*>)?\s*\(", source.masked):
        open_paren = match.end() - 1
        close_paren = source.close(open_paren)
        params = []
        for start, end in source.split(open_paren + 1, close_paren - 1):
            declaration = source.text[start:end].strip()
            head, _, kind = declaration.partition(":")
            words = head.split()
            label, name = (words[0], words[1]) if len(words) == 2 else (words[0], words[0])
            params.append((label, name, kind.split("=")[0].strip()))
        brace = source.masked.index("{", close_paren)
        functions.append(SwiftFunction(source, match.group(1), params, brace, source.close(brace)))
    return functions


def call_arguments(source, open_paren):
    """{label or position: expression text} of the call whose "(" is at open_paren."""
    arguments = {}
    for position, (start, end) in enumerate(source.split(open_paren + 1, source.close(open_paren) - 1)):
        text = source.text[start:end].strip()
        labelled = re.match(r"(\w+)\s*:\s*(?!:)", source.masked[start:end].strip())
        if labelled and not text.startswith(("try", "await")):
            arguments[labelled.group(1)] = text[labelled.end():].strip()
        else:
            arguments[position] = text
    return arguments


class KeyHelpers:
    """VideoKeys/ChunkKeys in VideoContract: their string constants and one-line key helpers."""

    def __init__(self):
        paths = [p for directory in SWIFT_SUPPORT for p in sorted(glob.glob(os.path.join(directory, "*.swift")))]
        text = "\n".join(open(p).read() for p in paths)
        self.source = Swift(text)
        self.constants = dict(re.findall(r'static let (\w+) = "([^"\\]*)"', text))
        self.helpers = {}
        for function in swift_functions(self.source):
            body = text[function.body_start + 1:function.body_end - 1].strip()
            self.helpers.setdefault(function.name, []).append((function, body))
        assert {"leadSuffix", "chunkSuffix", "finishSuffix"} <= set(self.constants)

    def helper(self, name, arguments):
        candidates = [(f, body) for f, body in self.helpers.get(name, []) if re.fullmatch(r'"[^\n]*"', body)]
        for function, body in candidates:
            labels = [label for label, _, _ in function.params]
            keyword = [k for k in arguments if isinstance(k, str)]
            if all(k in labels for k in keyword) and len(arguments) == len(labels):
                return function, body
        raise AssertionError(f"no one-line key helper {name}({arguments})")


class S3Use:
    """Which (IAM action, bucket, key glob) a media function's steps use, from functions/<executable>/*.swift."""

    def __init__(self, executable, triggers, facts):
        """triggers: [(bucket, "prefix"|"suffix", value)] of one deployed function; facts: {expression: values}
        that hold in every step (e.g. {"plan.window": {0}}), and {"configuration.chunking != nil": True}."""
        directory = os.path.join(ROOT, "functions", executable)
        self.sources = [Swift(open(p).read()) for p in sorted(glob.glob(os.path.join(directory, "*.swift")))]
        self.functions = [f for s in self.sources for f in swift_functions(s)]
        self.by_name = {}
        for function in self.functions:
            self.by_name.setdefault(function.name, []).append(function)
        self.keys = KeyHelpers()
        self.facts = facts
        self.uses = set()
        self.steps = []
        handle = self.only("handle")
        for bucket, kind, value in triggers:
            entry, entry_facts = self.dispatch(handle, kind, value)
            self.steps.append(entry.name)
            self.step(entry, {**facts, **entry_facts}, (bucket, value + "*" if kind == "prefix" else "*" + value))

    def only(self, name):
        found = self.by_name.get(name, [])
        assert len(found) == 1, f"one func {name}: {found}"
        return found[0]

    # The dispatch: which branch of `handle` a trigger's keys take, and the step function it calls.
    def dispatch(self, handle, kind, value):
        source = handle.source
        live = self.live(handle, {})
        branches = []
        for match in re.finditer(r"(?<![\w.])if\s", live):
            condition_end = self.condition_end(source, match.end())
            branches.append((source.text[match.end():condition_end], condition_end))
        parsed = [(re.search(r"(VideoKeys|ChunkKeys)\.(\w+)\(\s*(\w+)?", c), brace) for c, brace in branches]
        parsed = [(parser, brace) for parser, brace in parsed if parser]
        if not parsed:  # one step for every record (the probe)
            return self.first_call(handle, (handle.body_start, handle.body_end)), {}
        for parser, brace in parsed:
            accepted = self.accepted_suffixes(parser.group(2), parser.group(3))
            if kind == "suffix" and any(value.endswith(s) for s in accepted):
                block = (brace, source.close(brace))
                entry = self.first_call(handle, block)
                entry_facts = {}
                if entry.name == "runChunk":
                    entry_facts["index"] = self.job_indices(value)
                return entry, entry_facts
        raise AssertionError(f"no branch of handle takes *{value}")

    def accepted_suffixes(self, parser, label):
        candidates = self.keys.helpers.get(parser, [])
        for function, body in candidates:
            if label is None or function.params and function.params[0][0] in (label, "_"):
                found = re.findall(r'hasSuffix\(\s*("([^"]*)"|(\w+))\s*\)', body)
                return {literal or self.keys.constants[name] for _, literal, name in found}
        raise AssertionError(f"no key parser {parser}")

    def job_indices(self, suffix):
        """Chunk indices whose job key ends with `suffix` (ChunkKeys.job's `index == 0 ? lead : chunk`)."""
        _, template = self.keys.helper("job", {0: "id", "index": "index"})
        return {i for i in range(4) if any(g.endswith(suffix) for g in self.template_globs(template, {"index": {i}}))}

    def first_call(self, function, span):
        live = self.live(function, self.facts)
        for match in re.finditer(r"(?<![\w.])(\w+)\s*\(", live[span[0]:span[1]]):
            if match.group(1) in self.by_name and match.group(1) != function.name:
                return self.only(match.group(1))
        raise AssertionError(f"no step called in {function.source.text[span[0]:span[1]]}")

    # Conditions: `if A, B {` with clauses a fact decides (index == 0, plan.window > 0) or not (None).
    @staticmethod
    def condition_end(source, start):
        i = start
        while source.masked[i] != "{":
            i = source.close(i) if source.masked[i] in "([" else i + 1
        return i

    def evaluate(self, condition, facts, source=None):
        result = True
        clauses = [condition]
        if source is not None:
            clauses = [source.text[s:e] for s, e in source.split(*condition)]
        for clause in clauses:
            clause = " ".join(clause.split())
            if clause in facts:
                value = facts[clause]
            else:
                value = self.evaluate_clause(clause, facts)
            if value is False:
                return False
            if value is None:
                result = None
        return result

    @staticmethod
    def evaluate_clause(clause, facts):
        if re.match(r"(let|var|case)\b", clause) or not re.fullmatch(r"[\w.\s=<>!+\-*]+", clause):
            return None
        names = sorted(set(re.findall(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", clause)))
        if not names or any(name not in facts for name in names):
            return None
        values = set()
        for combination in itertools.product(*(sorted(facts[name]) for name in names)):
            expression = clause
            for name, value in zip(names, combination):
                expression = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w.])", str(value), expression)
            values.add(bool(eval(expression, {"__builtins__": {}})))
        return values.pop() if len(values) == 1 else None

    def live(self, function, facts):
        """The function's masked source with the `if` blocks (or `else` blocks) the facts rule out blanked."""
        source = function.source
        masked = list(source.masked)
        start, end = function.body_start, function.body_end
        for match in re.finditer(r"(?<![\w.])if\s", source.masked[start:end]):
            at = start + match.end()
            if masked[start + match.start()] == "\x00":
                continue
            brace = self.condition_end(source, at)
            block_end = source.close(brace)
            value = self.evaluate((at, brace), facts, source)
            following = re.match(r"\s*else\s*\{", source.masked[block_end:])
            if value is False:
                for k in range(brace, block_end):
                    masked[k] = "\x00"
            elif value is True and following:
                else_brace = block_end + following.end() - 1
                for k in range(else_brace, source.close(else_brace)):
                    masked[k] = "\x00"
        return "".join(masked)

    # The steps' S3 calls.
    def step(self, entry, facts, trigger):
        seen = set()
        pending = [entry]
        reached = []
        while pending:
            function = pending.pop()
            if function in seen:
                continue
            seen.add(function)
            reached.append(function)
            live = self.live(function, facts)
            for match in re.finditer(r"(?<![\w.])(?:(?:self|Self)\.)?(\w+)\s*\(", live[function.body_start:function.body_end]):
                name = match.group(1)
                before = live[max(0, function.body_start + match.start() - 5):function.body_start + match.start()]
                if name in self.by_name and not before.endswith("func "):
                    pending.extend(self.by_name[name])
        context = Context(self, reached, facts, entry, trigger)
        for function in reached:
            live = context.live[function]
            for match in re.finditer(r"(?<![\w.])s3\.(\w+)\s*\(", live[function.body_start:function.body_end]):
                operation = match.group(1)
                open_paren = function.body_start + match.end() - 1
                assert operation in S3_ACTIONS, f"{function}: S3 call s3.{operation} — add it to S3_ACTIONS"
                arguments = call_arguments(function.source, open_paren)
                buckets = context.buckets(arguments.get("bucket"), function, open_paren)
                if "keys" in arguments:
                    keys = context.element_keys(arguments["keys"], function, open_paren)
                elif "prefix" in arguments:
                    keys = context.keys(arguments["prefix"], function, open_paren)
                else:
                    keys = context.keys(arguments["key"], function, open_paren)
                for bucket in buckets:
                    for key in keys:
                        for action in S3_ACTIONS[operation]:
                            self.uses.add((action, *context.place(bucket, key)))

    def template_globs(self, template, bindings, helper=None, arguments=None, context=None):
        """Globs of a key template ("\\(id)/hls/\\(rung)/\\(name)"): interpolated constants by value, ternaries by
        the facts about their operands, a segment's name by the muxer's pattern, anything else by "*"."""
        source = Swift(template)
        globs = {""}
        i = 1
        text, masked = source.text, source.masked
        while i < len(text) - 1:
            if masked[i] == "\x01":
                end = masked.index("\x02", i)
                expression = text[i + 2:end].strip()
                globs = {g + part for g in globs for part in self.interpolation(expression, bindings, helper, context)}
                i = end + 1
            else:
                globs = {g + text[i] for g in globs}
                i += 1
        return {re.sub(r"\*+", "*", g) for g in globs}

    def interpolation(self, expression, bindings, helper, context):
        if expression in self.keys.constants:
            return {self.keys.constants[expression]}
        ternary = re.fullmatch(r"(.+?)\s*\?\s*(\w+)\s*:\s*(\w+)", expression)
        if ternary:
            value = self.evaluate(ternary.group(1), bindings)
            options = {True: [ternary.group(2)], False: [ternary.group(3)], None: [ternary.group(2), ternary.group(3)]}
            return {self.keys.constants[o] for o in options[value]}
        if helper == "segment" and expression == "name":
            return {segment_name_glob()}
        return {"*"}


class Context:
    """One step: the functions it reaches (their live text under its facts) and how names in them resolve."""

    def __init__(self, use, functions, facts, entry, trigger):
        self.use, self.functions, self.facts, self.entry, self.trigger = use, functions, facts, entry, trigger
        self.live = {f: use.live(f, facts) for f in functions}

    def place(self, bucket, key):
        if bucket == "TRIGGER" or key == "TRIGGER":
            assert bucket == key == "TRIGGER", (bucket, key)
            return self.trigger
        if bucket == "SOURCE" or key == "SOURCE":
            assert bucket == key == "SOURCE", (bucket, key)
            return ("ingest", "SOURCE")
        assert bucket == "media", bucket
        return ("media", key)

    def binding(self, name, function, at):
        """The expression of the innermost `let/var name = …` before `at` whose block holds `at`, if any."""
        source = function.source
        live = self.live[function]
        best = None
        pattern = rf"(?<![\w.])(?:let|var)\s+{re.escape(name)}\s*(?::[^=\n]+)?=\s*"
        for match in re.finditer(pattern, live[function.body_start:at]):
            position = function.body_start + match.start()
            if self.enclosing_block(source, position) <= at <= self.enclosing_end(source, position):
                best = function.body_start + match.end()
        if best is None:
            return None
        end = best
        while end < len(source.masked) and source.masked[end] != "\n":
            end = source.close(end) if source.masked[end] in "([{" else end + 1
        return source.text[best:end].strip()

    @staticmethod
    def enclosing_block(source, position):
        level = 0
        for i in range(position, -1, -1):
            c = source.masked[i]
            if c in ")]}":
                level += 1
            elif c in "([{":
                if level == 0:
                    return i
                level -= 1
        return 0

    def enclosing_end(self, source, position):
        start = self.enclosing_block(source, position)
        return source.close(start)

    def parameter(self, name, function):
        return next((p for p in function.params if p[1] == name), None)

    def callers(self, function, parameter):
        """(caller, argument expression, position) for each call of `function` in this step."""
        label = parameter[0]
        index = function.params.index(parameter)
        for caller in self.functions:
            live = self.live[caller]
            pattern = rf"(?<![\w.])(?:(?:self|Self)\.)?{re.escape(function.name)}\s*\("
            for match in re.finditer(pattern, live[caller.body_start:caller.body_end]):
                if live[:caller.body_start + match.start()].rstrip().endswith("func"):
                    continue
                open_paren = caller.body_start + match.end() - 1
                arguments = call_arguments(caller.source, open_paren)
                argument = arguments.get(label) if label != "_" else arguments.get(index)
                if argument is not None:
                    yield caller, argument, open_paren

    def buckets(self, expression, function, at):
        expression = expression.strip()
        if re.fullmatch(r"(?:\w+\.)*mediaBucket", expression):
            return {"media"}
        if re.fullmatch(r"(?:\w+\.)*source\.bucket", expression) or self.is_source(expression, function):
            return {"SOURCE"}
        return self.names(expression, function, at, self.buckets)

    def keys(self, expression, function, at):
        expression = re.sub(r"^(?:try\??\s+|await\s+)+", "", expression.strip())
        helper = re.fullmatch(r"(VideoKeys|ChunkKeys)\.(\w+)\s*\((.*)\)", expression, re.S)
        if helper:
            call = Swift(expression)
            arguments = call_arguments(call, expression.index("("))
            definition, template = self.use.keys.helper(helper.group(2), arguments)
            bindings = dict(self.facts)
            for position, (label, name, _) in enumerate(definition.params):
                argument = arguments.get(label if label != "_" else position)
                values = self.values(argument)
                if values is not None:
                    bindings[name] = values
                else:
                    bindings.pop(name, None)
            return self.use.template_globs(template, bindings, helper.group(2))
        if re.fullmatch(r'"(?:[^"\\]|\\.)*"', expression, re.S) or (expression.startswith('"') and expression.endswith('"')):
            return self.use.template_globs(expression, self.facts)
        if re.fullmatch(r"(?:\w+\.)*source\.key", expression) or self.is_source(expression, function):
            return {"SOURCE"}
        member = re.fullmatch(r"(\$0|\w+)\.key", expression)
        if member:
            return self.member_keys(member.group(1), function, at)
        return self.names(expression, function, at, self.keys)

    def values(self, argument):
        """The possible integer values of an argument expression under the step's facts, or None."""
        if argument is None:
            return None
        argument = argument.strip()
        if argument in self.facts and isinstance(self.facts[argument], set):
            return self.facts[argument]
        if re.fullmatch(r"-?\d+", argument):
            return {int(argument)}
        names = sorted(set(re.findall(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", argument)))
        if not re.fullmatch(r"[\w.\s+\-*]+", argument) or not names or any(
                not isinstance(self.facts.get(name), set) for name in names):
            return None
        values = set()
        for combination in itertools.product(*(sorted(self.facts[name]) for name in names)):
            expression = argument
            for name, value in zip(names, combination):
                expression = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w.])", str(value), expression)
            values.add(eval(expression, {"__builtins__": {}}))
        return values

    def is_source(self, expression, function):
        base = expression.split(".")[0]
        parameter = self.parameter(base, function)
        return bool(parameter and parameter[2] == "SourceObject" and expression.count(".") == 1)

    def names(self, expression, function, at, resolve):
        """An identifier: its binding in scope, else the parameter it is (the trigger's, at the step's entry)."""
        assert re.fullmatch(r"\w+", expression), f"{function}: cannot tell which S3 key or bucket `{expression}` is"
        bound = self.binding(expression, function, at)
        if bound is not None:
            return resolve(bound, function, at)
        parameter = self.parameter(expression, function)
        assert parameter, f"{function}: `{expression}` is neither bound nor a parameter"
        if function is self.entry:
            return {"TRIGGER"}
        found = set()
        for caller, argument, position in self.callers(function, parameter):
            found |= resolve(argument, caller, position)
        assert found, f"{function}: no caller in this step gives `{expression}`"
        return found

    def member_keys(self, base, function, at):
        """`file.key` of a `[Upload]` parameter's element, `$0.key` in `parts.map { … }`: the keys its elements
        are made with."""
        if base == "$0":
            opener = function.source.masked.rfind("{", function.body_start, at)
            collection = re.search(r"(\w+)\s*\.\s*(?:map|compactMap|flatMap|forEach)\s*$",
                                   function.source.masked[:opener])
            assert collection, f"{function}: `$0.key` outside a map over a collection"
            return self.element_keys(collection.group(1) + ".map(\\.key)", function, opener)
        arrays = [p for p in function.params if re.fullmatch(r"\[\w+\]", p[2])]
        assert len(arrays) == 1, f"{function}: cannot tell what `{base}.key` is"
        return self.constructed_keys(arrays[0][2][1:-1])

    def element_keys(self, expression, function, at):
        """`uploads.map(\\.key)`: the keys of the elements of a local list (what it is made or appended with)."""
        mapped = re.fullmatch(r"(\w+)\.map\(\\\.key\)", expression.strip())
        assert mapped, f"{function}: cannot tell which keys `{expression}` are"
        name = mapped.group(1)
        bound = self.binding(name, function, at)
        assert bound is not None, f"{function}: `{name}` is not a local list"
        body = self.live[function][function.body_start:function.body_end]

        def element_type(list_name):
            declared = re.search(rf"(?:let|var)\s+{re.escape(list_name)}\s*:\s*\[(\w+)\]", body)
            assert declared, f"{function}: cannot tell the elements of `{list_name}`"
            return declared.group(1)

        mapped_property = re.match(r"(\w+)\.(?:compactMap|map)\(\\\.(\w+)\)$", bound)
        if mapped_property:  # `let parts = records.compactMap(\.sprite)`: what the records' sprite parts are made with
            owner = element_type(mapped_property.group(1))
            return self.constructed_keys(property_type(owner, mapped_property.group(2)), owner)
        # `var uploads: [Upload] = []`, then `uploads.append(Upload(key: …))`: the keys made in this function.
        kind = element_type(name)
        keys = set()
        for match in re.finditer(rf"(?<![\w.]){kind}\s*\(", body):
            open_paren = function.body_start + match.end() - 1
            keys |= self.keys(call_arguments(function.source, open_paren)["key"], function, open_paren)
        assert keys, f"{function}: no {kind}(key: …) for `{name}`"
        return keys

    def constructed_keys(self, kind, owner=None):
        """The `key:` of every `Kind(key: …)` (or `Owner.Kind(key: …)`) made in this step, or, for a kind this
        step only reads back (a record's sprite part), wherever these sources make it."""
        keys = set()
        scope = self.functions
        pattern = rf"(?<![\w.])(?:{owner}\.)?{kind}\s*\(" if owner else rf"(?<![\w.]){kind}\s*\("
        made_here = any(re.search(pattern, self.live[f][f.body_start:f.body_end]) for f in scope)
        if not made_here:
            scope = self.use.functions
        for function in scope:
            live = self.live.get(function) or self.use.live(function, self.facts)
            for match in re.finditer(pattern, live[function.body_start:function.body_end]):
                open_paren = function.body_start + match.end() - 1
                argument = call_arguments(function.source, open_paren).get("key")
                if argument is None:
                    continue
                if function not in self.live:
                    self.live[function] = live
                keys |= self.keys(argument, function, open_paren)
        assert keys, f"no {kind}(key: …) in the sources"
        return keys


def property_type(owner, name):
    """The type of a stored property of a support type (ChunkRecord's `sprite` -> SpritePart)."""
    source = KeyHelpers().source
    declaration = re.search(rf"\bstruct {re.escape(owner)}\b[^{{]*\{{", source.masked)
    assert declaration, f"no struct {owner} in VideoContract or MediaFunctionSupport"
    body = source.text[declaration.end() - 1:source.close(declaration.end() - 1)]
    found = set(re.findall(rf"\bvar {re.escape(name)}: (\w+)\??", body))
    assert len(found) == 1, (owner, name, found)
    return found.pop()


def segment_name_glob():
    """The segments' names: the muxer's pattern in MediaKit, the same as ChunkKeys.segmentName's."""
    transcoder = open(os.path.join(ROOT, "Sources", "MediaKit", "Transcoder.swift")).read()
    muxer = re.findall(r'"hls_segment_filename": "\\\([^)]*\)/([^"]+)"', transcoder)
    assert muxer, "MediaKit names its HLS segments"
    globs = {re.sub(r"%0?\d*d", "*", m) for m in muxer}
    keys = KeyHelpers()
    _, template = keys.helper("segmentName", {0: "index"})
    assert globs == {re.sub(r"\\\([^)]*\)\)?", "*", template.strip('"'))}, (globs, template)
    return globs.pop()


def aws_facts(template):
    """What holds in every step on AWS, for S3Use: the plan's window is the functions' CHUNK_WINDOW (0), and
    chunking is on (CHUNK_SECONDS is set and never 0) — as main.swift and Chunked.swift turn them into
    `configuration.chunking` and `plan.window`."""
    main = open(os.path.join(ROOT, "functions", "transcode", "main.swift")).read()
    chunked = open(os.path.join(ROOT, "functions", "transcode", "Chunked.swift")).read()
    assert re.search(r'guard let text = environment\.variables\["CHUNK_SECONDS"\], text != "0" else \{ return nil \}', main)
    assert 'variables["CHUNK_WINDOW"]' in main and re.search(r"\bwindow: chunking\.window\b", chunked)
    environment = lambda_functions(template)["transcode"][1]["Environment"]["Variables"]
    return {"plan.window": {int(environment["CHUNK_WINDOW"])},
            "configuration.chunking != nil": environment.get("CHUNK_SECONDS", "0") != "0"}


def role_grants(template, properties, buckets):
    """{action: {(bucket, key glob)}} a function's role allows (ListBucket: {(bucket, s3:prefix glob)}), checking
    that every statement allows, names no wildcard action or resource, and lists only under an s3:prefix."""
    role = template["Resources"][properties["Role"]["Fn::GetAtt"][0]]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    prefix = "arn:${AWS::Partition}:s3:::"
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
                    if isinstance(target, dict) and "Fn::Sub" in target and target["Fn::Sub"].startswith(prefix):
                        bucket, _, key = target["Fn::Sub"][len(prefix):].partition("/")
                        assert bucket in buckets.values(), target
                        bucket = next(b for b, n in buckets.items() if n == bucket)
                        if action == "s3:ListBucket":
                            assert not key and set(statement["Condition"]) == {"StringLike"}, statement
                            assert set(statement["Condition"]["StringLike"]) == {"s3:prefix"}, statement
                            for listed in statement["Condition"]["StringLike"]["s3:prefix"]:
                                granted.setdefault(action, set()).add((bucket, listed))
                            continue
                        assert key and "Condition" not in statement, statement
                        target = (bucket, key)
                    else:
                        assert not action.startswith("s3:"), statement
                        target = repr(target)
                    granted.setdefault(action, set()).add(target)
    return granted


def test_aws_roles_grant_what_the_functions_touch_and_no_more():
    """Each role allows exactly what S3Use reads off its function's steps in the Swift sources (the steps its
    triggers dispatch to, with AWS's facts): the same (action, bucket, key glob) set for GetObject, PutObject,
    AbortMultipartUpload, DeleteObject and ListBucket (its s3:prefix globs), plus its dead letters and its log
    group; the keys each function writes trigger exactly the next steps of the pipeline."""
    import fnmatch

    template = cfn_template()
    functions = lambda_functions(template)
    gateway = yaml.safe_load(open(os.path.join(MINIO, "functions.yaml")))
    runs = executables(gateway["functions"])
    buckets = {name: bucket_named(template, name)[2] for name in ("ingest", "media")}
    rules = trigger_rules(gateway)
    upload_prefix = next(value for function, _, kind, value in rules if function == "probe" and kind == "prefix")
    # The chunks read the upload the probe was triggered by: metadata.json's source is the probe's trigger object.
    probe_source = open(os.path.join(ROOT, "functions", "probe", "main.swift")).read()
    assert re.search(r"func probe\(bucket: String, key: String, .*\n.*\n.*\n\s*let sourceInfo = SourceObject\(bucket: "
                     r"bucket, key: key", probe_source)
    facts = aws_facts(template)
    assert facts == {"plan.window": {0}, "configuration.chunking != nil": True}

    derived = {}
    for name, (logical, properties) in functions.items():
        triggers = [(bucket, kind, value) for function, bucket, kind, value in rules if function == name]
        use = S3Use(runs[name], triggers, facts)
        uses = {}
        for action, bucket, key in use.uses:
            if key == "SOURCE":
                bucket, key = "ingest", upload_prefix + "*"
            uses.setdefault(action, set()).add((bucket, key))
        derived[name] = uses
        granted = role_grants(template, properties, buckets)
        log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
        assert granted.pop("logs:PutLogEvents") == granted.pop("logs:CreateLogStream") == {
            repr({"Fn::GetAtt": [log_group, "Arn"]})}, logical
        assert granted.pop("sqs:SendMessage") == {repr({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})}, logical
        assert granted == uses, (f"{logical} ({use.steps}): grants {sorted(set(granted) ^ set(uses))} "
                                 + "; ".join(f"{a}: +{sorted(granted.get(a, set()) - uses.get(a, set()))} "
                                             f"-{sorted(uses.get(a, set()) - granted.get(a, set()))}"
                                             for a in sorted(set(granted) | set(uses))
                                             if granted.get(a) != uses.get(a)))
        assert uses.get("s3:AbortMultipartUpload", set()) <= uses["s3:PutObject"], logical

    # Anchors, so that a reader that found nothing would not pass: the probe's grants as they have always been,
    # the lead's playable playlists (the bulk chunks have none), the plan's job objects, the finish's sprite
    # cleanup, the chunks' listing of the records and ranged reads of the upload.
    assert derived["probe"] == {"s3:GetObject": {("ingest", "uploads/*")},
                                "s3:PutObject": {("media", "*/metadata.json"), ("media", "*/status.json")}}
    assert ("media", "*/hls/master.m3u8") in derived["transcode-lead"]["s3:PutObject"]
    assert ("media", "*/hls/master.m3u8") not in derived["transcode-chunk"]["s3:PutObject"]
    assert ("media", "*/hls/*/init.mp4") not in derived["transcode-chunk"]["s3:PutObject"]
    assert {("media", "*/jobs/chunk-*.lead.json"), ("media", "*/jobs/chunk-*.chunk.json")} <= derived["transcode"]["s3:PutObject"]
    # The plan of a source whose audio is not AAC reads the upload, encodes the audio once and takes it back if
    # the video was deleted meanwhile; every chunk but the lead reads it.
    assert derived["transcode"]["s3:DeleteObject"] == {
        ("media", "*/thumbnails/sprite-part-*.jpg"), ("media", "*/audio/audio.m4a"), ("media", "*/audio/audio.json")}
    assert ("ingest", "uploads/*") in derived["transcode"]["s3:GetObject"]
    assert ("media", "*/audio/audio.m4a") in derived["transcode-chunk"]["s3:GetObject"]
    for name in ("transcode-lead", "transcode-chunk"):
        assert ("media", "*/chunks/") in derived[name]["s3:ListBucket"]
        assert ("ingest", "uploads/*") in derived[name]["s3:GetObject"]
        assert not any("/jobs/chunk-" in key for _, key in derived[name]["s3:PutObject"]), name
    assert all(bucket == "media" for uses in derived.values() for bucket, _ in uses["s3:PutObject"])

    # The keys a function writes (a sample of each glob) trigger exactly the next steps: upload → probe →
    # metadata.json → the plan → job objects → the chunks → finish.json → the finish, and nothing loops back.
    def triggered(function):
        found = set()
        for bucket, key in derived[function]["s3:PutObject"]:
            sample = key.replace("*", "x")
            for target, rule_bucket, kind, value in rules:
                if rule_bucket == bucket and (sample.startswith(value) if kind == "prefix" else sample.endswith(value)):
                    found.add(target)
        return found

    assert {name: triggered(name) for name in functions} == {
        "probe": {"transcode"}, "transcode": {"transcode-lead", "transcode-chunk"},
        "transcode-lead": {"transcode"}, "transcode-chunk": {"transcode"}}
    # And no pattern of one function lets it write a key (a sample) that only others write.
    samples = {name: {key.replace("*", "x") for _, key in uses["s3:PutObject"]} for name, uses in derived.items()}
    for name, uses in derived.items():
        others = set().union(*(s for other, s in samples.items() if other != name)) - samples[name]
        for _, pattern in uses["s3:PutObject"]:
            assert not any(fnmatch.fnmatchcase(key, pattern) for key in others), f"{name} may write {others} by {pattern}"

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


def test_s3_use_reads_the_steps_apart():
    """S3Use on the sources under other facts tells the steps apart as the code does: with a window (as on the
    gateways) the bulk chunks queue the next chunk's job object (a `.chunk.json`, never a lead) and the lead
    does not; an unknown S3 call or key fails instead of passing unread."""
    windowed = {"plan.window": {2}, "configuration.chunking != nil": True}
    aws = {"plan.window": {0}, "configuration.chunking != nil": True}
    chunk = [("media", "suffix", ".chunk.json")]
    lead = [("media", "suffix", ".lead.json")]
    assert S3Use("transcode", chunk, windowed).uses - S3Use("transcode", chunk, aws).uses == {
        ("s3:PutObject", "media", "*/jobs/chunk-*.chunk.json")}
    assert S3Use("transcode", lead, windowed).uses == S3Use("transcode", lead, aws).uses
    assert S3Use("transcode", [("media", "suffix", "/metadata.json")], aws).steps == ["plan"]
    assert S3Use("transcode", [("media", "suffix", "/jobs/finish.json")], aws).steps == ["finish"]

    class Unread(S3Use):
        def __init__(self, text):
            source = Swift(text)
            self.sources, self.functions = [source], swift_functions(source)
            self.by_name = {f.name: [f] for f in self.functions}
            self.keys, self.facts, self.uses, self.steps = KeyHelpers(), aws, set(), []
            self.step(self.only("run"), aws, ("media", "*/metadata.json"))

    Unread('func run(id: String) async throws { try await s3.putJSON(x, bucket: mediaBucket, key: VideoKeys.status(id)) }')
    with pytest.raises(AssertionError, match="S3 call s3.copyObject"):
        Unread('func run(id: String) async throws { try await s3.copyObject(bucket: mediaBucket, key: "a") }')
    with pytest.raises(AssertionError, match="cannot tell which S3 key"):
        Unread('func run(id: String) async throws { try await s3.putJSON(x, bucket: mediaBucket, key: id + ".json") }')


def recording_proxy(upstream):
    """An HTTP proxy on 127.0.0.1 in front of the store that records (method, path, query, status, body) of
    every request and passes it on unchanged (the SigV4 signature covers the Host header, which it keeps)."""
    import http.client
    import http.server
    import threading
    import urllib.parse

    seen = []
    target = urllib.parse.urlparse(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            assert "chunked" not in self.headers.get("Transfer-Encoding", ""), "a chunked request body"
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in ("connection", "keep-alive", "expect"):
                    connection.putheader(name, value)
            connection.endheaders(body or None)
            response = connection.getresponse()
            payload = response.read()
            connection.close()
            path, _, query = self.path.partition("?")
            seen.append((self.command, urllib.parse.unquote(path), urllib.parse.parse_qs(query, keep_blank_values=True),
                         response.status, body if self.command == "POST" else b""))
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                    self.send_header(name, value)
            # A HEAD answer's length is the object's, not its (empty) body's.
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = forward

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def iam_uses(request):
    """The (IAM action, bucket, key or s3:prefix) an S3 request needs (a 404 on a read needs ListBucket too)."""
    import xml.etree.ElementTree as ElementTree

    method, path, query, status, body = request
    bucket, _, key = path.lstrip("/").partition("/")
    if not key:
        if method == "GET" and query.get("list-type") == ["2"]:
            return {("s3:ListBucket", bucket, query.get("prefix", [""])[0])}
        if method == "POST" and "delete" in query:
            keys = [e.text for e in ElementTree.fromstring(body).iter() if e.tag.endswith("Key")]
            return {("s3:DeleteObject", bucket, k) for k in keys}
        raise AssertionError(f"a bucket request the roles do not know: {request[:4]}")
    if method in ("GET", "HEAD") and not set(query) - {"partNumber"}:
        return {("s3:GetObject", bucket, key)} | ({("s3:ListBucket", bucket, key)} if status == 404 else set())
    if method == "PUT" or method == "POST" and ("uploads" in query or "uploadId" in query):
        return {("s3:PutObject", bucket, key)}
    if method == "DELETE":
        return {("s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject", bucket, key)}
    raise AssertionError(f"an object request the roles do not know: {request[:4]}")


def test_aws_roles_allow_every_request_the_real_functions_make(tmp_path):
    """The real probe and transcode executables, one event per process through a Runtime API stub as on Lambda,
    each function's S3 requests through a recording proxy to a real store: a video probed, planned, its lead
    and bulk chunks encoded (with the AWS functions' variables: CHUNK_WINDOW 0), finished, then a duplicate
    finish and a chunk of a deleted video. Every request each function made is one its role allows — reads that
    may find nothing (404) included, which S3 answers so only under ListBucket — and the run covers every kind of
    grant the roles hold but AbortMultipartUpload (uploads too small to be multipart) and the chunks' take-back
    of what they wrote (a delete while they run)."""
    import fnmatch
    import json

    from conftest import ACCESS_KEY, REGION, SECRET_KEY, ffmpeg, start_store, stop_process

    probe_bin, transcode_bin = binary("CINESCALE_PROBE_BIN"), binary("CINESCALE_TRANSCODE_BIN")
    if not shutil.which("ffmpeg"):
        pytest.fail("ffmpeg is not installed (scripts/test installs it)")
    template = cfn_template()
    functions = lambda_functions(template)
    buckets = {name: bucket_named(template, name)[2] for name in ("ingest", "media")}
    runs = executables(yaml.safe_load(open(os.path.join(MINIO, "functions.yaml")))["functions"])
    clips = {}
    for name, seconds in (("v1", 9), ("short", 1)):
        clips[name] = tmp_path / f"{name}.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-f", "lavfi", "-i",
               "sine=frequency=440:sample_rate=44100", "-t", str(seconds), "-c:v", "libx264", "-g", "10",
               "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart", str(clips[name]))
    # Opus audio (as WebM uploads carry) is not carried: the plan encodes it once and the chunks read that. Its
    # SubRip track becomes a WebVTT rendition and its second audio track an audio rendition, both written by
    # the finish.
    clips["opus"] = tmp_path / "opus.mkv"
    (tmp_path / "subs.srt").write_text("1\n00:00:01,000 --> 00:00:03,000\nHello\n\n2\n00:00:05,000 --> 00:00:07,000\nWorld\n")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000",
           "-i", str(tmp_path / "subs.srt"), "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s", "-t", "9", "-c:v", "libx264",
           "-g", "10", "-pix_fmt", "yuv420p", "-c:a", "libopus", "-c:s", "srt", str(clips["opus"]))
    (tmp_path / "notes.mp4").write_bytes(b"not a video\n" * 100)

    (tmp_path / "store").mkdir()
    store_process, store = start_store(str(tmp_path / "store"))
    proxies = {name: recording_proxy(store.endpoint) for name in functions}
    try:
        s3 = store.client()
        for bucket in ("ingest", "media"):
            s3.create_bucket(Bucket=bucket)
        for name, path in clips.items():
            s3.upload_file(str(path), "ingest", f"uploads/{path.name}")
        s3.upload_file(str(tmp_path / "notes.mp4"), "ingest", "uploads/notes.mp4")

        def invoke(function, bucket, key, fails=False):
            """One invocation of `function` for a new object, in its own process, as Lambda runs it."""
            _, properties = functions[function]
            # The function's variables in the template: its literal values, test-sized ones for its parameters,
            # this machine's places for the endpoint and the scratch directory.
            endpoint = f"http://127.0.0.1:{proxies[function][0].server_address[1]}"
            sized = {"LADDER": "240", "X264_PRESET": "ultrafast", "KEYFRAME_SECONDS": "2", "CHUNK_SECONDS": "4",
                     "FIRST_CHUNK_SECONDS": "1", "LOG_LEVEL": "warning", "MEDIA_BUCKET": "media",
                     "CINESCALE_S3_ENDPOINT": endpoint}
            environment = {name: value if isinstance(value, str) else sized[name]
                           for name, value in properties["Environment"]["Variables"].items()}
            work = tmp_path / "work" / function
            work.mkdir(parents=True, exist_ok=True)
            environment.update({name: str(work) for name in ("WORK_DIR", "TMPDIR") if name in environment})
            event = {"Records": [{
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION, "eventTime": "2026-01-01T00:00:00.000Z",
                "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}}}]}
            runtime, posted = lambda_stub(event)
            try:
                # What Lambda adds: the Runtime API, the function's name, the region and the role's credentials.
                run = subprocess.run([{"probe": probe_bin, "transcode": transcode_bin}[runs[function]]], capture_output=True,
                                     text=True, timeout=300, env={
                                         **environment, "PATH": os.environ["PATH"],
                                         "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{runtime.server_address[1]}",
                                         "AWS_LAMBDA_FUNCTION_NAME": function, "AWS_REGION": REGION,
                                         "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
            finally:
                runtime.shutdown()
            responses = [body for method, path, body in posted if path.endswith("/error" if fails else "/response")]
            assert len(responses) == 1, f"{function} {key}: {posted} {run.stderr[-3000:]}"
            return json.loads(responses[0])

        # A refused upload: the probe says why in status.json (and fails, to the dead letters).
        assert invoke("probe", "ingest", "uploads/notes.mp4", fails=True)["errorType"] == "UnreadableMedia"
        # A one-second video is one chunk: its lead is also its last, and queues the finish.
        invoke("probe", "ingest", "uploads/short.mp4")
        assert invoke("transcode", "media", "short/metadata.json")[0]["chunk"] == 1
        invoke("transcode-lead", "media", "short/jobs/chunk-00000.lead.json")
        assert invoke("transcode", "media", "short/jobs/finish.json")[0]["step"] == "finish"

        for video, upload in (("v1", "v1.mp4"), ("opus", "opus.mkv")):
            invoke("probe", "ingest", f"uploads/{upload}")
            plan = invoke("transcode", "media", f"{video}/metadata.json")
            assert plan[0]["step"] == "plan" and plan[0]["chunk"] >= 3, plan
            jobs = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="media", Prefix=f"{video}/jobs/")["Contents"])
            assert len(jobs) == plan[0]["chunk"] and jobs[0].endswith(".lead.json"), jobs
            for job in jobs:
                done = invoke("transcode-lead" if job.endswith(".lead.json") else "transcode-chunk", "media", job)
                assert done[0]["step"] == "chunk" and not done[0].get("skipped"), done
            finished = invoke("transcode", "media", f"{video}/jobs/finish.json")
            assert finished[0]["step"] == "finish" and not finished[0].get("skipped"), finished
            status = json.loads(s3.get_object(Bucket="media", Key=f"{video}/status.json")["Body"].read())
            assert status["state"] == "ready" and status["renditions"][0]["name"] == "240p", status
        assert s3.head_object(Bucket="media", Key="opus/audio/audio.m4a")["ContentLength"] > 1000
        assert invoke("transcode", "media", "v1/jobs/finish.json")[0]["skipped"] == "duplicate"
        assert invoke("transcode-chunk", "media", "gone/jobs/chunk-00001.chunk.json")[0]["skipped"] == "cancelled"
    finally:
        for server, _ in proxies.values():
            server.shutdown()
        stop_process(store_process)

    covered = set()
    for name, (logical, properties) in functions.items():
        granted = role_grants(template, properties, buckets)
        requests = proxies[name][1]
        assert requests, name
        for request in requests:
            for action, bucket, key in iam_uses(request):
                kind = {"ingest": "ingest", "media": "media"}[bucket]
                allowed = [glob for granted_bucket, glob in granted.get(action, set())
                           if granted_bucket == kind and fnmatch.fnmatchcase(key, glob)]
                assert allowed, f"{logical}'s role does not allow {action} on {bucket}/{key} ({request[:4]})"
                covered.add((name, action, allowed[0]))
    # The run reached what it is for: the lead's playable playlists, the chunks' ranged reads of the upload and
    # listing of the records, the plan's reads that find nothing, the finish's MP4 and its sprite parts' removal.
    for expected in [("transcode-lead", "s3:PutObject", "*/hls/master.m3u8"), ("transcode-chunk", "s3:GetObject", "uploads/*"),
                     ("transcode-chunk", "s3:ListBucket", "*/chunks/"), ("transcode", "s3:ListBucket", "*/plan.json"),
                     ("transcode", "s3:PutObject", "*/mp4/*.mp4"), ("transcode", "s3:DeleteObject", "*/thumbnails/sprite-part-*.jpg"),
                     ("transcode", "s3:PutObject", "*/jobs/chunk-*.chunk.json"), ("transcode-chunk", "s3:PutObject", "*/jobs/finish.json"),
                     ("transcode", "s3:GetObject", "uploads/*"), ("transcode", "s3:PutObject", "*/audio/audio.m4a"),
                     ("transcode-chunk", "s3:GetObject", "*/audio/audio.m4a"),
                     ("transcode", "s3:PutObject", "*/hls/*/captions.vtt")]:
        assert expected in covered, (expected, sorted(covered))
    ranged = [r for r in proxies["transcode-chunk"][1] if r[1].startswith("/ingest/")]
    assert ranged and all(r[0] in ("GET", "HEAD") for r in ranged)
    # What the run does not reach, each for its reason: uploads too small to be multipart (so nothing to
    # abort), a video deleted while its chunk runs (the chunk takes back what it wrote), a chunk that fails (it
    # says so in status.json), and reads that find nothing where this run always found something — the lead's
    # plan (a video deleted before its first chunk), the chunks' status.json (the plan writes it before any
    # chunk), the finish's records (a finish queued before the last record), the chunks' audio record (the plan
    # writes it before it queues them); and the plan's take-back of the audio it encoded (a delete meanwhile).
    unreached = {
        "probe": set(),
        "transcode": {("s3:AbortMultipartUpload", "*/mp4/*.mp4"), ("s3:AbortMultipartUpload", "*/thumbnails/sprite.jpg"),
                      ("s3:AbortMultipartUpload", "*/hls/*/captions.vtt"), ("s3:AbortMultipartUpload", "*/hls/*/index.m3u8"),
                      ("s3:ListBucket", "*/chunks/*.json"), ("s3:AbortMultipartUpload", "*/audio/audio.m4a"),
                      ("s3:DeleteObject", "*/audio/audio.m4a"), ("s3:DeleteObject", "*/audio/audio.json"),
                      ("s3:AbortMultipartUpload", "*/mp4/audio.m4a"), ("s3:AbortMultipartUpload", "*/hls/*/init.mp4"),
                      ("s3:AbortMultipartUpload", "*/hls/*/seg-*.m4s")},
        "transcode-lead": {("s3:ListBucket", "*/plan.json")},
        "transcode-chunk": set()}
    for name, (_, properties) in functions.items():
        granted = {(action, glob) for action, pairs in role_grants(template, properties, buckets).items()
                   if action.startswith("s3:") for _, glob in pairs}
        if name in ("transcode-lead", "transcode-chunk"):
            unreached[name] |= {(action, glob) for action, glob in granted
                                if action in ("s3:AbortMultipartUpload", "s3:DeleteObject")}
            unreached[name] |= {("s3:PutObject", "*/status.json"), ("s3:ListBucket", "*/status.json")}
        if name == "transcode-chunk":
            unreached[name].add(("s3:ListBucket", "*/audio/audio.json"))
        reached = {(action, glob) for function, action, glob in covered if function == name}
        assert granted - reached == unreached[name], (name, sorted(granted - reached))


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
        "#include <libavfilter/avfilter.h>\n#include <libswscale/swscale.h>\n#include <libswresample/swresample.h>\n"
        'int main(void) { printf("avformat %u avcodec %u avfilter %u swscale %u swresample %u\\n", avformat_version(), '
        "avcodec_version(), avfilter_version(), swscale_version(), swresample_version()); return 0; }\n")
    # The libraries the CFFmpeg module map links, exactly.
    modulemap = open(os.path.join(ROOT, "Sources", "CFFmpeg", "module.modulemap")).read()
    libraries = re.findall(r'link "(\w+)"', modulemap)
    assert {"avformat", "avcodec", "avfilter", "swscale", "swresample", "avutil"} == set(libraries)
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
