"""Triggers on a store whose notifications are off: the gateway's poll source (`sources.poll`) lists the bucket,
turns each new object into the S3 event record a notification would carry, and queues it through the same
intake as the webhook. Real processes: the embedded store started without any notification target, the gateway,
and awslambdaric workers recording what they receive (IntegrationTests/recorder.py: one effect file per request
id, so a re-run of an interrupted invocation overwrites rather than adds). Counted: every upload has exactly one
invocation, also across a `kill -9` of the gateway; with several gateways on one PostgreSQL queue, which share
one seen state (a gateway joining after the others' invocations were pruned runs nothing again); and against
LocalStack's S3, with no notification configuration on the bucket."""
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest

from recorder import read_effects, read_runs
from conftest import ACCESS_KEY, SECRET_KEY, binary, free_port, healthy, start_store, stop_process, temporary, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
N = 200


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


class PollGateway:
    """`cinescale gateway` with a recording function, a trigger rule on `bucket`, and a poll source on
    `endpoint`; can be killed with -9 and restarted on the same port with the same data directory."""

    def __init__(self, root, endpoint, bucket, access_key, secret_key, sleep=0.0, concurrency=4, interval="200ms",
                 queue=None, start_from=None):
        self.root = root
        self.records = os.path.join(root, "records")
        os.makedirs(self.records, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "functions": {
                "rec": {
                    "command": [sys.executable, "-m", "awslambdaric", "recorder.handler"],
                    "environment": {"PYTHONPATH": HERE, "RECORD_DIR": self.records, "FAIL": "0", "SLEEP": str(sleep)},
                    "timeout": 30, "concurrency": concurrency,
                    "retry": {"maxAttempts": 3, "backoff": 0.05, "maxBackoff": 0.2},
                }
            },
            "triggers": [{"function": "rec", "bucket": bucket, "prefix": "videos/"}],
            # Secrets through the gateway's environment, as an operator would.
            "sources": {"poll": [{"endpoint": endpoint, "bucket": bucket, "interval": interval,
                                  "accessKey": "${POLL_ACCESS_KEY}", "secretKey": "${POLL_SECRET_KEY}",
                                  "region": "us-east-1"}]},
        }
        if queue:
            config["queue"] = queue
        if start_from:
            config["sources"]["poll"][0]["startFrom"] = start_from
        self.config = os.path.join(root, "gateway.yaml")
        with open(self.config, "w") as f:
            json.dump(config, f)
        self.env = {**os.environ, "POLL_ACCESS_KEY": access_key, "POLL_SECRET_KEY": secret_key}
        self.proc = None

    def start(self):
        log = open(os.path.join(self.root, "gateway.log"), "ab")
        self.proc = subprocess.Popen(
            [binary("CINESCALE_BIN"), "gateway", "--config", self.config, "--port", str(self.port),
             "--data-dir", os.path.join(self.root, "gateway-data"), "--access-key", ACCESS_KEY,
             "--secret-key", SECRET_KEY, "--log-level", "info"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for("the gateway", lambda: healthy(self.url) or self.proc.poll() is not None)
            assert self.proc.poll() is None, self.log()
        except BaseException:
            self.close()
            raise

    def kill(self):
        """kill -9 the gateway and, as a crashed host would, its workers (their own process groups)."""
        workers = children_of(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for pid in workers:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def metric(self, name, **labels):
        """The value of one sample of `name` with these labels (0 when absent)."""
        text = urllib.request.urlopen(self.url + "/metrics", timeout=10).read().decode()
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        for line in text.splitlines():
            if (line.startswith(name + "{") or line.startswith(name + " ")) and all(w in line for w in wanted):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def scans(self):
        return self.metric("cinescale_gateway_poll_scans_total")

    def wait_for_scans(self, more=2):
        """Returns after `more` complete scans from now (a later scan would have found anything left)."""
        target = self.scans() + more
        wait_for(f"{more} more scans", lambda: self.scans() >= target, timeout=60)

    def runs(self):
        return read_runs(self.records)

    def effects(self):
        return read_effects(self.records)

    def log(self):
        return open(os.path.join(self.root, "gateway.log"), errors="replace").read()

    def close(self):
        if self.proc and self.proc.poll() is None:
            stop_process(self.proc)


def record_of(effect):
    return effect["event"]["Records"][0]


def object_key(effect):
    return urllib.parse.unquote_plus(record_of(effect)["s3"]["object"]["key"])


def upload(s3, bucket, keys, threads=8):
    def put(key):
        s3.put_object(Bucket=bucket, Key=key, Body=f"body of {key} ".encode() * 3)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, keys))


def keys(n, prefix="videos/clip "):
    return [f"{prefix}{i:03d}.mp4" for i in range(n)]


@pytest.fixture
def quiet_store():
    """The embedded store with notifications off (no webhook target), and a bucket `ingest`."""
    binary("CINESCALE_BIN")
    root = tempfile.mkdtemp(prefix="cinescale-poll-")
    proc, store = start_store(root)
    try:
        s3 = store.client(retries={"max_attempts": 1, "mode": "standard"})
        s3.create_bucket(Bucket="ingest")
        assert "QueueConfigurations" not in s3.get_bucket_notification_configuration(Bucket="ingest")
        yield root, store, s3
    finally:
        stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def gateway_factory(quiet_store):
    root, store, _ = quiet_store
    made = []

    def make(**kwargs):
        g = PollGateway(os.path.join(root, f"gw{len(made)}"), store.endpoint, "ingest", ACCESS_KEY, SECRET_KEY, **kwargs)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


def assert_each_once(gateway, expected_keys):
    effects = gateway.effects()
    seen = [object_key(e) for e in effects.values()]
    assert sorted(seen) == sorted(expected_keys), "an upload was lost or invoked twice"
    # Every run belongs to one of those invocations (a run interrupted by a kill ran again under the same id).
    assert {r["requestId"] for r in gateway.runs()} == set(effects)


def test_200_uploads_200_invocations_each_once(quiet_store, gateway_factory):
    _, _, s3 = quiet_store
    gateway = gateway_factory()
    gateway.start()
    expected = keys(N)
    # Objects outside the rule's prefix are listed but invoke nothing.
    upload(s3, "ingest", expected + ["elsewhere/x.bin"])
    wait_for(f"{N} effects", lambda: len(gateway.effects()) >= N or None, timeout=120)
    gateway.wait_for_scans()
    assert_each_once(gateway, expected)
    assert len(gateway.runs()) == N  # no crash: each ran once
    record = record_of(next(iter(gateway.effects().values())))
    assert record["eventName"] == "ObjectCreated:Put" and record["eventSource"] == "cinescale:poll"
    assert record["s3"]["bucket"]["name"] == "ingest"
    key = object_key({"event": {"Records": [record]}})
    head = s3.head_object(Bucket="ingest", Key=key)
    assert record["s3"]["object"]["eTag"] == head["ETag"].strip('"')
    assert record["s3"]["object"]["size"] == head["ContentLength"]
    assert " " not in record["s3"]["object"]["key"] and "+" in record["s3"]["object"]["key"]  # URL-encoded as S3 does
    assert gateway.metric("cinescale_gateway_poll_records_emitted_total", event="ObjectCreated:Put") == N + 1
    assert gateway.metric("cinescale_gateway_poll_objects_seen") == N + 1
    assert gateway.metric("cinescale_gateway_poll_errors_total", stage="list") == 0
    assert gateway.metric("cinescale_gateway_poll_errors_total", stage="commit") == 0

    # A changed object is a new version: one more invocation; an unchanged rescan adds nothing.
    s3.put_object(Bucket="ingest", Key=expected[0], Body=b"a new version")
    wait_for("the new version's effect", lambda: len(gateway.effects()) == N + 1 or None, timeout=60)
    gateway.wait_for_scans()
    assert len(gateway.effects()) == N + 1 and len(gateway.runs()) == N + 1


def test_kill_9_halfway_then_restart_each_once(quiet_store, gateway_factory):
    _, _, s3 = quiet_store
    gateway = gateway_factory(sleep=0.05, concurrency=2)
    gateway.start()
    expected = keys(N)
    uploads = threading.Thread(target=upload, args=(s3, "ingest", expected, 4))
    uploads.start()
    try:
        wait_for("about half the effects", lambda: len(gateway.effects()) >= N // 2 or None, timeout=120)
        gateway.kill()
    finally:
        uploads.join()
    interrupted = len(gateway.effects())
    assert interrupted < N, "too fast to interrupt"
    gateway.start()
    wait_for(f"{N} effects after the restart", lambda: len(gateway.effects()) >= N or None, timeout=120)
    gateway.wait_for_scans()
    assert_each_once(gateway, expected)
    assert len(gateway.runs()) >= N


def test_store_down_is_retried_and_counted_without_stopping_the_gateway(tmp_path):
    """A poll source pointed at a closed port: errors counted, the gateway keeps serving."""
    gateway = PollGateway(str(tmp_path), f"http://127.0.0.1:{free_port()}", "ingest", "k", "s")
    gateway.start()
    try:
        wait_for("two listing errors", lambda: gateway.metric("cinescale_gateway_poll_errors_total", stage="list") >= 2,
                 timeout=60)
        assert healthy(gateway.url) and gateway.proc.poll() is None
        assert "could not list the bucket; retrying" in gateway.log()
    finally:
        gateway.close()
    assert gateway.proc.returncode == 0  # a graceful shutdown, with the source still backing off


# MARK: Several gateways on one PostgreSQL queue

SHARED_N = 100


@pytest.fixture
def postgres(quiet_store):
    from pipeline_cluster import Postgres
    root, _, _ = quiet_store
    pg = Postgres(root)
    try:
        yield pg
    finally:
        pg.close()


def test_gateways_on_postgres_share_one_seen_state_and_a_late_joiner_runs_nothing_again(
        quiet_store, gateway_factory, postgres):
    """Two gateways poll one bucket into one PostgreSQL queue: every upload runs once. The finished invocations
    are then pruned (as `queue.retention` would, days later), and a third gateway joins with `startFrom:
    beginning`: it reads the fleet's seen state from the database, so it emits nothing — with a seen state of
    its own, it would emit every object again and, the dedupe keys pruned, run each a second time."""
    _, _, s3 = quiet_store
    queue = {"postgres": postgres.url}
    fleet = [gateway_factory(queue=queue, start_from="beginning") for _ in range(2)]
    for g in fleet:
        g.start()

    def effects(gateways):
        return [object_key(e) for g in gateways for e in g.effects().values()]

    def states():
        return dict(postgres.sql("SELECT state, COUNT(*) FROM cinescale_invocation GROUP BY 1"))

    expected = keys(SHARED_N)
    upload(s3, "ingest", expected)
    wait_for(f"{SHARED_N} effects", lambda: len(effects(fleet)) >= SHARED_N or None, timeout=300)
    wait_for("every invocation finished", lambda: states() == {"succeeded": str(SHARED_N)} or None, timeout=120)
    for g in fleet:
        g.wait_for_scans()
    assert sorted(effects(fleet)) == sorted(expected), "an upload was lost or invoked twice"
    assert postgres.sql("SELECT COUNT(*), COUNT(DISTINCT dedupe_key) FROM cinescale_invocation") == [
        [str(SHARED_N), str(SHARED_N)]]
    # One seen state in the database, every key in it once.
    assert postgres.sql("SELECT COUNT(*), COUNT(DISTINCT key) FROM cinescale_poll_object") == [
        [str(SHARED_N), str(SHARED_N)]]
    emitted = [g.metric("cinescale_gateway_poll_records_emitted_total", event="ObjectCreated:Put") for g in fleet]
    assert sum(emitted) >= SHARED_N
    assert all(g.metric("cinescale_gateway_poll_errors_total", stage="commit") == 0 for g in fleet)
    print(f"records emitted per gateway: {emitted} (more than {SHARED_N} in all: scans at once, deduplicated)")

    # Retention has passed: the queue prunes what finished (the statement of `prune(finishedBefore:)`).
    pruned = postgres.sql(
        "WITH d AS (DELETE FROM cinescale_invocation WHERE state IN ('succeeded', 'dead') RETURNING id) "
        "SELECT COUNT(*) FROM d")
    assert pruned == [[str(SHARED_N)]] and states() == {}

    late = gateway_factory(queue=queue, start_from="beginning")
    late.start()
    late.wait_for_scans(3)
    for g in fleet:
        g.wait_for_scans()
    assert late.metric("cinescale_gateway_poll_records_emitted_total", event="ObjectCreated:Put") == 0
    assert late.metric("cinescale_gateway_poll_objects_seen") == SHARED_N
    assert states() == {}, "an object already turned into an event was queued again"
    assert sorted(effects(fleet + [late])) == sorted(expected)

    # The late gateway is one of the fleet: a new upload runs once, wherever it is seen first.
    s3.put_object(Bucket="ingest", Key="videos/after the join.mp4", Body=b"new")
    wait_for("the new upload's effect", lambda: len(effects(fleet + [late])) == SHARED_N + 1 or None, timeout=120)
    wait_for("its invocation finished", lambda: states() == {"succeeded": "1"} or None, timeout=60)
    for g in fleet + [late]:
        g.wait_for_scans()
    assert sorted(effects(fleet + [late])) == sorted(expected + ["videos/after the join.mp4"])
    assert states() == {"succeeded": "1"}


# MARK: LocalStack

@pytest.fixture(scope="module")
def localstack():
    from test_localstack import LocalStack
    binary("CINESCALE_BIN")
    with temporary("cinescale-poll-localstack-", LocalStack) as ls:
        yield ls


def test_localstack_bucket_without_notifications(localstack, tmp_path):
    from test_localstack import ACCESS, SECRET
    s3 = localstack.client("s3")
    s3.create_bucket(Bucket="polled")
    assert "QueueConfigurations" not in s3.get_bucket_notification_configuration(Bucket="polled")
    gateway = PollGateway(str(tmp_path), localstack.endpoint, "polled", ACCESS, SECRET)
    gateway.start()
    try:
        expected = keys(5, prefix="videos/ls ")
        upload(s3, "polled", expected, threads=5)
        wait_for("5 effects", lambda: len(gateway.effects()) >= 5 or None, timeout=60)
        gateway.wait_for_scans()
        assert_each_once(gateway, expected)
        assert len(gateway.runs()) == 5
        record = record_of(next(iter(gateway.effects().values())))
        head = s3.head_object(Bucket="polled", Key=object_key({"event": {"Records": [record]}}))
        assert record["s3"]["object"]["eTag"] == head["ETag"].strip('"')
    finally:
        gateway.close()
