"""The pipeline beyond one gateway, on one machine: an embedded store (`cinescale store`) sending every bucket
event to each gateway's webhook, and N `cinescale gateway` processes running probe and transcode workers and
sharing one invocation queue: PostgreSQL (a throwaway cluster from scripts/postgres-throwaway) or, with one
gateway, SQLite. Each gateway gets every event; the shared queue's dedupe makes one invocation of each.

Used by test_shared_queue.py and test_poll_source.py here, and by Benchmarks/bench_shared_queue.py and
Benchmarks/bench_chunked.py. Everything binds 127.0.0.1."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ACCESS, SECRET = "AKIDCLUSTER", "cluster/secret+key"
TOKEN = "cluster-event-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, condition, timeout=60, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def healthy(url):
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Postgres:
    """A throwaway cluster; stopped by `close()`, or by itself once this Python process is gone."""

    def __init__(self, work):
        self.dir = os.path.join(work, "postgres")
        out = subprocess.run([os.path.join(ROOT, "scripts", "postgres-throwaway"), "start", self.dir, str(free_port()),
                              str(os.getpid())], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {out.stdout}{out.stderr}")
        self.url = out.stdout.strip()

    def sql(self, statement):
        out = subprocess.run(["psql", "-X", "-A", "-t", "-F", "\t", self.url.split("?")[0], "-c", statement],
                             capture_output=True, text=True, timeout=60, check=True)
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def close(self):
        subprocess.run([os.path.join(ROOT, "scripts", "postgres-throwaway"), "stop", self.dir], timeout=60)


class Process:
    def __init__(self, args, log):
        # A session of its own: killing the group also takes the gateway's workers.
        self.proc = subprocess.Popen(args, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def kill_hard(self):
        """kill -9 of this process only (its workers are orphaned, as when a gateway's host dies)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # orphaned workers, if any
        except ProcessLookupError:
            pass


class Cluster:
    def __init__(self, bin_dir, work, gateways=2, queue="postgres", ladder="240", transcoders=1, lease=3,
                 chunk_seconds=0, preset="veryfast", api=False):
        """`chunk_seconds` > 0: chunked transcoding wired as `cinescale dev` does it (plan and finish on
        transcode, each video's first chunk on transcode-lead, the rest on transcode-chunk). `api`: every
        gateway also serves the product API over the store (its keys beside the shared queue)."""
        self.bin_dir, self.work, self.api = bin_dir, work, api
        self.processes = []
        self.postgres = Postgres(work) if queue == "postgres" else None
        self.gateway_ports = [free_port() for _ in range(gateways)]
        self.store_port = free_port()
        self.store = f"http://127.0.0.1:{self.store_port}"
        targets = []
        for n, port in enumerate(self.gateway_ports):
            targets += ["--notify-webhook", f"gw{n}=http://127.0.0.1:{port}/events"]
        self.store_proc = self._start([self._bin("cinescale"), "store", "--data-dir", os.path.join(work, "store"),
                                       "--port", str(self.store_port), "--access-key", ACCESS, "--secret-key", SECRET,
                                       "--create-buckets", "ingest,media", "--notify-token", TOKEN,
                                       "--log-level", "warning", *targets], "store.log")
        wait_until("the store", lambda: healthy(self.store), timeout=60)
        triggers = [("probe", "ingest", "prefix", "uploads/"), ("transcode", "media", "suffix", "/metadata.json")]
        if chunk_seconds:
            triggers += [("transcode-lead", "media", "suffix", ".lead.json"),
                         ("transcode-chunk", "media", "suffix", ".chunk.json"),
                         ("transcode", "media", "suffix", "/jobs/finish.json")]
        for bucket in ("ingest", "media"):
            self.put_notification(bucket, [
                {"Id": f"{function}-{index}-gw{n}", "QueueArn": f"arn:minio:sqs::gw{n}:webhook",
                 "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": kind, "Value": value}]}}}
                for index, (function, b, kind, value) in enumerate(triggers) if b == bucket for n in range(gateways)])
        environment = {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
                       "CINESCALE_S3_ENDPOINT": self.store, "MEDIA_BUCKET": "media"}
        transcode_environment = {**environment, "LADDER": ladder, "X264_PRESET": preset}
        functions = {
            "probe": {"command": [self._bin("probe")], "timeout": 60, "environment": environment},
            "transcode": {"command": [self._bin("transcode")], "timeout": 900, "concurrency": transcoders,
                          "environment": transcode_environment},
        }
        if chunk_seconds:
            # Each video keeps one chunk per chunk worker of every gateway queued (and one more).
            transcode_environment.update({"CHUNK_SECONDS": str(chunk_seconds),
                                          "CHUNK_WINDOW": str(gateways * transcoders + 1)})
            functions["transcode"]["concurrency"] = max(2, transcoders)
            functions["transcode-lead"] = {"command": [self._bin("transcode")], "timeout": 900, "concurrency": 1,
                                           "environment": transcode_environment, "retry": {"maxAttempts": 3}}
            functions["transcode-chunk"] = {"command": [self._bin("transcode")], "timeout": 900,
                                            "concurrency": transcoders, "environment": transcode_environment,
                                            "retry": {"maxAttempts": 3}, "nice": 19, "idle": True}
        config = {
            "functions": functions,
            "triggers": [{"function": function, "bucket": bucket, kind: value} for function, bucket, kind, value in triggers],
            "queue": {"postgres": self.postgres.url, "lease": lease} if self.postgres else {},
        }
        if not self.postgres:
            del config["queue"]
        self.config = os.path.join(work, "gateway.json")
        with open(self.config, "w") as f:
            json.dump(config, f)
        self.gateways = [self.start_gateway(n) for n in range(gateways)]

    def _bin(self, name):
        return os.path.join(self.bin_dir, name)

    def _start(self, args, log):
        process = Process(args, os.path.join(self.work, log))
        self.processes.append(process)
        return process

    def start_gateway(self, n):
        port = self.gateway_ports[n]
        process = self._start([self._bin("cinescale"), "gateway", "--config", self.config, "--port", str(port),
                               "--data-dir", os.path.join(self.work, f"gw{n}"), "--access-key", ACCESS,
                               "--secret-key", SECRET, "--event-token", TOKEN, "--log-level", "warning",
                               *(["--api-store", self.store] if self.api else [])],
                              f"gateway{n}.log")
        wait_until(f"gateway {n}", lambda: healthy(f"http://127.0.0.1:{port}"), timeout=60)
        return process

    def s3(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.store, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
                            region_name="us-east-1", config=Config(signature_version="s3v4"))

    def put_notification(self, bucket, queues):
        self.s3().put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queues})

    def status(self, s3, video):
        try:
            return json.loads(s3.get_object(Bucket="media", Key=f"{video}/status.json")["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None

    def close(self):
        for process in reversed(self.processes):
            process.stop()
        if self.postgres:
            self.postgres.close()
