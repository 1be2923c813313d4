#!/usr/bin/env python3
"""MediaKit's transcode and probe next to the ffmpeg CLI's, on this machine, in one run.

Transcode: the same 20-second 1080p30 source (H.264 + AAC) to the same ladder (240p/360p/720p) with the same
settings (libx264 preset, CRF 23 with each rung's maxrate/bufsize, a keyframe every 4 s and no scene-cut
keyframes, 2 B-frames, bicubic scaling, AAC copied), writing the same outputs (a faststart MP4 and an fMP4 HLS
rendition per rung), through `transcode-bench` (MediaKit) and through one `ffmpeg` process with a split filter.
The two run back to back, in alternating order, RUNS times; prints the median wall time and peak memory
(wait4's ru_maxrss) of each, the wall-time ratio as the median of the per-pair ratios (this machine's speed
drifts by ±15 % from minute to minute; a pair shares the drift), and each rung's PSNR against the source
scaled to the rung (ffmpeg's psnr filter) for both.

Probe: MediaKit's probe over ranged GETs of a presigned URL from the embedded store, next to `ffprobe` on the
same URL (process start to exit, median).

Usage: bench_transcode.py BIN_DIR [RUNS=7]"""
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

LADDER = [(240, 426, 400_000), (360, 640, 800_000), (720, 1280, 2_800_000)]  # height, width, maxrate
PRESET = "veryfast"
KEYFRAME_SECONDS = 4
FPS = 30


def measured(cmd, log):
    """Runs cmd; returns (wall seconds, peak RSS in MiB, CPU seconds)."""
    with open(log, "wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}); see {log}:\n" + open(log, errors="replace").read()[-2000:])
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def ffmpeg_cli_command(source, out):
    gop = KEYFRAME_SECONDS * FPS
    split = f"[0:v]split={len(LADDER)}" + "".join(f"[s{h}]" for h, _, _ in LADDER) + ";" + ";".join(
        f"[s{h}]scale={w}:{h}:flags=bicubic[v{h}]" for h, w, _ in LADDER)
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", source, "-filter_complex", split]
    for h, w, rate in LADDER:
        os.makedirs(f"{out}/hls/{h}p", exist_ok=True)
        tee = (f"[f=mp4:movflags=+faststart]{out}/{h}p.mp4|"
               f"[f=hls:hls_time={KEYFRAME_SECONDS}:hls_segment_type=fmp4:hls_playlist_type=vod:"
               f"hls_flags=independent_segments:hls_fmp4_init_filename=init.mp4:"
               f"hls_segment_filename={out}/hls/{h}p/seg-%05d.m4s]{out}/hls/{h}p/index.m3u8")
        cmd += ["-map", f"[v{h}]", "-map", "0:a", "-c:v", "libx264", "-preset", PRESET, "-crf", "23",
                "-maxrate", str(rate), "-bufsize", str(rate * 2), "-g", str(gop), "-keyint_min", str(gop),
                "-bf", "2", "-x264-params", "scenecut=0:open-gop=0", "-pix_fmt", "yuv420p", "-sar", "1",
                "-flags:v", "+global_header", "-c:a", "copy", "-f", "tee", tee]
    return cmd


def psnr(rendition, source, width, height):
    out = subprocess.run(
        ["ffmpeg", "-v", "info", "-nostats", "-i", rendition, "-i", source, "-lavfi",
         f"[1:v]scale={width}:{height}:flags=bicubic[ref];[0:v][ref]psnr", "-f", "null", "-"],
        capture_output=True, text=True, check=True)
    match = re.search(r"PSNR .*average:([0-9.]+|inf)", out.stderr)
    return float(match.group(1))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe_bench(bin_dir, work, source, runs):
    port = free_port()
    env = {**os.environ, "CINESCALE_ACCESS_KEY": "benchkey", "CINESCALE_SECRET_KEY": "bench-secret"}
    store = subprocess.Popen(
        [f"{bin_dir}/cinescale", "store", "--data-dir", f"{work}/store", "--port", str(port), "--create-buckets", "bench",
         "--log-level", "warning"], env=env)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)

        def presign(method):
            return subprocess.run([f"{bin_dir}/cinescale", "presign", "s3://bench/source.mp4", "--method", method,
                                   "--endpoint", endpoint], env=env, capture_output=True, text=True,
                                  check=True).stdout.strip()

        size = os.path.getsize(source)
        with open(source, "rb") as body:
            request = urllib.request.Request(presign("PUT"), data=body, method="PUT",
                                             headers={"Content-Length": str(size)})
            urllib.request.urlopen(request, timeout=60)
        url = presign("GET")
        ours, theirs, reads = [], [], None
        for _ in range(runs):
            wall, _, _ = measured(["ffprobe", "-v", "error", "-show_format", "-show_streams", url], f"{work}/ffprobe.log")
            theirs.append(wall)
            wall, _, _ = measured([f"{bin_dir}/transcode-bench", "probe", url, str(size)], f"{work}/probe.log")
            ours.append(wall)
            reads = json.loads(open(f"{work}/probe.log").read().strip().splitlines()[-1])
        return statistics.median(ours), statistics.median(theirs), reads, size
    finally:
        store.terminate()
        store.wait()


