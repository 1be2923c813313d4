"""scripts/bench-chunked: chunked against whole-video transcoding on `cinescale dev` (release build), in one run.

For a 1080p30 source of DURATION seconds (default 600), each side in turn (chunked, whole, chunked, ... for
RUNS pairs): upload 200 → first playable (the API's master playlist, a media playlist, its init section and
first segment all fetched and the segment decoded by ffprobe) and → ready; CPU-seconds of the whole process
tree and its peak memory (summed RSS); then, from the chunked runs, each chunk's time, the plan and finish
times, and the time to ready predicted for 4, 16 and 64 workers (critical path: probe, plan, the chunks list-
scheduled onto the workers as the gateway queues them, finish). With SECOND=1 a 10 s clip is uploaded 15 s
after the long one and its own upload → playable time is printed (the long video still being chunked).
Quality per rung of the last pair: PSNR against the source (scaled to the rung; the first 130 s of a longer
source, which holds the lead and four chunk boundaries) and the MP4's bit rate, chunked against whole. With
CLUSTER=1, one more chunked run on two gateways sharing a PostgreSQL queue (IntegrationTests/pipeline_cluster.py):
its time to ready and how many chunks each gateway ran.

Usage: bench_chunked.py BIN_DIR [DURATION=600] [RUNS=1] [SECOND=1] [CLUSTER=1]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BIN = sys.argv[1]
DURATION = int(sys.argv[2]) if len(sys.argv) > 2 else 600
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
SECOND = (sys.argv[4] if len(sys.argv) > 4 else "1") == "1"
CLUSTER = (sys.argv[5] if len(sys.argv) > 5 else "1") == "1"
# "opus": the same source remuxed to Matroska with its audio as Opus (what WebM uploads carry), which is not
# carried but encoded to AAC once by the plan.
AUDIO = sys.argv[6] if len(sys.argv) > 6 else "aac"
# pipeline_cluster (the CLUSTER run's processes) lives with the integration tests, which use it too.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "IntegrationTests"))
LADDER = "240,360,720,1080"
TICK = os.sysconf("SC_CLK_TCK")


def get(url, timeout=30, key=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def tree(root):
    """PIDs of root and its descendants."""
    children = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(pid))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_and_rss(root):
    cpu, rss = 0.0, 0
    for pid in tree(root):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICK
            rss += int(open(f"/proc/{pid}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return cpu, rss


class Dev:
    def __init__(self, root, chunk_seconds):
        ready = os.path.join(root, "ready.json")
        self.proc = subprocess.Popen(
            [f"{BIN}/cinescale", "dev", "--data-dir", os.path.join(root, "data"), "--port", "0", "--store-port", "0",
             "--ready-file", ready, "--ladder", LADDER, "--chunk-seconds", str(chunk_seconds), "--log-level", "warning"],
            stdout=open(os.path.join(root, "dev.log"), "wb"), stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not os.path.exists(ready):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("cinescale dev did not start")
            time.sleep(0.1)
        addresses = json.load(open(ready))
        self.api, self.key = addresses["api"], addresses.get("apiKey")
        self.peak = 0
        self.sampling = True
        self.sampler = threading.Thread(target=self.sample, daemon=True)
        self.sampler.start()

    def sample(self):
        while self.sampling:
            self.peak = max(self.peak, cpu_and_rss(self.proc.pid)[1])
            time.sleep(0.25)

    def video(self, video_id):
        return json.loads(get(f"{self.api}/videos/{video_id}", key=self.key))

    def close(self):
        self.sampling = False
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def upload(dev, path):
    """Returns (video id, time of the PUT's 200)."""
    ticket = json.loads(urllib.request.urlopen(urllib.request.Request(
        dev.api + "/uploads", method="POST", headers={"Content-Type": "application/json", "Authorization": f"Bearer {dev.key}"},
        data=json.dumps({"fileName": os.path.basename(path), "size": os.path.getsize(path)}).encode()), timeout=30).read())
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", path, ticket["uploadUrl"]],
                         capture_output=True, text=True, timeout=600)
    assert out.stdout == "200", out
    return ticket["videoId"], time.time()


def playable(dev, video_id, scratch):
    """Whether the master playlist, a media playlist, its init section and first segment can be fetched and
    the segment decodes (ffprobe counts its frames)."""
    try:
        view = dev.video(video_id)
        if not view.get("hls"):
            return False
        master = get(dev.api + view["hls"]).decode()
        uri = next(line for line in master.splitlines() if line and not line.startswith("#"))
        media = get(f"{dev.api}/stream/{video_id}/{uri}").decode()
        init = next(line.split('URI="', 1)[1].split('"', 1)[0] for line in media.splitlines() if line.startswith("#EXT-X-MAP"))
        first = next(line for line in media.splitlines() if line and not line.startswith("#"))
        path = os.path.join(scratch, f"{video_id}-first.mp4")
        with open(path, "wb") as f:
            f.write(get(init))
            f.write(get(first if first.startswith("http") else dev.api + first, timeout=120))
        out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                              "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path],
                             capture_output=True, text=True, timeout=60)
        return out.returncode == 0 and int(out.stdout.strip() or 0) > 0
    except (OSError, StopIteration, ValueError):
        return False


