"""The pipeline against LocalStack (S3, SQS, SNS in host mode, from localstack/run.sh): the gateway's SQS event
source long-polls the queue that LocalStack's S3 notifies (set up by localstack/init/ready.d), an upload through
the API's presigned PUT (which LocalStack checks) ends as renditions written back to LocalStack's S3 and played
through a signed GET. Also: s3:TestEvent is skipped, an SNS envelope is unwrapped, a message that is not an
event is left to the queue's redrive policy, and an unreachable queue neither spins nor takes the gateway down.

LocalStack needs Python >= 3.13 in its own venv (localstack/run.sh install); where none can be found or
installed, the LocalStack tests are skipped with the reason (scripts/test runs pytest with -rs)."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config

from conftest import binary, ffmpeg, free_port, healthy, stop_process, temporary, wait_for, api_key, bearer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
RUN = os.path.join(ROOT, "localstack", "run.sh")
# LocalStack accepts any access key but checks presigned URLs against the secret "test".
ACCESS, SECRET = "CINESCALELOCALKEY", "test"
QUEUE = "cinescale-events"
MAX_RECEIVES = 2  # the hook's redrive policy: after 2 receipts a message goes to cinescale-events-dlq
VISIBILITY = 4  # the gateway's visibility timeout: extended every 2 s while a message's invocations run
FIXTURE_EVENT = {"Records": [{
    "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-11-25T15:02:54.393Z",
    "eventName": "ObjectCreated:Put", "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
    "requestParameters": {"sourceIPAddress": "127.0.0.1"}, "responseElements": {"x-amz-request-id": "028c4847"},
    "s3": {"s3SchemaVersion": "1.0", "configurationId": "n1",
           "bucket": {"name": "elsewhere", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": "arn:aws:s3:::elsewhere"},
           "object": {"key": "sns/one.bin", "sequencer": "0055AED6DCD90281E5", "eTag": "7265f4d211b56873a381d321f586e4a9",
                      "size": 1024}}}]}


class LocalStack:
    def __init__(self, root):
        installed = subprocess.run([RUN, "install"], capture_output=True, text=True, timeout=1200)
        if installed.returncode == 3:
            reason = "LocalStack cannot be installed here: " + installed.stderr.strip().splitlines()[-1]
            print(reason, file=sys.stderr)
            pytest.skip(reason)
        if installed.returncode != 0:
            raise RuntimeError(f"localstack/run.sh install failed:\n{installed.stdout}{installed.stderr}")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(root, "localstack.log")
        env = {**os.environ, "CINESCALE_QUEUE": QUEUE, "CINESCALE_QUEUE_MAX_RECEIVES": str(MAX_RECEIVES)}
        # Its own session: LocalStack ignores SIGTERM for a long while, so it is stopped by killing the group.
        self.proc = subprocess.Popen([RUN, "start", str(self.port), os.path.join(root, "state")], env=env,
                                     stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for("LocalStack and its init hooks", self.ready, timeout=180)
        except BaseException:
            print(open(self.log_path, errors="replace").read()[-4000:])
            self.close()
            raise
        self.queue_url = f"{self.endpoint}/000000000000/{QUEUE}"
        self.dlq_url = f"{self.queue_url}-dlq"

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("LocalStack exited:\n" + open(self.log_path, errors="replace").read()[-4000:])
        try:
            with urllib.request.urlopen(self.endpoint + "/_localstack/init/ready", timeout=2) as response:
                state = json.loads(response.read())
        except (OSError, ValueError):
            return False
        failed = [s for s in state.get("scripts", []) if s.get("state") == "ERROR"]
        if failed:
            raise RuntimeError(f"a LocalStack init hook failed: {failed}\n" + open(self.log_path, errors="replace").read()[-4000:])
        return state.get("completed") is True

    def client(self, service):
        return boto3.client(service, endpoint_url=self.endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
                            region_name="us-east-1", config=Config(signature_version="s3v4") if service == "s3" else None)

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


class Gateway:
    """`cinescale gateway` with probe, transcode and a recording `hello`, its SQS source on LocalStack's queue, and
    the product API over LocalStack's S3."""

    def __init__(self, root, localstack, sources):
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.records = os.path.join(root, "records.jsonl")
        environment = {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
                       "CINESCALE_S3_ENDPOINT": localstack.endpoint if localstack else "http://127.0.0.1:1",
                       "MEDIA_BUCKET": "media"}
        config = {
            "functions": {
                "probe": {"command": [binary("CINESCALE_PROBE_BIN")], "timeout": 60, "environment": environment},
                "transcode": {"command": [binary("CINESCALE_TRANSCODE_BIN")], "timeout": 300,
                              "environment": {**environment, "LADDER": "240,360", "X264_PRESET": "ultrafast"}},
                "rec": {"command": [binary("CINESCALE_HELLO_BIN"), "record"], "environment": {"HELLO_RECORD_FILE": self.records}},
            },
            "triggers": [{"function": "probe", "bucket": "ingest", "prefix": "uploads/"},
                         {"function": "transcode", "bucket": "media", "suffix": "/metadata.json"},
                         {"function": "rec", "bucket": "elsewhere"}],
            "sources": {"sqs": sources},
        }
        self.config = os.path.join(root, "gateway.yaml")
        with open(self.config, "w") as f:
            json.dump(config, f)
        self.log_path = os.path.join(root, "gateway.log")
        args = [binary("CINESCALE_BIN"), "gateway", "--config", self.config, "--port", str(self.port),
                "--data-dir", os.path.join(root, "gw"), "--access-key", ACCESS, "--secret-key", SECRET,
                "--log-level", "debug"]
        if localstack:
            args += ["--api-store", localstack.endpoint]
        self.proc = subprocess.Popen(args, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        try:
            wait_for("the gateway", lambda: healthy(self.url) or self.proc.poll() is not None)
            assert self.proc.poll() is None, open(self.log_path).read()
        except BaseException:
            self.close()
            raise

    def metric(self, name, **labels):
        """The value of one sample of `name` with these labels (0 when absent)."""
        text = urllib.request.urlopen(self.url + "/metrics", timeout=10).read().decode()
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                if all(w in line for w in wanted):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def log(self):
        return open(self.log_path, errors="replace").read()

    def close(self):
        stop_process(self.proc)


@pytest.fixture(scope="module")
def localstack():
    with temporary("cinescale-localstack-", LocalStack) as ls:
        yield ls


@pytest.fixture(scope="module")
def gateway(localstack):
    def start(root):
        return Gateway(root, localstack, [{
            "queueUrl": localstack.queue_url, "accessKeyId": ACCESS, "secretAccessKey": SECRET,
            "visibilityTimeout": VISIBILITY, "maxInFlight": 10}])
    with temporary("cinescale-ls-gateway-", start) as g:
        yield g


def queue_counts(localstack, url):
    attributes = localstack.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_the_pipeline_runs_on_localstack(localstack, gateway, tmp_path):
    # The hook's two notification configurations each sent an s3:TestEvent: skipped and deleted.
    wait_for("the s3:TestEvents skipped",
             lambda: gateway.metric("cinescale_gateway_sqs_messages_total", queue=QUEUE, outcome="test_event") >= 2, timeout=30)
    clip = str(tmp_path / "ls.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=4", "-f", "lavfi", "-i", "sine=duration=4",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", clip)
    key = api_key(os.path.join(gateway.root, "gw", "queue.sqlite"))
    request = urllib.request.Request(gateway.url + "/uploads", method="POST", headers={"Content-Type": "application/json", **bearer(key)},
                                     data=json.dumps({"fileName": "ls.mp4", "size": os.path.getsize(clip)}).encode())
    ticket = json.loads(urllib.request.urlopen(request, timeout=10).read())
    assert ticket["uploadUrl"].startswith(localstack.endpoint + "/ingest/uploads/")
    # LocalStack checks presigned signatures: a tampered one is refused, ours is taken.
    tampered = ticket["uploadUrl"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", clip, tampered],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "403", out
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", clip, ticket["uploadUrl"]],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "200", out

    def ready():
        video = json.loads(urllib.request.urlopen(urllib.request.Request(f"{gateway.url}/videos/{ticket['videoId']}", headers=bearer(key)), timeout=10).read())
        assert video["state"] != "failed", video
        return video if video["state"] == "ready" else None
    video = wait_for("ready on LocalStack", ready, timeout=240)
    assert [r["name"] for r in video["renditions"]] == ["240p", "360p"]
    url = video["renditions"][1]["url"]
    assert url.startswith(localstack.endpoint + "/media/")
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,height", "-of", "json", url],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    streams = json.loads(probe.stdout)["streams"]
    assert {"codec_type": "video", "height": 360} in streams and any(s["codec_type"] == "audio" for s in streams)
    # Both messages (upload → probe, metadata.json → transcode) were deleted once their invocations succeeded.
    wait_for("the queue drained", lambda: queue_counts(localstack, localstack.queue_url) == (0, 0), timeout=30)
    assert gateway.metric("cinescale_gateway_sqs_messages_total", queue=QUEUE, outcome="deleted") >= 4
    assert "SQS message is not an S3 event" not in gateway.log()


def test_a_test_event_is_skipped(localstack, gateway):
    before = gateway.metric("cinescale_gateway_sqs_messages_total", queue=QUEUE, outcome="test_event")
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-25T15:02:49.761Z",
                       "Bucket": "elsewhere", "RequestId": "c3938ab8", "HostId": "eftixk72aD6Ap51TnqcoF8eFidJG9Z/2"})
    localstack.client("sqs").send_message(QueueUrl=localstack.queue_url, MessageBody=body)
    wait_for("the test event skipped",
             lambda: gateway.metric("cinescale_gateway_sqs_messages_total", queue=QUEUE, outcome="test_event") > before, timeout=30)
    wait_for("the queue drained", lambda: queue_counts(localstack, localstack.queue_url) == (0, 0), timeout=30)
    assert not os.path.exists(gateway.records) or "c3938ab8" not in open(gateway.records).read()


def test_an_sns_envelope_is_unwrapped(localstack, gateway):
    sns, sqs = localstack.client("sns"), localstack.client("sqs")
    arn = sns.create_topic(Name="cinescale-uploads")["TopicArn"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=localstack.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)  # not raw: SQS gets SNS's JSON envelope
    sns.publish(TopicArn=arn, Subject="Amazon S3 Notification", Message=json.dumps(FIXTURE_EVENT))

    def recorded():
        if not os.path.exists(gateway.records):
            return None
        lines = [json.loads(line) for line in open(gateway.records) if line.strip()]
        return [r for r in lines if "sns/one.bin" in json.dumps(r)]
    events = wait_for("the enveloped event recorded", recorded, timeout=30)
    assert len(events) == 1
    text = json.dumps(events[0])
    assert '"eventSource": "aws:s3"' in text and '"name": "elsewhere"' in text and "TopicArn" not in text
    wait_for("the queue drained", lambda: queue_counts(localstack, localstack.queue_url) == (0, 0), timeout=30)
    # The same event again (a duplicate delivery) is deduplicated, and its message deleted all the same.
    sns.publish(TopicArn=arn, Subject="Amazon S3 Notification", Message=json.dumps(FIXTURE_EVENT))
    wait_for("the duplicate's message deleted", lambda: queue_counts(localstack, localstack.queue_url) == (0, 0)
             and gateway.metric("cinescale_gateway_event_duplicates_total") >= 1, timeout=30)
    assert len(recorded()) == 1


def test_a_message_that_is_not_an_event_is_left_to_the_redrive_policy(localstack, gateway):
    sqs = localstack.client("sqs")
    garbage = "this is not an S3 event " + str(time.time())
    sqs.send_message(QueueUrl=localstack.queue_url, MessageBody=garbage)

    def in_dead_letters():
        got = sqs.receive_message(QueueUrl=localstack.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  MessageSystemAttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
        return [m for m in got if m["Body"] == garbage]
    # Received, logged, not deleted: it comes back after each visibility timeout until SQS moves it.
    dead = wait_for("the message moved to the dead-letter queue", in_dead_letters, timeout=VISIBILITY * (MAX_RECEIVES + 3))
    assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= MAX_RECEIVES
    assert gateway.metric("cinescale_gateway_sqs_messages_total", queue=QUEUE, outcome="invalid") >= MAX_RECEIVES
    assert "not an S3 event notification" in gateway.log()
    assert gateway.proc.poll() is None and healthy(gateway.url)


def test_an_unreachable_queue_backs_off_without_taking_the_gateway_down(tmp_path):
    # Nothing listens on this port: every ReceiveMessage fails to connect.
    queue = f"http://127.0.0.1:{free_port()}/000000000000/missing"
    gateway = Gateway(str(tmp_path), None, [{"queueUrl": queue, "accessKeyId": ACCESS, "secretAccessKey": SECRET}])
    try:
        time.sleep(4)
        errors = gateway.metric("cinescale_gateway_sqs_errors_total", queue="missing")
        assert 1 <= errors <= 4, errors  # 1 s, 2 s, 4 s… between attempts, not a spin
        assert healthy(gateway.url)
        assert "could not receive from the SQS queue; retrying" in gateway.log()
    finally:
        gateway.close()
    assert gateway.proc.returncode == 0