def main():
    bin_dir = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    work = tempfile.mkdtemp(prefix="cinescale-bench-transcode-")
    try:
        source = f"{work}/source.mp4"
        print(f"making the source: 20 s of 1920x1080 at {FPS} fps with stereo AAC")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate={FPS}:duration=20",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=20", "-vf", "noise=alls=3:allf=t",
             "-c:v", "libx264", "-preset", "veryfast", "-crf", "21", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2",
             "-b:a", "128k", "-movflags", "+faststart", source], check=True)
        ladder = ",".join(str(h) for h, _, _ in LADDER)
        results = {"mediakit": [], "ffmpeg": []}
        for run in range(runs):
            # Back to back, in alternating order, so that drift in this machine's speed (it is shared) falls on
            # both sides of each pair.
            for name in (("mediakit", "ffmpeg") if run % 2 == 0 else ("ffmpeg", "mediakit")):
                out = f"{work}/{name}"
                shutil.rmtree(out, ignore_errors=True)
                os.makedirs(out)
                if name == "mediakit":
                    cmd = [f"{bin_dir}/transcode-bench", "transcode", source, out, ladder, PRESET, str(KEYFRAME_SECONDS)]
                else:
                    cmd = ffmpeg_cli_command(source, out)
                wall, rss, cpu = measured(cmd, f"{work}/{name}.log")
                results[name].append((wall, rss, cpu))
                print(f"  run {run + 1} {name:8}: {wall:6.2f} s wall, {cpu:6.2f} s CPU ({cpu / wall:.2f} cores), "
                      f"peak {rss:6.1f} MiB")
        med = {name: tuple(statistics.median(r[i] for r in rs) for i in range(3)) for name, rs in results.items()}
        print()
        print(f"transcode 1080p30 20 s -> {ladder} ({PRESET}, CRF 23, GOP {KEYFRAME_SECONDS} s), median of {runs}:")
        for name in ("mediakit", "ffmpeg"):
            wall, rss, cpu = med[name]
            print(f"  {name:8}: {wall:6.2f} s wall, {cpu / wall:.2f} cores busy, peak memory {rss:6.1f} MiB")
        pairs = sorted(m[0] / f[0] for m, f in zip(results["mediakit"], results["ffmpeg"]))
        cpu_pairs = sorted(m[2] / f[2] for m, f in zip(results["mediakit"], results["ffmpeg"]))
        print(f"  wall-time ratio MediaKit/ffmpeg: {statistics.median(pairs):.3f}  (target <= 0.9; median of the "
              f"{runs} back-to-back pairs, range {pairs[0]:.3f}-{pairs[-1]:.3f}; ratio of the medians "
              f"{med['mediakit'][0] / med['ffmpeg'][0]:.3f})")
        print(f"  CPU-time ratio MediaKit/ffmpeg:  {statistics.median(cpu_pairs):.3f}  (median of the pairs)")
        print(f"  peak-memory ratio MediaKit/ffmpeg: {med['mediakit'][1] / med['ffmpeg'][1]:.3f}  (target <= 1.0)")
        print("  quality (PSNR against the source scaled to the rung, dB):")
        for h, w, _ in LADDER:
            ours = psnr(f"{work}/mediakit/{h}p.mp4", source, w, h)
            theirs = psnr(f"{work}/ffmpeg/{h}p.mp4", source, w, h)
            ours_size = os.path.getsize(f"{work}/mediakit/{h}p.mp4")
            theirs_size = os.path.getsize(f"{work}/ffmpeg/{h}p.mp4")
            print(f"    {h}p: MediaKit {ours:.2f} ({ours_size / 1e6:.2f} MB), ffmpeg {theirs:.2f} "
                  f"({theirs_size / 1e6:.2f} MB), difference {ours - theirs:+.2f} dB  (target within 0.2)")
        ours, theirs, reads, size = probe_bench(bin_dir, work, source, max(runs, 5))
        print()
        print(f"probe of the same file ({size / 1e6:.1f} MB) on a presigned URL of the embedded store, median:")
        print(f"  MediaKit probe: {ours * 1000:.0f} ms ({reads['requests']} ranged GETs, {reads['bytes']} bytes)")
        print(f"  ffprobe:        {theirs * 1000:.0f} ms")
        print(f"  ratio MediaKit/ffprobe: {ours / theirs:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