def follow(dev, video_id, uploaded, scratch, result):
    while "playable" not in result:
        if playable(dev, video_id, scratch):
            result["playable"] = time.time() - uploaded
        time.sleep(0.1)
    while True:
        view = dev.video(video_id)
        if view["state"] == "failed":
            raise RuntimeError(f"video failed: {view}")
        if view["state"] == "ready":
            result["ready"] = time.time() - uploaded
            return
        time.sleep(0.2)


def run(source, second, chunked, scratch):
    root = tempfile.mkdtemp(prefix="bench-chunked-")
    dev = Dev(root, 32 if chunked else 0)
    try:
        cpu0, _ = cpu_and_rss(dev.proc.pid)
        video_id, uploaded = upload(dev, source)
        result = {}
        follower = threading.Thread(target=follow, args=(dev, video_id, uploaded, scratch, result))
        follower.start()
        second_result = {}
        if second:
            time.sleep(max(0, uploaded + 15 - time.time()))
            second_id, second_uploaded = upload(dev, second)
            follow_second = threading.Thread(target=follow, args=(dev, second_id, second_uploaded, scratch, second_result))
            follow_second.start()
            follow_second.join()
        follower.join()
        cpu1, _ = cpu_and_rss(dev.proc.pid)
        result["cpu"] = cpu1 - cpu0
        result["peak"] = dev.peak
        result["second"] = second_result
        result["chunks"] = []
        # The renditions, for the quality comparison.
        result["renditions"] = {}
        for rendition in dev.video(video_id)["renditions"]:
            path = os.path.join(scratch, f"{'chunked' if chunked else 'whole'}-{rendition['name']}.mp4")
            urllib.request.urlretrieve(rendition["url"], path)
            result["renditions"][rendition["name"]] = path
        if chunked:
            store = json.load(open(os.path.join(root, "ready.json")))["store"]
            result.update(chunk_figures(dev, store, video_id))
        return result
    finally:
        dev.close()
        subprocess.run(["rm", "-rf", root])


def chunk_figures(dev, store, video_id):
    import boto3
    from botocore.config import Config
    s3 = boto3.client("s3", endpoint_url=store, aws_access_key_id="cinescale", aws_secret_access_key="cinescale-dev-secret",
                      region_name="us-east-1", config=Config(signature_version="s3v4"))
    plan = json.loads(s3.get_object(Bucket="media", Key=f"{video_id}/plan.json")["Body"].read())
    chunks = []
    for chunk in plan["chunks"]:
        record = json.loads(s3.get_object(Bucket="media", Key=f"{video_id}/chunks/{chunk['index']:05d}.json")["Body"].read())
        chunks.append({"index": chunk["index"], "media": (chunk.get("end") or plan["duration"]) - chunk["start"],
                       "seconds": record["seconds"], "encode": record["encodeSeconds"]})
    out = subprocess.run([f"{BIN}/cinescale", "invocations", "list", "--limit", "1000", "--json", "--gateway", dev.api,
                          "--access-key", "cinescale", "--secret-key", "cinescale-dev-secret"],
                         capture_output=True, text=True, timeout=60)
    runs = [i for i in json.loads(out.stdout)["invocations"] if video_id in json.dumps(i.get("event", {}))]
    def duration(function, needle):
        times = [i["durationMs"] / 1000 for i in runs if i["function"] == function and needle in json.dumps(i["event"])
                 and i.get("durationMs")]
        return max(times) if times else 0
    # (Event JSON from Swift escapes "/" as "\\/": the needles have none.)
    audio = None
    if plan.get("encodedAudio"):
        audio = json.loads(s3.get_object(Bucket="media", Key=f"{video_id}/audio/audio.json")["Body"].read())
    return {"chunks": chunks, "probe": duration("probe", "uploads"), "plan": duration("transcode", "metadata.json"),
            "finish": duration("transcode", "finish.json"), "audio": audio}


def predict(figures, workers):
    """Time to ready on `workers` bulk workers (each as fast as this machine's whole) plus the lead's own."""
    chunks = figures["chunks"]
    lead, bulk = chunks[0]["seconds"], [c["seconds"] for c in chunks[1:]]
    free = [0.0] * workers
    for seconds in bulk:  # queued earliest first; each goes to the first worker free
        i = free.index(min(free))
        free[i] += seconds
    return figures["probe"] + figures["plan"] + max([lead] + free) + figures["finish"]


