#!/usr/bin/env python3
"""Pipeline throughput with the invocation queue beyond one gateway: N short clips uploaded at once to the
embedded store, processed (probe → transcode to 240p/360p, MP4 + HLS) by

  sqlite      one gateway, its own SQLite queue (the single-machine baseline)
  postgres×1  one gateway on a PostgreSQL queue
  postgres×2  two gateways sharing one PostgreSQL queue (every event sent to both, deduplicated)

each gateway with one probe and TRANSCODERS transcode workers, all on this machine (so two gateways compete
for the same cores: the ratio measures the queue's overhead and the sharing, not added hardware). Prints
videos per minute from the first upload to the last transcode, and ratios against the SQLite baseline.

Usage: bench_shared_queue.py BIN_DIR [VIDEOS=40] [TRANSCODERS=1]"""
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time

# pipeline_cluster lives with the integration tests, which use it too.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "IntegrationTests"))
from pipeline_cluster import Cluster, wait_until  # noqa: E402


def run(bin_dir, data, videos, queue, gateways, transcoders):
    work = tempfile.mkdtemp(prefix="cinescale-bench-shared-")
    cluster = None
    try:
        cluster = Cluster(bin_dir, work, gateways=gateways, queue=queue, ladder="240,360", transcoders=transcoders)
        s3 = cluster.s3()
        names = [f"b{n:04d}" for n in range(videos)]
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda v: s3.put_object(Bucket="ingest", Key=f"uploads/{v}.mp4", Body=data), names))

        ready = set()

        def all_ready():
            for v in names:
                if v not in ready and (cluster.status(s3, v) or {}).get("state") == "ready":
                    ready.add(v)
            return len(ready) == len(names)

        wait_until("every video ready", all_ready, timeout=1800, interval=0.5)
        elapsed = time.monotonic() - started
        return videos / elapsed * 60, elapsed
    finally:
        if cluster:
            cluster.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    bin_dir = sys.argv[1]
    videos = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    transcoders = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    work = tempfile.mkdtemp(prefix="cinescale-bench-clip-")
    try:
        clip = os.path.join(work, "clip.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=3",
                        "-f", "lavfi", "-i", "sine=duration=3", "-c:v", "libx264", "-preset", "veryfast",
                        "-c:a", "aac", "-shortest", clip], check=True)
        data = open(clip, "rb").read()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{videos} clips of 3 s 640x360 → 240p/360p (MP4 + HLS); per gateway 1 probe + {transcoders} transcode "
          f"worker(s); {os.cpu_count()} cores")
    results = {}
    for label, queue, gateways in (("sqlite", "sqlite", 1), ("postgres×1", "postgres", 1), ("postgres×2", "postgres", 2)):
        rate, elapsed = run(bin_dir, data, videos, queue, gateways, transcoders)
        results[label] = rate
        print(f"  {label:<11} {rate:6.1f} videos/min ({elapsed:.1f} s)   ratio to sqlite {rate / results['sqlite']:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
