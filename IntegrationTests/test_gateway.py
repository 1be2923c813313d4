"""The gateway as a real process: aws-cli and boto3 invoke functions over the Lambda Invoke API, and
awslambdaric (AWS's own runtime client) serves a Python function over the gateway's Runtime API."""
import json
import os
import shutil
import signal
import sys
import tempfile
import time

import boto3
import botocore
import pytest
from botocore.config import Config

from conftest import ACCESS_KEY, REGION, SECRET_KEY, aws_cli, binary, start_process, stop_process

PY_HANDLERS = '''
import json, os, time

def echo(event, context):
    return {"echo": event, "request_id": context.aws_request_id, "remaining_ms": context.get_remaining_time_in_millis()}

def fail(event, context):
    raise ValueError("python handler refused: " + json.dumps(event))
'''


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                kids.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return kids


class Gateway:
    def __init__(self, proc, endpoint, root):
        self.proc, self.endpoint, self.root = proc, endpoint, root

    def client(self, retries=0):
        return boto3.client(
            "lambda", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name=REGION,
            config=Config(retries={"max_attempts": retries + 1, "mode": "standard"}, read_timeout=30),
        )


@pytest.fixture(scope="module")
def gateway():
    cinescale = binary("CINESCALE_BIN")
    hello = binary("CINESCALE_HELLO_BIN")
    root = tempfile.mkdtemp(prefix="cinescale-gateway-")
    with open(os.path.join(root, "handlers.py"), "w") as f:
        f.write(PY_HANDLERS)
    config = {
        "functions": {
            "echo": {"command": [hello, "echo"], "concurrency": 2, "timeout": 5},
            "fail": {"command": [hello, "fail"], "timeout": 5},
            "sleep": {"command": [hello, "sleep"], "timeout": 1, "concurrency": 1, "maxQueued": 1},
            "crash": {"command": [hello, "crash"], "timeout": 5},
            "pyecho": {
                "command": [sys.executable, "-m", "awslambdaric", "handlers.echo"],
                "environment": {"PYTHONPATH": root}, "timeout": 5,
            },
            "pyfail": {
                "command": [sys.executable, "-m", "awslambdaric", "handlers.fail"],
                "environment": {"PYTHONPATH": root}, "timeout": 5,
            },
        }
    }
    config_path = os.path.join(root, "gateway.yaml")
    with open(config_path, "w") as f:
        json.dump(config, f)  # JSON is YAML
    proc, port = start_process(
        [cinescale, "gateway", "--config", config_path, "--data-dir", os.path.join(root, "data"),
         "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--log-level", "info"],
        root, "gateway",
    )
    gw = Gateway(proc, f"http://127.0.0.1:{port}", root)
    try:
        yield gw
    finally:
        stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)


def test_aws_cli_request_response_and_event(gateway, tmp_path):
    out = tmp_path / "out.json"
    result = aws_cli(gateway.endpoint, tmp_path, "lambda", "invoke", "--function-name", "echo",
                     "--invocation-type", "RequestResponse", "--payload", '{"hello": "world"}', str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["StatusCode"] == 200
    assert json.loads(out.read_text()) == {"hello": "world"}

    result = aws_cli(gateway.endpoint, tmp_path, "lambda", "invoke", "--function-name", "echo",
                     "--invocation-type", "Event", "--payload", '{"async": true}', str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["StatusCode"] == 202

    result = aws_cli(gateway.endpoint, tmp_path, "lambda", "invoke", "--function-name", "nope", "--payload", "{}", str(out))
    assert result.returncode != 0 and "ResourceNotFoundException" in result.stderr


def test_awslambdaric_python_function(gateway):
    client = gateway.client()
    response = client.invoke(FunctionName="pyecho", Payload=json.dumps({"n": 1}))
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    body = json.loads(response["Payload"].read())
    assert body["echo"] == {"n": 1}
    assert len(body["request_id"]) >= 32
    assert 0 < body["remaining_ms"] <= 5000

    response = client.invoke(FunctionName="pyfail", Payload=json.dumps({"x": 2}))
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "ValueError"
    assert "python handler refused" in error["errorMessage"]


def test_function_error_and_crash_restart(gateway):
    client = gateway.client()
    response = client.invoke(FunctionName="fail", Payload=b"{}")
    assert response["FunctionError"] == "Unhandled"
    assert "errorType" in json.loads(response["Payload"].read())

    response = client.invoke(FunctionName="crash", Payload=b"{}")
    assert response["FunctionError"] == "Unhandled"
    assert "Runtime.ExitError" in response["Payload"].read().decode()
    # The crashed worker was replaced: the next call is answered by a new process.
    response = client.invoke(FunctionName="crash", Payload=b"{}")
    assert response["FunctionError"] == "Unhandled"


def test_timeout_kills_and_replaces(gateway):
    client = gateway.client()
    response = client.invoke(FunctionName="sleep", Payload=json.dumps({"seconds": 3}))
    assert response["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in response["Payload"].read().decode()
    response = client.invoke(FunctionName="sleep", Payload=json.dumps({"seconds": 0}))
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"slept": 0}


def test_throttling_429(gateway):
    import concurrent.futures

    client = gateway.client()
    codes = []

    def call():
        try:
            client.invoke(FunctionName="sleep", Payload=json.dumps({"seconds": 0.5}))
            return "ok"
        except botocore.exceptions.ClientError as err:
            return err.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: call(), range(6)))
    assert "TooManyRequestsException" in codes, codes
    assert "ok" in codes


def test_sigterm_stops_every_worker(gateway):
    # Runs last in this module: the gateway goes down with all of its workers.
    client = gateway.client()
    client.invoke(FunctionName="pyecho", Payload=b"{}")
    workers = children_of(gateway.proc.pid)
    assert len(workers) >= 6
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.proc.wait(timeout=15) == 0
    time.sleep(0.2)
    alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"]
    assert alive == []