def psnr(path, source, seconds):
    """PSNR (dB) of path's video against the source scaled to its size, over the first `seconds`."""
    size = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                           "-of", "csv=p=0", path], capture_output=True, text=True, check=True).stdout.strip()
    width, height = size.split(",")
    out = subprocess.run(["ffmpeg", "-v", "error", "-t", str(seconds), "-i", path, "-t", str(seconds), "-i", source,
                          "-lavfi", f"[1:v]scale={width}:{height}:flags=bicubic[ref];[0:v][ref]psnr=stats_file=-",
                          "-f", "null", "-"], capture_output=True, text=True, check=True)
    mses = [float(field[8:]) for line in out.stdout.splitlines() for field in line.split() if field.startswith("mse_avg:")]
    import math
    return 10 * math.log10(255 * 255 / (sum(mses) / len(mses)))


def cluster_run(source):
    """One chunked run on two gateways sharing a PostgreSQL queue: (seconds to ready, chunks per gateway)."""
    from pipeline_cluster import Cluster
    work = tempfile.mkdtemp(prefix="bench-chunked-cluster-")
    cluster = Cluster(BIN, work, gateways=2, queue="postgres", ladder=LADDER, transcoders=1, lease=10, chunk_seconds=32)
    try:
        s3 = cluster.s3()
        s3.upload_file(source, "ingest", "uploads/cluster.mp4")
        uploaded = time.time()
        pids = {str(g.pid): n for n, g in enumerate(cluster.gateways)}
        seen = {}  # invocation id → the gateway seen holding its lease
        while True:
            for invocation, owner in cluster.postgres.sql(
                    "SELECT id, lease_owner FROM cinescale_invocation WHERE function = 'transcode-chunk' AND state = 'running'"):
                for pid, n in pids.items():
                    if f"/{pid}/" in owner:
                        seen[invocation] = n
            status = cluster.status(s3, "cluster")
            if status and status["state"] == "failed":
                raise RuntimeError(f"video failed: {status}")
            if status and status["state"] == "ready":
                ready = time.time() - uploaded
                break
            time.sleep(0.2)
        chunks = int(cluster.postgres.sql(
            "SELECT COUNT(*) FROM cinescale_invocation WHERE function = 'transcode-chunk' AND state = 'succeeded'")[0][0])
        return ready, [sum(1 for n in seen.values() if n == g) for g in range(2)], chunks
    finally:
        cluster.close()
        subprocess.run(["rm", "-rf", work])


