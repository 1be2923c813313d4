"""Upload notifications end to end with real processes: the embedded store (MinIO-style webhook target and
bucket rules set with aws-cli), the gateway's durable queue, and awslambdaric workers recording what they
receive. Fault tests kill and restart processes and count effects: nothing lost, nothing done twice."""
import concurrent.futures
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError

from recorder import read_effects, read_runs
from conftest import ACCESS_KEY, SECRET_KEY, aws_cli, binary, free_port, healthy, metric, start_store, stop_process, wait_for

TOKEN = "trigger-test-token"



class Pipeline:
    """A store with a webhook target pointing at a gateway port, and a gateway that can be stopped, killed
    and restarted on that same port with the same queue."""

    def __init__(self, root, fail=False, sleep=0.0, attempts=3, concurrency=2, queue_limit=None, batch_size=1):
        self.root = root
        self.records = os.path.join(root, "records")
        os.makedirs(self.records)
        self.gateway_port = free_port()
        config = {
            "functions": {
                "rec": {
                    "command": [sys.executable, "-m", "awslambdaric", "recorder.handler"],
                    "environment": {"PYTHONPATH": os.path.dirname(os.path.abspath(__file__)), "RECORD_DIR": self.records, "FAIL": "1" if fail else "0",
                                    "SLEEP": str(sleep)},
                    "timeout": 30, "concurrency": concurrency,
                    "retry": {"maxAttempts": attempts, "backoff": 0.05, "maxBackoff": 0.2},
                }
            },
            "triggers": [{"function": "rec", "bucket": "ingest", "prefix": "videos/"}],
        }
        self.config_path = os.path.join(root, "gateway.yaml")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.gateway_proc = None
        args = ["--notify-webhook", f"gw=http://127.0.0.1:{self.gateway_port}/events", "--notify-token", TOKEN]
        if queue_limit:
            args += ["--notify-queue-limit", str(queue_limit)]
        if batch_size != 1:
            args += ["--notify-batch-size", str(batch_size)]
        self.store_args = args
        self.store_proc, self.store = start_store(os.path.join(root), args)
        self.s3 = self.store.client(retries={"max_attempts": 1, "mode": "standard"})
        self.s3.create_bucket(Bucket="ingest")
        result = aws_cli(
            self.store.endpoint, root, "s3api", "put-bucket-notification-configuration", "--bucket", "ingest",
            "--notification-configuration", json.dumps({"QueueConfigurations": [{
                "Id": "to-gateway", "QueueArn": "arn:minio:sqs::gw:webhook", "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "videos/"}]}}}]}))
        assert result.returncode == 0, result.stderr

    @property
    def gateway(self):
        return f"http://127.0.0.1:{self.gateway_port}"

    def start_gateway(self):
        cinescale = binary("CINESCALE_BIN")
        log = open(os.path.join(self.root, "gateway.log"), "ab")
        self.gateway_proc = subprocess.Popen(
            [cinescale, "gateway", "--config", self.config_path, "--port", str(self.gateway_port),
             "--data-dir", os.path.join(self.root, "gateway-data"), "--event-token", TOKEN,
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--log-level", "info"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("the gateway", lambda: healthy(self.gateway))

    def kill_gateway(self):
        """kill -9 the gateway and, as a crashed host would, its workers (their own process groups)."""
        workers = children_of(self.gateway_proc.pid)
        self.gateway_proc.send_signal(signal.SIGKILL)
        self.gateway_proc.wait()
        for pid in workers:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def restart_store(self, hard=False):
        if hard:
            self.store_proc.send_signal(signal.SIGKILL)
            self.store_proc.wait()
        else:
            stop_process(self.store_proc)
        os.remove(os.path.join(self.root, "store.port"))
        self.store_proc, self.store = start_store(self.root, self.store_args)
        self.s3 = self.store.client(retries={"max_attempts": 1, "mode": "standard"})

    def upload(self, count, prefix="videos/clip-", threads=8):
        def put(n):
            body = f"object {n} ".encode() * (n % 7 + 1)
            self.s3.put_object(Bucket="ingest", Key=f"{prefix}{n:03d}.mp4", Body=body)
            return n
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, range(count)))

    def runs(self):
        return read_runs(self.records)

    def effects(self):
        return read_effects(self.records)

    def close(self):
        if self.gateway_proc and self.gateway_proc.poll() is None:
            stop_process(self.gateway_proc)
        stop_process(self.store_proc)


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return kids


def object_key(effect):
    record = effect["event"]["Records"][0]
    return urllib.parse.unquote_plus(record["s3"]["object"]["key"])


@pytest.fixture
def pipeline_factory():
    binary("CINESCALE_BIN")
    made = []

    def make(**kwargs):
        root = tempfile.mkdtemp(prefix="cinescale-triggers-")
        p = Pipeline(root, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
        shutil.rmtree(p.root, ignore_errors=True)



def test_aws_s3_cp_invokes_the_function_with_the_object(pipeline_factory, tmp_path):
    p = pipeline_factory()
    p.start_gateway()
    rules = json.loads(aws_cli(p.store.endpoint, tmp_path, "s3api", "get-bucket-notification-configuration",
                               "--bucket", "ingest").stdout)
    assert rules["QueueConfigurations"][0]["QueueArn"] == "arn:minio:sqs::gw:webhook"
    assert rules["QueueConfigurations"][0]["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "videos/"}]

    source = tmp_path / "clip.mp4"
    source.write_bytes(os.urandom(150_000))
    key = "videos/my clip+ünï (1).mp4"
    result = aws_cli(p.store.endpoint, tmp_path, "s3", "cp", "--no-progress", str(source), f"s3://ingest/{key}")
    assert result.returncode == 0, result.stderr
    head = p.s3.head_object(Bucket="ingest", Key=key)
    # Outside the rule's prefix: no invocation.
    p.s3.put_object(Bucket="ingest", Key="elsewhere/a.mp4", Body=b"x")

    effects = wait_for("the effect", lambda: p.effects() or None)
    time.sleep(0.5)
    assert len(effects) == 1 and len(p.runs()) == 1
    record = next(iter(effects.values()))["event"]["Records"][0]
    assert record["eventName"] == "s3:ObjectCreated:Put"
    assert record["eventSource"] == "minio:s3"
    assert record["s3"]["bucket"]["name"] == "ingest"
    assert urllib.parse.unquote_plus(record["s3"]["object"]["key"]) == key
    assert record["s3"]["object"]["size"] == 150_000
    assert record["s3"]["object"]["eTag"] == head["ETag"].strip('"')
    assert hashlib.md5(source.read_bytes()).hexdigest() == record["s3"]["object"]["eTag"]


@pytest.mark.parametrize("batch_size", [1, 32])
def test_gateway_down_during_100_uploads_then_all_processed(pipeline_factory, batch_size):
    p = pipeline_factory(concurrency=4, batch_size=batch_size)
    p.upload(100)
    # Every event is queued in the store while the target is down.
    wait_for("the target marked down", lambda: metric(p.store.endpoint, "cinescale_store_notification_target_up") == 0.0)
    assert metric(p.store.endpoint, "cinescale_store_notification_queue_depth") == 100
    p.start_gateway()
    wait_for("100 effects", lambda: len(p.effects()) == 100 or None, timeout=120)
    time.sleep(0.5)
    effects = p.effects()
    assert sorted(object_key(e) for e in effects.values()) == [f"videos/clip-{n:03d}.mp4" for n in range(100)]
    assert len(p.runs()) == 100
    wait_for("the store queue drained", lambda: metric(p.store.endpoint, "cinescale_store_notification_queue_depth") == 0)
    assert metric(p.store.endpoint, "cinescale_store_notification_target_up") == 1.0
    records = metric(p.gateway, "cinescale_gateway_event_records_total")
    notifications = metric(p.gateway, "cinescale_gateway_event_notifications_total")
    assert records == 100
    if batch_size == 1:
        assert notifications == 100  # MinIO's format: one event per POST
    else:
        # The backlog went out several records per POST: the 16 senders each first finish the one event they
        # held while the gateway was down, then take up to 32 of the 84 waiting (about 20 POSTs in all).
        assert notifications <= 40, (notifications, records)


def test_kill_9_gateway_with_queued_and_running_invocations(pipeline_factory):
    p = pipeline_factory(sleep=0.2, concurrency=2)
    p.start_gateway()
    p.upload(40)
    wait_for("a few effects", lambda: len(p.effects()) >= 4 or None)
    assert len(p.effects()) < 40, "too fast to interrupt"
    p.kill_gateway()
    interrupted = len(p.effects())
    p.start_gateway()
    wait_for("40 effects", lambda: len(p.effects()) == 40 or None, timeout=120)
    time.sleep(0.5)
    effects = p.effects()
    keys = [object_key(e) for e in effects.values()]
    # Every object processed, each by exactly one invocation (one effect per object version).
    assert sorted(keys) == [f"videos/clip-{n:03d}.mp4" for n in range(40)]
    assert len(set(keys)) == 40
    runs = p.runs()
    # At least once: an attempt cut short by the kill ran again, under the same request id.
    assert len(runs) >= 40
    assert {r["requestId"] for r in runs} == set(effects.keys())
    assert interrupted < 40


def test_always_failing_function_gets_its_attempts_then_one_dead_letter(pipeline_factory):
    p = pipeline_factory(fail=True, attempts=3)
    p.start_gateway()
    p.s3.put_object(Bucket="ingest", Key="videos/broken.mp4", Body=b"not a video")
    cinescale = binary("CINESCALE_BIN")
    auth = ["--gateway", p.gateway, "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]

    def cli(*args):
        return subprocess.run([cinescale, "invocations", *args, *auth], capture_output=True, text=True, timeout=60)

    def dead():
        out = cli("list", "--state", "dead", "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["invocations"]

    letters = wait_for("a dead letter", lambda: dead() or None)
    time.sleep(0.5)
    assert len(letters) == 1
    assert len(p.runs()) == 3
    letter = letters[0]
    assert letter["attempts"] == 3 and letter["errorType"] == "RuntimeError" and letter["errorMessage"] == "always fails"
    assert urllib.parse.unquote_plus(letter["event"]["Records"][0]["s3"]["object"]["key"]) == "videos/broken.mp4"
    table = cli("list")
    assert letter["id"] in table.stdout and "dead" in table.stdout and "3/3" in table.stdout
    redrive = cli("redrive", letter["id"])
    assert redrive.returncode == 0, redrive.stderr
    wait_for("three more attempts", lambda: len(p.runs()) == 6 or None)
    wait_for("dead again", lambda: dead() or None)
    again = cli("redrive", "no-such-id")
    assert again.returncode != 0 and "404" in again.stderr


def test_duplicate_notifications_have_one_effect(pipeline_factory):
    p = pipeline_factory()
    p.start_gateway()
    p.s3.put_object(Bucket="ingest", Key="videos/once.mp4", Body=b"once")
    effects = wait_for("the effect", lambda: p.effects() or None)
    body = json.dumps(next(iter(effects.values()))["event"]).encode()
    # The same record delivered twice more (a webhook retry after a lost 200, a replay).
    for _ in range(2):
        request = urllib.request.Request(p.gateway + "/events", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(request, timeout=10).read())
        assert reply == {"records": 1, "queued": 0, "duplicates": 1}
    time.sleep(0.5)
    assert len(p.effects()) == 1 and len(p.runs()) == 1


def test_store_restart_and_crash_lose_no_events(pipeline_factory):
    p = pipeline_factory()
    p.upload(20, prefix="videos/a-")
    p.restart_store()
    p.upload(20, prefix="videos/b-")
    p.restart_store(hard=True)  # kill -9 with 40 undelivered events
    p.start_gateway()
    wait_for("40 effects", lambda: len(p.effects()) == 40 or None, timeout=120)
    keys = sorted(object_key(e) for e in p.effects().values())
    assert keys == sorted([f"videos/a-{n:03d}.mp4" for n in range(20)] + [f"videos/b-{n:03d}.mp4" for n in range(20)])


def test_a_full_queue_refuses_uploads_with_slowdown_and_drains(pipeline_factory):
    p = pipeline_factory(queue_limit=5)
    for n in range(5):
        p.s3.put_object(Bucket="ingest", Key=f"videos/q{n}.mp4", Body=b"q")
    with pytest.raises(ClientError) as refused:
        p.s3.put_object(Bucket="ingest", Key="videos/q5.mp4", Body=b"q")
    assert refused.value.response["Error"]["Code"] == "SlowDown"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert metric(p.store.endpoint, "cinescale_store_requests_refused_total") >= 1
    assert metric(p.store.endpoint, "cinescale_store_notification_queue_depth") == 5
    # A bucket without rules is not held back.
    p.s3.create_bucket(Bucket="plain")
    p.s3.put_object(Bucket="plain", Key="x", Body=b"x")
    p.start_gateway()
    wait_for("the queue drained", lambda: metric(p.store.endpoint, "cinescale_store_notification_queue_depth") == 0)
    p.s3.put_object(Bucket="ingest", Key="videos/q5.mp4", Body=b"q")
    wait_for("6 effects", lambda: len(p.effects()) == 6 or None)
