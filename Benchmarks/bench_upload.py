#!/usr/bin/env python3
"""Upload throughput through the API on `cinescale dev`: a resumable upload (presigned UploadPart URLs, three
parts in flight, then complete) against one presigned PUT of the same file, alternated (the order swapped
every pair) so that both see the same machine. Prints the medians of the pairs: MB/s of each, and the ratio
resumable / single (parts alone, and parts + complete). Both PUT from the file in 1 MiB writes with
http.client (IntegrationTests/resumable_client.py), so the client is the same for both.

Usage: bench_upload.py BIN_DIR [SIZE_MB=512] [PAIRS=5] [PART_MIB=8 (the API's --resumable-part-size)]"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "IntegrationTests"))
from resumable_client import call, put_part  # noqa: E402


def single(api, key, path, size):
    ticket = call(api, key, "POST", "/uploads", {"fileName": "bench.mp4", "size": size, "resumable": False})
    started = time.monotonic()
    put_part(ticket["uploadUrl"], path, 0, size)
    return ticket["videoId"], time.monotonic() - started, None


def resumable(api, key, path, size, parallel=3):
    session = call(api, key, "POST", "/uploads", {"fileName": "bench.mp4", "size": size, "resumable": True})
    started = time.monotonic()
    sid, part_size = session["sessionId"], session["partSize"]
    urls = {p["partNumber"]: p for p in session["parts"]}
    missing = [n for n in range(1, session["partCount"] + 1) if n not in urls]
    for start in range(0, len(missing), 1000):
        batch = call(api, key, "POST", f"/uploads/{sid}/parts", {"partNumbers": missing[start:start + 1000]})
        urls.update({p["partNumber"]: p for p in batch["parts"]})
    queue = list(range(1, session["partCount"] + 1))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                number = queue.pop(0)
            put_part(urls[number]["url"], path, (number - 1) * part_size, urls[number]["size"])

    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parts_done = time.monotonic() - started
    call(api, key, "POST", f"/uploads/{sid}/complete")
    return session["videoId"], parts_done, time.monotonic() - started


def settle(api, key, video_id):
    """Waits until the probe has looked at the upload (random bytes: it fails), then deletes the video, so
    the next upload meets an idle machine and the disk does not fill."""
    for _ in range(600):
        if call(api, key, "GET", f"/videos/{video_id}")["state"] in ("failed", "ready"):
            break
        time.sleep(0.1)
    call(api, key, "DELETE", f"/videos/{video_id}")


def main():
    bin_dir = sys.argv[1]
    size_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    part_mib = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    work = tempfile.mkdtemp(prefix="cinescale-bench-upload-")
    dev = None
    try:
        path = os.path.join(work, "bench.bin")
        size = size_mb * 1_000_000
        with open(path, "wb") as f:
            for _ in range(size_mb):
                f.write(os.urandom(1_000_000))
        ready_file = os.path.join(work, "ready.json")
        dev = subprocess.Popen([os.path.join(bin_dir, "cinescale"), "dev", "--data-dir", os.path.join(work, "data"),
                                "--port", "0", "--store-port", "0", "--ready-file", ready_file, "--log-level", "warning",
                                "--api-rate-limit", "0", "--resumable-part-size", str(part_mib << 20)],
                               stdout=open(os.path.join(work, "dev.log"), "wb"), stderr=subprocess.STDOUT)
        for _ in range(600):
            if os.path.exists(ready_file):
                break
            if dev.poll() is not None:
                sys.exit("cinescale dev exited:\n" + open(os.path.join(work, "dev.log")).read())
            time.sleep(0.1)
        addresses = json.load(open(ready_file))
        api, key = addresses["api"], addresses["apiKey"]
        part_size = call(api, key, "POST", "/uploads", {"size": size, "resumable": True})["partSize"]
        print(f"{size_mb} MB of random bytes, {pairs} pairs; resumable: parts of {part_size >> 20} MiB, 3 in flight")
        rows = []
        for index in range(pairs):
            order = (single, resumable) if index % 2 == 0 else (resumable, single)
            times = {}
            for upload in order:
                video_id, first, second = upload(api, key, path, size)
                times[upload.__name__] = (first, second)
                settle(api, key, video_id)
            one, (parts, whole) = times["single"][0], times["resumable"]
            rows.append((size / one / 1e6, size / parts / 1e6, size / whole / 1e6, one / parts, one / whole))
            print(f"  pair {index + 1}: single PUT {rows[-1][0]:.0f} MB/s, resumable parts {rows[-1][1]:.0f} MB/s "
                  f"(+ complete {rows[-1][2]:.0f} MB/s)", flush=True)
        median = [statistics.median(column) for column in zip(*rows)]
        print(f"median of {pairs} pairs: single PUT {median[0]:.0f} MB/s; resumable {median[1]:.0f} MB/s for the parts, "
              f"{median[2]:.0f} MB/s with complete; ratio resumable/single {median[3]:.2f}× (parts), {median[4]:.2f}× (with complete)")
    finally:
        if dev:
            dev.terminate()
            dev.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