def main():
    scratch = tempfile.mkdtemp(prefix="bench-chunked-")
    # Sources are kept between runs (making 10 minutes of 1080p takes longer than encoding it).
    cache = os.path.join(tempfile.gettempdir(), "cinescale-bench-chunked")
    os.makedirs(cache, exist_ok=True)
    source = os.path.join(cache, f"source-{DURATION}.mp4")
    second = os.path.join(cache, "second.mp4") if SECOND else None
    if not os.path.exists(source):
        print(f"making a {DURATION} s 1080p30 source (libx264, AAC, faststart)", flush=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={DURATION}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={DURATION}",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-g", "60", "-c:a", "aac", "-shortest",
                    "-movflags", "+faststart", source + ".part.mp4"], check=True)
        os.rename(source + ".part.mp4", source)
    if AUDIO == "opus":
        opus = os.path.join(cache, f"source-{DURATION}-opus.mkv")
        if not os.path.exists(opus):
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", source, "-map", "0:v", "-map", "0:a", "-c:v", "copy",
                            "-c:a", "libopus", "-b:a", "128k", opus + ".part.mkv"], check=True)
            os.rename(opus + ".part.mkv", opus)
        source = opus
    if second and not os.path.exists(second):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=10",
                        "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000:duration=10",
                        "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-c:a", "aac", "-shortest",
                        "-movflags", "+faststart", second], check=True)
    pairs = []
    for run_index in range(RUNS):
        order = [True, False] if run_index % 2 == 0 else [False, True]
        results = {}
        for chunked in order:
            label = "chunked" if chunked else "whole"
            print(f"run {run_index + 1}/{RUNS}: {label} ...", flush=True)
            results[label] = run(source, second, chunked, scratch)
            r = results[label]
            print(f"  {label}: playable {r['playable']:.2f} s, ready {r['ready']:.1f} s, CPU {r['cpu']:.1f} s, "
                  f"peak {r['peak'] / 2**20:.0f} MiB" + (f"; second video playable {r['second']['playable']:.2f} s, "
                                                         f"ready {r['second']['ready']:.1f} s" if r["second"] else ""),
                  flush=True)
        pairs.append(results)

    def median(label, key, f=lambda v: v):
        return statistics.median(f(p[label][key]) for p in pairs)

    print(f"\n== {DURATION} s 1080p30 ({AUDIO} audio) → {LADDER}, {RUNS} pair(s), medians ==")
    for key, unit in (("playable", "s"), ("ready", "s"), ("cpu", "CPU-s")):
        c, w = median("chunked", key), median("whole", key)
        print(f"upload 200 → {key:8}: chunked {c:8.2f} {unit}  whole {w:8.2f} {unit}  ratio {c / w:5.3f}")
    ratios = [p["chunked"]["ready"] / p["whole"]["ready"] for p in pairs]
    print(f"ready ratio, median of pairs: {statistics.median(ratios):.3f}")
    c, w = median("chunked", "peak") / 2**20, median("whole", "peak") / 2**20
    print(f"peak memory (summed RSS): chunked {c:.0f} MiB  whole {w:.0f} MiB  ratio {c / w:.3f}")
    if SECOND:
        print(f"second video (10 s, uploaded 15 s after): playable chunked {median('chunked', 'second', lambda s: s['playable']):.2f} s"
              f", whole {median('whole', 'second', lambda s: s['playable']):.2f} s")
    figures = pairs[-1]["chunked"]
    print(f"\nchunks of the last chunked run: probe {figures['probe']:.2f} s, plan {figures['plan']:.2f} s, "
          f"finish {figures['finish']:.2f} s")
    if figures.get("audio"):
        audio = figures["audio"]
        print(f"  the plan's audio encoded once: {audio['duration']:.1f} s of AAC ({audio['packets']} packets, "
              f"{audio['size'] / 2**20:.1f} MiB) in {audio['seconds']:.2f} s, the upload read whole")
    for chunk in figures["chunks"]:
        print(f"  chunk {chunk['index']:3d}: {chunk['media']:6.1f} s of video in {chunk['seconds']:6.2f} s "
              f"(encode {chunk['encode']:6.2f} s, {chunk['media'] / max(chunk['seconds'], 1e-3):.2f}× realtime)")
    # The bulk chunks' rate (the lead's 2 s are mostly fixed cost: opening the encoders, the first GOP).
    longest = max(c["seconds"] / c["media"] for c in (figures["chunks"][1:] or figures["chunks"]))
    print(f"slowest bulk chunk: {longest:.3f} s per second of video → a 32 s chunk takes {longest * 32:.0f} s "
          f"(Lambda's limit: 900 s)")
    for workers in (4, 16, 64):
        print(f"predicted time to ready on {workers:2d} workers: {predict(figures, workers):7.1f} s")
    aws = aws_chunk_seconds()
    print(f"on the AWS template's settings ({aws} s chunks): a chunk takes {longest * aws:.0f} s at this machine's "
          f"speed (2 cores; a 10240 MB Lambda has 6 vCPUs), whatever the source's length (a 30-minute source is "
          f"{1800 / aws:.0f} such chunks)")

    # Quality per rung, the last pair: chunked against whole.
    seconds = min(DURATION, 130)
    print(f"\nquality per rung (PSNR against the source over the first {seconds} s; MP4 bit rate over the whole):")
    last = pairs[-1]
    for name, chunked_path in last["chunked"]["renditions"].items():
        whole_path = last["whole"]["renditions"][name]
        c, w = psnr(chunked_path, source, seconds), psnr(whole_path, source, seconds)
        cb, wb = (os.path.getsize(p) * 8 / DURATION / 1000 for p in (chunked_path, whole_path))
        print(f"  {name:>5}: PSNR chunked {c:6.3f} dB  whole {w:6.3f} dB  Δ {c - w:+.3f} dB; "
              f"bit rate chunked {cb:7.0f} kb/s  whole {wb:7.0f} kb/s  ratio {cb / wb:.4f}")

    if CLUSTER:
        print("\ntwo gateways on one PostgreSQL queue (one chunk worker each), chunked ...", flush=True)
        ready, per_gateway, chunks = cluster_run(source)
        print(f"  upload → ready {ready:.1f} s; {chunks} chunk invocations, seen running on gateway 0: "
              f"{per_gateway[0]}, gateway 1: {per_gateway[1]}")


def aws_chunk_seconds():
    """ChunkSeconds' default in infra/aws/template.yaml (32, dev's, if the template has none)."""
    import re
    text = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "infra", "aws", "template.yaml")).read()
    found = re.search(r"\n  ChunkSeconds:\n(?:    .*\n)*?    Default: (\d+)", text)
    return int(found.group(1)) if found else 32


if __name__ == "__main__":
    main()
