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
