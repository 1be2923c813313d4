"""The pipeline against Ceph RGW (a throwaway one-node cluster from infra/ceph/start-rgw.sh, with its real
SigV4 checking): RGW's bucket notifications go through a persistent SNS-style topic whose push-endpoint is
the gateway's webhook; the gateway accepts RGW's 2.2 records. An upload through the API's presigned PUT
ends as renditions written back to RGW and served by signed GET; and 50 uploads made while the gateway is
down are all processed, each once, after it is back."""
import collections
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config

from conftest import binary, ffmpeg, free_port, healthy, stop_process, temporary, wait_for, api_key, bearer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ACCESS, SECRET = "CINESCALERGWKEY", "cinescale-rgw-secret"


class RGW:
    def __init__(self, root):
        if not shutil.which("radosgw"):
            pytest.fail("radosgw is not installed (scripts/test installs radosgw ceph-mon ceph-osd ceph-common)")
        self.dir = os.path.join(root, "ceph")
        self.port = free_port()
        try:
            out = subprocess.run([os.path.join(ROOT, "infra", "ceph", "start-rgw.sh"), self.dir, str(self.port),
                                  str(free_port()), ACCESS, SECRET], capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as timeout:
            out = subprocess.CompletedProcess(timeout.cmd, -1, f"start-rgw.sh did not finish in {timeout.timeout} s\n", "")
        if out.returncode != 0:
            logs = ""
            for name in ("rgw.out", "client.rgw.a.log", "osd.out", "mon.out"):
                path = os.path.join(self.dir, "log", name)
                if os.path.exists(path):
                    logs += f"\n--- {name}\n" + open(path, errors="replace").read()[-3000:]
            self.close()
            raise RuntimeError(f"RGW did not start: {out.stdout}{out.stderr}{logs}")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def client(self, service):
        return boto3.client(service, endpoint_url=self.endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
                            region_name="us-east-1", config=Config(signature_version="s3v4", retries={"max_attempts": 2}))

    def notify(self, bucket, topic, push_endpoint, rule_id, **key_filter):
        sns = self.client("sns")
        arn = sns.create_topic(Name=topic, Attributes={"push-endpoint": push_endpoint, "persistent": "true"})["TopicArn"]
        configuration = {"Id": rule_id, "TopicArn": arn, "Events": ["s3:ObjectCreated:*"]}
        if key_filter:
            configuration["Filter"] = {"Key": {"FilterRules": [{"Name": k, "Value": v} for k, v in key_filter.items()]}}
        self.client("s3").put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"TopicConfigurations": [configuration]})

    def push_counters(self):
        """RGW's notification counters (pubsub_push_ok, _failed, _pending), from its admin socket."""
        try:
            out = subprocess.run(["ceph", "--admin-daemon", os.path.join(self.dir, "run", "client.rgw.a.asok"), "perf", "dump"],
                                 capture_output=True, text=True, timeout=30)
            counters = json.loads(out.stdout)["rgw"]
            return {k: v for k, v in counters.items() if k.startswith("pubsub_push")}
        except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as error:
            return f"unavailable ({error})"

    def queue(self, topic, pattern):
        """What a persistent topic's queue still holds: its entry count and the names matching `pattern` found
        in the entries. Ceph 16 has no `radosgw-admin topic stats`, so this calls the queue's object class
        (2pc_queue_list_entries on notif/TOPIC in default.rgw.log) through the system Python's rados module."""
        try:
            out = subprocess.run(["/usr/bin/python3", "-c", QUEUE_SCRIPT, os.path.join(self.dir, "ceph.conf"), topic, pattern],
                                 capture_output=True, text=True, timeout=60)
            return json.loads(out.stdout) if out.returncode == 0 else f"unavailable ({out.stderr.strip()[-300:]})"
        except (OSError, ValueError, subprocess.TimeoutExpired) as error:
            return f"unavailable ({error})"

    def close(self):
        subprocess.run([os.path.join(ROOT, "infra", "ceph", "stop-rgw.sh"), self.dir], timeout=60)


