#!/usr/bin/env python3
"""Pipeline throughput on one machine: `cinescale dev` (store, SQLite queue, probe and transcode workers,
API) processing N short clips uploaded through presigned PUTs, all at once. Prints videos per minute from the
first upload to the last `ready`, and the upload → ready latency (p50/p95).

This is the single-gateway SQLite baseline that the multi-gateway PostgreSQL queue will be measured
against (as ratios) once it exists.

Usage: bench_pipeline.py BIN_DIR [VIDEOS=40] [TRANSCODERS=2]"""
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


KEY = {}


def call(method, url, body=None):
    headers = {"Authorization": f"Bearer {KEY['token']}"}
    if body:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None,
                                     headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def main():
    bin_dir = sys.argv[1]
    videos = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    transcoders = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    work = tempfile.mkdtemp(prefix="cinescale-bench-pipeline-")
    dev = None
    try:
        clip = os.path.join(work, "clip.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=3",
                        "-f", "lavfi", "-i", "sine=duration=3", "-c:v", "libx264", "-preset", "veryfast",
                        "-c:a", "aac", "-shortest", clip], check=True)
        data = open(clip, "rb").read()
        ready_file = os.path.join(work, "ready.json")
        dev = subprocess.Popen([os.path.join(bin_dir, "cinescale"), "dev", "--data-dir", os.path.join(work, "data"),
                                "--port", "0", "--store-port", "0", "--ready-file", ready_file, "--ladder", "240,360",
                                "--transcoders", str(transcoders), "--log-level", "warning"],
                               stdout=open(os.path.join(work, "dev.log"), "wb"), stderr=subprocess.STDOUT)
        for _ in range(600):
            if os.path.exists(ready_file):
                break
            time.sleep(0.1)
        addresses = json.load(open(ready_file))
        api, KEY["token"] = addresses["api"], addresses["apiKey"]
        print(f"{videos} clips of 3 s 640x360 → 240p/360p (MP4 + HLS), {transcoders} transcode workers, SQLite queue")

        started = time.monotonic()
        uploaded = {}

        def upload(_):
            ticket = call("POST", api + "/uploads", {"fileName": "clip.mp4", "size": len(data)})
            request = urllib.request.Request(ticket["uploadUrl"], data=data, method="PUT")
            urllib.request.urlopen(request, timeout=60).read()
            return ticket["videoId"], time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for video_id, at in pool.map(upload, range(videos)):
                uploaded[video_id] = at
        latencies = {}
        while len(latencies) < videos:
            for video_id in uploaded.keys() - latencies.keys():
                video = call("GET", f"{api}/videos/{video_id}")
                if video["state"] == "failed":
                    sys.exit(f"video {video_id} failed: {video['error']}")
                if video["state"] == "ready":
                    latencies[video_id] = time.monotonic() - uploaded[video_id]
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        ordered = sorted(latencies.values())
        print(f"  {videos / elapsed * 60:.1f} videos/minute ({elapsed:.1f} s for all)")
        print(f"  upload → ready: p50 {statistics.median(ordered):.1f} s, p95 {ordered[int(0.95 * (len(ordered) - 1))]:.1f} s")
    finally:
        if dev:
            dev.terminate()
            dev.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
