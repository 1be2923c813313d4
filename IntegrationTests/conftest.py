"""Fixtures that run the real `cinescale store` binary on a free 127.0.0.1 port and point real clients at it."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config

ACCESS_KEY = "AKIACINESCALETEST"
SECRET_KEY = "cinescale/test/secret+key"
REGION = "us-east-1"


class Store:
    def __init__(self, endpoint, data_dir, log_path):
        self.endpoint = endpoint
        self.data_dir = data_dir
        self.log_path = log_path

    def client(self, **config):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(**config) if config else None,
        )

    def new_bucket(self, prefix="t"):
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


def _binary():
    path = os.environ.get("CINESCALE_BIN")
    if not path or not os.path.exists(path):
        pytest.exit("CINESCALE_BIN must point at a built cinescale binary (run scripts/test)", returncode=2)
    return path


def start_process(args, tmp_root, name):
    """Starts a cinescale server with `--port 0 --port-file`, waits until it listens; returns (proc, port)."""
    port_file = os.path.join(tmp_root, f"{name}.port")
    log_path = os.path.join(tmp_root, f"{name}.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen([*args, "--port", "0", "--port-file", port_file], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while not os.path.exists(port_file):
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start-up:\n" + open(log_path).read())
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"{name} did not start in 30 s")
        time.sleep(0.05)
    time.sleep(0.05)
    return proc, int(open(port_file).read().strip())


def start_store(tmp_root, extra_args=()):
    data_dir = os.path.join(tmp_root, "data")
    proc, port = start_process(
        [
            _binary(), "store", "--data-dir", data_dir, "--host", "127.0.0.1",
            "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--log-level", "debug", *extra_args,
        ],
        tmp_root, "store",
    )
    return proc, Store(f"http://127.0.0.1:{port}", data_dir, os.path.join(tmp_root, "store.log"))


def stop_process(proc):
    """SIGTERM, then SIGKILL if it has not exited within 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def aws_cli(endpoint, home, *args):
    """Runs aws-cli from the project venv against `endpoint`, with configuration isolated under `home`."""
    aws_bin = os.path.join(os.path.dirname(sys.executable), "aws")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.path.join(str(home), "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(str(home), "aws-credentials"),
    }
    return subprocess.run([aws_bin, "--endpoint-url", endpoint, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def store():
    tmp_root = tempfile.mkdtemp(prefix="cinescale-store-")
    proc, s = start_store(tmp_root, ["--public-read-bucket", "public-media"])
    try:
        yield s
    finally:
        stop_process(proc)
        shutil.rmtree(tmp_root, ignore_errors=True)


@pytest.fixture
def bucket(store):
    return store.new_bucket()


@pytest.fixture
def aws(store, tmp_path):
    """Runs aws-cli (from the project venv) against the store with isolated configuration."""

    def run(*args, check=True):
        result = aws_cli(store.endpoint, tmp_path, *args)
        if check and result.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    return run


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, condition, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def metric(endpoint, name):
    text = urllib.request.urlopen(endpoint + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def binary(name):
    """A built binary named by an environment variable scripts/test sets (CINESCALE_PROBE_BIN, …)."""
    path = os.environ.get(name)
    if not path or not os.path.exists(path):
        pytest.skip(f"{name} not set (run scripts/test)")
    return path


def ffmpeg(*args):
    """The ffmpeg CLI, the tests' source of clips (an oracle, never part of the pipeline)."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=300)


def healthy(url):
    """Whether GET url/healthz answers 200 now."""
    try:
        return urllib.request.urlopen(url + "/healthz", timeout=1).status == 200
    except OSError:
        return False


@contextlib.contextmanager
def temporary(prefix, make):
    """make(a new temporary directory), closed and removed afterwards: for module-scoped servers."""
    root = tempfile.mkdtemp(prefix=prefix)
    thing = make(root)
    try:
        yield thing
    finally:
        thing.close()
        shutil.rmtree(root, ignore_errors=True)


def api_key(database, tenant="test", scopes="admin"):
    """A new API key's token, made by the operator's `cinescale keys create` on a gateway's database (its
    queue's SQLite file, or a postgres:// URL)."""
    import json
    out = subprocess.run([binary("CINESCALE_BIN"), "keys", "create", "--database", database, "--tenant", tenant,
                          "--scopes", scopes, "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["token"]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}