# Lists a persistent topic's queue (up to 1000 entries) with the 2pc_queue object class and prints
# {"entries": N, "truncated": bool, "names": [...]}, the names being the matches of a pattern in the entries.
QUEUE_SCRIPT = r"""
import json, re, struct, sys
import rados
conf, topic, pattern = sys.argv[1:4]
op = struct.pack("<Q", 1000) + struct.pack("<I", 0)              # cls_queue_list_op{max, start_marker ""}
op = struct.pack("<BBI", 1, 1, len(op)) + op
cluster = rados.Rados(conffile=conf)
cluster.connect(timeout=10)
ioctx = cluster.open_ioctx("default.rgw.log")
ioctx.set_namespace("notif")
_, out = ioctx.execute(topic, "2pc_queue", "2pc_queue_list_entries", op, length=16 << 20)
pos = 6                                                          # cls_queue_list_ret's encoding header
truncated = bool(out[pos]); pos += 1
pos += 4 + struct.unpack_from("<I", out, pos)[0]                 # next_marker
count = struct.unpack_from("<I", out, pos)[0]; pos += 4
names = []
for _ in range(count):                                           # cls_queue_entry{bufferlist data, marker}
    length = struct.unpack_from("<I", out, pos + 2)[0]
    size = struct.unpack_from("<I", out, pos + 6)[0]
    names += [m.decode() for m in re.findall(pattern.encode(), out[pos + 10:pos + 10 + size])]
    pos += 6 + length
cluster.shutdown()
print(json.dumps({"entries": count, "truncated": truncated, "names": sorted(set(names))}))
"""


class Front:
    """What RGW pushes to in the outage test, on 127.0.0.1: forwards each POST to the gateway and relays its
    answer; while the gateway is down it answers 503 after `delay` seconds, as a load balancer without a
    backend would, instead of letting RGW's connection be refused.

    Why: Debian 12's RGW (Ceph 16.2.15) can lose the completion of a push that fails at once, and a topic
    that lost one delivers nothing more until radosgw restarts. While its endpoint refuses connections, RGW
    re-sends the topic's whole queue in a tight loop (Ceph 16 has no retry delay), each push failing within
    microseconds. Now and then one push never returns: RGW's log shows its HTTP client finishing the
    request ("Couldn't connect") but the push never reports back, `pubsub_push_pending` stays up, and the
    queue's processing waits for it for good, the 50 events still in the queue. That is the race fixed
    upstream by ceph/ceph#57632 ("rgw/http: check 'done' under mutex"; not in Pacific): the request may
    finish between the unlocked check of its `done` flag and the registration of the waiting coroutine.
    Measured here with the port closed during the outage: 8 of 14 outages stalled a topic for good, and 1
    of 4 runs of the withdrawn version of this test (which timed out whatever its timeout); with a front
    like this one (a refusal costs RGW a quarter of a second), 0 of 18."""

    def __init__(self, upstream_port, delay=0.25):
        front = self
        self.upstream_port, self.delay = upstream_port, delay
        self.answers = collections.Counter()  # status -> count, 503 "down" for the refused ones
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    upstream = http.client.HTTPConnection("127.0.0.1", front.upstream_port, timeout=60)
                    upstream.request("POST", self.path, body, {"Content-Type": self.headers.get("Content-Type", "application/json")})
                    response = upstream.getresponse()
                    status, reply, label = response.status, response.read(), str(response.status)
                    upstream.close()
                except ConnectionRefusedError:
                    time.sleep(front.delay)
                    status, reply, label = 503, b'{"error":"the gateway is down"}', "down"
                except OSError as error:  # e.g. the gateway went away mid-request
                    time.sleep(front.delay)
                    status, reply, label = 502, json.dumps({"error": str(error)}).encode(), "502"
                with front.lock:
                    front.answers[label] += 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # RGW gave up on this request; it retries the event

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256  # RGW pushes a whole queue at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="rgw-front", daemon=True)
        self.thread.start()

    def count(self, label):
        with self.lock:
            return self.answers[label]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class Gateway:
    """`cinescale gateway` on a fixed port (so it can be stopped and started again), with the product API."""

    def __init__(self, root, config, api_store=None):
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = os.path.join(root, "gateway.yaml")
        with open(self.config, "w") as f:
            json.dump(config, f)
        self.api_store = api_store
        self.proc = None
        self.token = "rgw-event-token"
        # RGW's push-endpoint is a bare URL: the token travels as a query parameter.
        self.events = f"{self.url}/events?token={self.token}"

    def start(self):
        args = [binary("CINESCALE_BIN"), "gateway", "--config", self.config, "--port", str(self.port),
                "--data-dir", os.path.join(self.root, "gw"), "--access-key", ACCESS, "--secret-key", SECRET]
        if self.api_store:
            args += ["--api-store", self.api_store]
        args += ["--event-token", self.token]
        with open(os.path.join(self.root, "gateway.log"), "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"the gateway exited ({self.proc.returncode}):\n{self.log_tail()}")
            return healthy(self.url)
        wait_for("the gateway", up)

    def log_tail(self, lines=20):
        with open(os.path.join(self.root, "gateway.log"), errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def stop(self):
        if self.proc:
            stop_process(self.proc)


def start_rgw(root):
    """RGW on fresh ports; the one-node cluster's start-up fails now and then on this machine (seen: the
    daemons up but RGW never answering), so a failed start is cleaned up and tried again, up to 3 times."""
    for attempt in range(3):
        directory = os.path.join(root, f"attempt-{attempt}")
        os.makedirs(directory)
        try:
            return RGW(directory)
        except RuntimeError as error:
            print(f"RGW start {attempt + 1} failed: {str(error)[:2000]}")
    raise RuntimeError("RGW did not start in 3 attempts")


@pytest.fixture(scope="module")
def rgw():
    with temporary("cinescale-rgw-", start_rgw) as r:
        yield r


def test_the_pipeline_runs_on_rgw(rgw, tmp_path):
    s3 = rgw.client("s3")
    for bucket in ("ingest", "media"):
        s3.create_bucket(Bucket=bucket)
    environment = {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
                   "CINESCALE_S3_ENDPOINT": rgw.endpoint, "MEDIA_BUCKET": "media"}
    gateway = Gateway(str(tmp_path), {
        "functions": {
            "probe": {"command": [binary("CINESCALE_PROBE_BIN")], "timeout": 60, "environment": environment},
            "transcode": {"command": [binary("CINESCALE_TRANSCODE_BIN")], "timeout": 300,
                          "environment": {**environment, "LADDER": "240,360", "X264_PRESET": "ultrafast"}},
        },
        "triggers": [{"function": "probe", "bucket": "ingest", "prefix": "uploads/"},
                     {"function": "transcode", "bucket": "media", "suffix": "/metadata.json"}],
    }, api_store=rgw.endpoint)
    gateway.start()
    try:
        rgw.notify("ingest", "cinescale-ingest", gateway.events, "probe", prefix="uploads/")
        rgw.notify("media", "cinescale-media", gateway.events, "transcode", suffix="/metadata.json")
        # Without the token the webhook is refused.
        refused = urllib.request.Request(gateway.url + "/events", method="POST", data=b'{"Records": []}')
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(refused, timeout=10)
        assert error.value.code == 401
        clip = str(tmp_path / "rgw.mp4")
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=4", "-f", "lavfi", "-i", "sine=duration=4",
               "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", clip)
        key = api_key(os.path.join(gateway.root, "gw", "queue.sqlite"))
        request = urllib.request.Request(gateway.url + "/uploads", method="POST", headers={"Content-Type": "application/json", **bearer(key)},
                                         data=json.dumps({"fileName": "rgw.mp4", "size": os.path.getsize(clip)}).encode())
        ticket = json.loads(urllib.request.urlopen(request, timeout=10).read())
        assert ticket["uploadUrl"].startswith(rgw.endpoint + "/ingest/uploads/")
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", clip, ticket["uploadUrl"]],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout == "200", out  # RGW checked our presigned SigV4 URL

        def ready():
            video = json.loads(urllib.request.urlopen(urllib.request.Request(f"{gateway.url}/videos/{ticket['videoId']}", headers=bearer(key)), timeout=10).read())
            assert video["state"] != "failed", video
            return video if video["state"] == "ready" else None
        video = wait_for("ready on RGW", ready, timeout=180)
        assert [r["name"] for r in video["renditions"]] == ["240p", "360p"]
        url = video["renditions"][1]["url"]
        assert url.startswith(rgw.endpoint + "/media/")
        ranged = urllib.request.Request(url, headers={"Range": "bytes=0-1023"})
        with urllib.request.urlopen(ranged, timeout=10) as response:
            assert response.status == 206 and len(response.read()) == 1024
        # The probe read the RGW event (2.2, ceph:s3) from the gateway's queue.
        metadata = json.loads(s3.get_object(Bucket="media", Key=f"{ticket['videoId']}/metadata.json")["Body"].read())
        assert metadata["source"]["key"] == ticket["source"]["key"]
    finally:
        gateway.stop()


def test_fifty_uploads_while_the_gateway_is_down_are_all_processed(rgw, tmp_path):
    s3 = rgw.client("s3")
    s3.create_bucket(Bucket="outage")
    records = str(tmp_path / "records")
    os.makedirs(records)
    gateway = Gateway(str(tmp_path), {
        "functions": {"rec": {"command": [sys.executable, "-m", "awslambdaric", "recorder.handler"], "timeout": 30,
                              "concurrency": 2,
                              "environment": {"PYTHONPATH": os.path.dirname(os.path.abspath(__file__)),
                                              "RECORD_DIR": records, "FAIL": "0", "SLEEP": "0"}}},
        "triggers": [{"function": "rec", "bucket": "outage"}],
    })
    front = Front(gateway.port)  # see Front: RGW 16 must not be left facing a closed port
    effects = os.path.join(records, "effects")
    clips = [f"clip-{i:02d}.mp4" for i in range(50)]

    def processed():
        """The key of every event the function has run for, once per run (the recorder writes NAME.tmp and
        renames it to NAME.json, one file per invocation)."""
        found = []
        for name in sorted(os.listdir(effects)) if os.path.isdir(effects) else []:
            if name.endswith(".json"):
                with open(os.path.join(effects, name)) as f:
                    found += [r["s3"]["object"]["key"] for r in json.load(f)["event"]["Records"]]
        return found

    def report(expected):
        """What went wrong, for a failure message: which keys never ran (and whether RGW still holds them),
        which ran twice, RGW's push counters, what RGW's pushes were answered, the gateway's last words."""
        done = collections.Counter(processed())
        missing = sorted(set(expected) - set(done))
        queue = rgw.queue("cinescale-outage", r"clip-[0-9]+[.]mp4|warmup")
        if isinstance(queue, dict):
            gone = [k for k in missing if k not in queue["names"]]
            queue = (f"{queue['entries']} entries{' (truncated)' if queue['truncated'] else ''}, holding "
                     + (f"{len(missing) - len(gone)} of the missing; delivered by RGW but never run: {gone}" if gone else
                        "every missing one (RGW has not delivered them)"))
        return (f"{len(missing)} never ran: {missing}; ran more than once: {sorted(k for k, n in done.items() if n > 1)}; "
                f"RGW's queue: {queue}; RGW's counters: {rgw.push_counters()}; answers to RGW's pushes: "
                f"{dict(front.answers)}; the gateway's log ends:\n{gateway.log_tail()}")

    def wait_for_all(what, expected, timeout):
        deadline = time.time() + timeout
        while set(processed()) != set(expected):
            if time.time() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}: {report(expected)}")
            time.sleep(0.1)

    gateway.start()
    try:
        rgw.notify("outage", "cinescale-outage", front.url + f"/events?token={gateway.token}", "all")
        # RGW starts delivering a new persistent topic's queue at its next scan of the queue list, every 30 s
        # (Ceph 16), so 0-31 s after the topic is created (25-31 s measured here); events made before are kept.
        s3.put_object(Bucket="outage", Key="warmup", Body=b"w")
        wait_for_all("the first event", ["warmup"], timeout=90)
        gateway.stop()
        for i, key in enumerate(clips):
            s3.put_object(Bucket="outage", Key=key, Body=b"x" * (100 + i))
        # RGW has tried to deliver them, and failed: nothing ran while the gateway was down.
        wait_for("RGW's first delivery attempt", lambda: front.count("down") > 0, timeout=30)
        assert processed() == ["warmup"]
        refused = front.count("down")
        gateway.start()
        back = time.time()
        try:
            # Measured: all 50 within 1 s of the gateway reporting healthy; the bound is for a starved machine.
            wait_for_all("all 50 after the gateway came back", ["warmup"] + clips, timeout=120)
        finally:
            print(f"{len(set(processed()) & set(clips))} of 50 processed {time.time() - back:.1f} s after the gateway "
                  f"came back; {refused} pushes refused while it was down; answers {dict(front.answers)}")
        time.sleep(2)  # RGW delivers at least once: a late duplicate must not run the function again
        assert sorted(processed()) == sorted(["warmup"] + clips), report(["warmup"] + clips)
        with open(os.path.join(effects, sorted(n for n in os.listdir(effects) if n.endswith(".json"))[0])) as f:
            assert json.load(f)["event"]["Records"][0]["eventSource"] == "ceph:s3"
    finally:
        gateway.stop()
        front.close()
