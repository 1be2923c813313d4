"""The probe function end to end: an upload to the embedded store triggers `probe` (a real function process
behind the gateway), which reads the object with ranged GETs and writes metadata.json — compared with
ffprobe's view of the same file — or refuses hostile input with status.json and a dead letter."""
import json
import os
import random
import signal
import subprocess
import urllib.request

import pytest

from conftest import ACCESS_KEY, SECRET_KEY, aws_cli, binary, ffmpeg, free_port, healthy, start_store, stop_process, temporary, wait_for, api_key, bearer

TOKEN = "media-test-token"


def ffprobe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path],
                         check=True, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


class Media:
    def __init__(self, root):
        self.root = root
        gateway_port = free_port()
        self.gateway = f"http://127.0.0.1:{gateway_port}"
        self.store_proc, self.store = start_store(
            root, ["--notify-webhook", f"gw={self.gateway}/events", "--notify-token", TOKEN])
        self.s3 = self.store.client()
        for bucket in ("ingest", "media"):
            self.s3.create_bucket(Bucket=bucket)
        for bucket, rule in (("ingest", {}), ("media", {"Filter": {"Key": {"FilterRules": [
                {"Name": "suffix", "Value": "/metadata.json"}]}}})):
            result = aws_cli(self.store.endpoint, root, "s3api", "put-bucket-notification-configuration", "--bucket", bucket,
                             "--notification-configuration", json.dumps({"QueueConfigurations": [{
                                 "QueueArn": "arn:minio:sqs::gw:webhook", "Events": ["s3:ObjectCreated:*"], **rule}]}))
            assert result.returncode == 0, result.stderr
        environment = {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "CINESCALE_S3_ENDPOINT": self.store.endpoint, "MEDIA_BUCKET": "media",
        }
        config = {
            "functions": {
                "probe": {
                    "command": [binary("CINESCALE_PROBE_BIN")], "timeout": 60, "concurrency": 2,
                    "environment": {**environment, "PROBE_MAX_WIDTH": "4096", "PROBE_MAX_HEIGHT": "4096"},
                    "retry": {"maxAttempts": 1},
                },
                "transcode": {
                    "command": [binary("CINESCALE_TRANSCODE_BIN")], "timeout": 300, "concurrency": 1,
                    "environment": {**environment, "LADDER": "240,360,720", "X264_PRESET": "ultrafast",
                                    "KEYFRAME_SECONDS": "2"},
                    "retry": {"maxAttempts": 2},
                },
            },
            "triggers": [
                {"function": "probe", "bucket": "ingest"},
                # Only ids starting with tx- are transcoded here, to keep the suite quick.
                {"function": "transcode", "bucket": "media", "prefix": "tx-", "suffix": "/metadata.json"},
            ],
        }
        path = os.path.join(root, "gateway.yaml")
        with open(path, "w") as f:
            json.dump(config, f)
        log = open(os.path.join(root, "gateway.log"), "ab")
        self.gateway_proc = subprocess.Popen(
            [binary("CINESCALE_BIN"), "gateway", "--config", path, "--port", str(gateway_port),
             "--data-dir", os.path.join(root, "gw"), "--event-token", TOKEN,
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
             # The product API on the gateway over a separate store, as with MinIO or Ceph RGW.
             "--api-store", self.store.endpoint], stdout=log, stderr=subprocess.STDOUT)
        wait_for("the gateway", lambda: healthy(self.gateway))

    def media_object(self, key):
        try:
            return json.loads(self.s3.get_object(Bucket="media", Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def dead_letters(self):
        out = subprocess.run([binary("CINESCALE_BIN"), "invocations", "list", "--state", "dead", "--json",
                              "--gateway", self.gateway, "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["invocations"]

    def close(self):
        stop_process(self.gateway_proc)
        stop_process(self.store_proc)


@pytest.fixture(scope="module")
def media():
    with temporary("cinescale-media-", Media) as m:
        yield m


def test_probe_writes_metadata_equal_to_ffprobes(media, tmp_path):
    clip = str(tmp_path / "clip.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=4",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=4",
           "-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "main", "-c:a", "aac", "-ac", "2",
           "-metadata:s:a:0", "language=fra", "-movflags", "+faststart", clip)
    result = aws_cli(media.store.endpoint, tmp_path, "s3", "cp", "--no-progress", clip, "s3://ingest/uploads/vid-001.mp4")
    assert result.returncode == 0, result.stderr
    metadata = wait_for("metadata.json", lambda: media.media_object("vid-001/metadata.json"))
    expected = ffprobe(clip)
    assert metadata["videoId"] == "vid-001"
    assert metadata["source"] == {"bucket": "ingest", "key": "uploads/vid-001.mp4",
                                  "eTag": media.s3.head_object(Bucket="ingest", Key="uploads/vid-001.mp4")["ETag"].strip('"'),
                                  "size": os.path.getsize(clip)}
    info = metadata["media"]
    assert info["container"] == expected["format"]["format_name"]
    assert abs(info["duration"] - float(expected["format"]["duration"])) < 0.001
    assert info["bitRate"] == int(expected["format"]["bit_rate"])
    by_type = {s["codec_type"]: s for s in expected["streams"]}
    video = next(s for s in info["streams"] if s["type"] == "video")
    audio = next(s for s in info["streams"] if s["type"] == "audio")
    v, a = by_type["video"], by_type["audio"]
    assert (video["codec"], video["profile"], video["width"], video["height"], video["pixelFormat"]) == \
        (v["codec_name"], v["profile"], v["width"], v["height"], v["pix_fmt"])
    assert video["displayAspectRatio"] == v["display_aspect_ratio"]
    assert video["frameRate"] == 30
    assert (audio["codec"], audio["sampleRate"], audio["channels"], audio["language"]) == \
        (a["codec_name"], int(a["sample_rate"]), a["channels"], "fra")


def test_probe_reads_under_2_percent_of_a_50_mb_faststart_mp4(media, tmp_path):
    clip = str(tmp_path / "big.mp4")
    # Lossless H.264 of a synthetic pattern: ~2 MB per second at 720p.
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=25", "-c:v", "libx264",
           "-preset", "ultrafast", "-qp", "0", "-movflags", "+faststart", clip)
    size = os.path.getsize(clip)
    assert size > 45_000_000
    media.s3.upload_file(clip, "ingest", "uploads/big-001.mp4")
    metadata = wait_for("metadata.json", lambda: media.media_object("big-001/metadata.json"), timeout=120)
    assert metadata["media"]["streams"][0]["width"] == 1280
    print(f"probe read {metadata['probe']['bytesRead']} of {size} bytes in {metadata['probe']['requests']} requests")
    assert metadata["probe"]["bytesRead"] < size * 0.02, metadata["probe"]
    assert metadata["probe"]["requests"] <= 8


@pytest.mark.parametrize("name,make,code", [
    ("empty", lambda p: open(p, "wb").close(), "UnreadableMedia"),
    ("image", lambda p: ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1", "-f", "image2",
                               "-c:v", "png", p), "ZeroDuration"),
    ("audio", lambda p: ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", "-f", "mp4", p), "NoVideoStream"),
    ("huge", lambda p: ffmpeg("-f", "lavfi", "-i", "color=size=4112x16:duration=1", "-c:v", "libx264",
                              "-preset", "ultrafast", "-f", "mp4", p), "DimensionsTooLarge"),
    # Seeded, so every run probes the same bytes (some random buffers look like an MPEG stream to a demuxer).
    ("garbage", lambda p: open(p, "wb").write(random.Random(20261125).randbytes(200_000)), "UnreadableMedia"),
])
def test_hostile_uploads_end_as_dead_letters_with_a_status(media, tmp_path, name, make, code):
    path = str(tmp_path / f"{name}.mp4")
    make(path)
    media.s3.upload_file(path, "ingest", f"uploads/bad-{name}.mp4")
    status = wait_for("status.json", lambda: media.media_object(f"bad-{name}/status.json"))
    assert status["state"] == "failed" and status["stage"] == "probe"
    assert status["error"]["code"] == code, status
    assert status["error"]["message"]
    assert media.media_object(f"bad-{name}/metadata.json") is None
    letters = wait_for("the dead letter", lambda: [d for d in media.dead_letters()
                                                   if f"bad-{name}" in json.dumps(d["event"])])
    assert letters[0]["errorType"] == code
    # The worker is still serving: a good upload after the bad one is probed.
    assert urllib.request.urlopen(media.gateway + "/healthz", timeout=5).status == 200


def test_upload_is_probed_then_transcoded_into_the_ladder(media, tmp_path):
    clip = str(tmp_path / "tx.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30:duration=6",
           "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000:duration=6",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", clip)
    media.s3.upload_file(clip, "ingest", "uploads/tx-001.mp4")
    status = wait_for("ready", lambda: (lambda s: s if s and s["state"] == "ready" else None)(
        media.media_object("tx-001/status.json")), timeout=180)
    assert status["percent"] == 100
    assert [(r["name"], r["width"], r["height"]) for r in status["renditions"]] == [("240p", 426, 240), ("360p", 640, 360)]
    for rendition in status["renditions"]:
        path = str(tmp_path / f"{rendition['name']}.mp4")
        media.s3.download_file("media", rendition["key"], path)
        assert os.path.getsize(path) == rendition["size"]
        probe = ffprobe(path)
        kinds = {s["codec_type"]: s for s in probe["streams"]}
        assert kinds["video"]["codec_name"] == "h264" and kinds["audio"]["codec_name"] == "aac"
        assert (kinds["video"]["width"], kinds["video"]["height"]) == (rendition["width"], rendition["height"])
        assert abs(float(probe["format"]["duration"]) - 6) < 0.2
        with open(path, "rb") as f:
            head = f.read(65536)
        assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))
    # Posters at 10/50/90 % and the scrubbing sprite, decoded from the same pass.
    thumbnails = status["thumbnails"]
    assert [round(p["time"], 1) for p in thumbnails["posters"]] == [0.6, 3.0, 5.4]
    for item in thumbnails["posters"] + [thumbnails["sprite"]]:
        path = str(tmp_path / os.path.basename(item["key"]))
        media.s3.download_file("media", item["key"], path)
        stream = ffprobe(path)["streams"][0]
        assert stream["codec_name"] == "mjpeg"
    assert thumbnails["sprite"]["count"] == 6 and thumbnails["sprite"]["interval"] == 1
    # HLS: the master playlist names each rung's media playlist, whose fMP4 segments are the keyframe
    # interval long; the tree downloaded from the bucket plays back in ffprobe with both streams.
    assert status["hls"] == "tx-001/hls/master.m3u8"
    head = media.s3.head_object(Bucket="media", Key=status["hls"])
    assert head["ContentType"] == "application/vnd.apple.mpegurl"
    local = tmp_path / "hls"
    for item in media.s3.list_objects_v2(Bucket="media", Prefix="tx-001/hls/")["Contents"]:
        target = local / item["Key"][len("tx-001/hls/"):]
        target.parent.mkdir(parents=True, exist_ok=True)
        media.s3.download_file("media", item["Key"], str(target))
    master = (local / "master.m3u8").read_text()
    assert master.count("#EXT-X-STREAM-INF:") == 2
    for rendition in status["renditions"]:
        assert f"RESOLUTION={rendition['width']}x{rendition['height']},CODECS=\"{rendition['codecs']}\"" in master
        assert f"BANDWIDTH={rendition['bandwidth']}," in master
        playlist = (local / rendition["name"] / "index.m3u8").read_text()
        assert "#EXT-X-MAP:URI=\"init.mp4\"" in playlist and "#EXT-X-ENDLIST" in playlist
        durations = [float(line[8:].rstrip(",")) for line in playlist.splitlines() if line.startswith("#EXTINF:")]
        assert [round(d, 1) for d in durations] == [2.0, 2.0, 2.0]
    probe = ffprobe(str(local / "master.m3u8"))
    assert {s["codec_name"] for s in probe["streams"]} == {"h264", "aac"}
    assert abs(float(probe["format"]["duration"]) - 6) < 0.2


def test_damaged_media_data_fails_the_transcode_with_a_reason(media, tmp_path):
    """A faststart MP4 whose header is intact but whose media data is garbage: the probe accepts the header,
    the transcoder refuses the content (CorruptMedia) instead of publishing grey frames."""
    clip = str(tmp_path / "damaged.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6", "-c:v", "libx264", "-preset", "ultrafast",
           "-movflags", "+faststart", clip)
    data = bytearray(open(clip, "rb").read())
    start = data.index(b"mdat") + 64
    data[start:] = random.Random(5).randbytes(len(data) - start)
    open(clip, "wb").write(data)
    media.s3.upload_file(clip, "ingest", "uploads/tx-damaged.mp4")
    status = wait_for("failed", lambda: (lambda s: s if s and s["state"] == "failed" else None)(
        media.media_object("tx-damaged/status.json")), timeout=120)
    assert status["stage"] == "transcode" and status["error"]["code"] == "CorruptMedia", status
    letters = wait_for("the dead letter", lambda: [d for d in media.dead_letters()
                                                   if "tx-damaged" in json.dumps(d["event"])])
    assert letters[0]["errorType"] == "CorruptMedia" and letters[0]["attempts"] == 2
    assert media.s3.list_objects_v2(Bucket="media", Prefix="tx-damaged/hls/")["KeyCount"] == 0


def test_the_gateway_serves_the_product_api_over_a_separate_store(media, tmp_path):
    clip = str(tmp_path / "api.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "libx264", "-preset", "ultrafast", clip)
    key = api_key(os.path.join(media.root, "gw", "queue.sqlite"))
    request = urllib.request.Request(media.gateway + "/uploads", method="POST", headers={"Content-Type": "application/json", **bearer(key)},
                                     data=json.dumps({"fileName": "api.mp4", "size": os.path.getsize(clip)}).encode())
    ticket = json.loads(urllib.request.urlopen(request, timeout=10).read())
    assert ticket["uploadUrl"].startswith(media.store.endpoint + "/ingest/uploads/")
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", clip, ticket["uploadUrl"]],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "200"

    def probed():
        video = json.loads(urllib.request.urlopen(urllib.request.Request(f"{media.gateway}/videos/{ticket['videoId']}", headers=bearer(key)), timeout=10).read())
        return video if video["state"] == "transcoding" else None  # probed; this fixture transcodes tx- ids only
    video = wait_for("probed", probed)
    assert video["metadata"]["streams"][0]["width"] == 320 and video["fileName"] == "api.mp4"


def test_a_crashed_transcode_worker_is_replaced_and_the_retry_finishes_the_video(media, tmp_path):
    """A worker that dies mid-transcode (SIGKILL, as the OOM killer or a crash ends it; a SIGSEGV sent with
    kill() would not do: Swift's backtracer reports it and, nothing faulting again, lets the process go on)
    fails that attempt with Runtime.ExitError; the gateway starts a new worker and the retry (deterministic
    keys) completes the video."""
    clip = str(tmp_path / "crash.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=20", "-c:v", "libx264", "-preset", "ultrafast", clip)
    media.s3.upload_file(clip, "ingest", "uploads/tx-crash.mp4")
    wait_for("transcoding under way", lambda: (lambda s: s and s["state"] == "transcoding" and s.get("percent", 0) > 0)(
        media.media_object("tx-crash/status.json")), timeout=120)
    workers = subprocess.run(["pgrep", "-f", "-x", binary("CINESCALE_TRANSCODE_BIN")], capture_output=True, text=True).stdout.split()
    assert len(workers) == 1, workers
    os.kill(int(workers[0]), signal.SIGKILL)
    status = wait_for("ready after the retry", lambda: (lambda s: s if s and s["state"] == "ready" else None)(
        media.media_object("tx-crash/status.json")), timeout=300)
    assert [r["name"] for r in status["renditions"]] == ["240p", "360p", "720p"]
    out = subprocess.run([binary("CINESCALE_BIN"), "invocations", "list", "--function", "transcode", "--json",
                          "--gateway", media.gateway, "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY],
                         capture_output=True, text=True, timeout=60)
    runs = [i for i in json.loads(out.stdout)["invocations"] if "tx-crash" in json.dumps(i.get("event", i))]
    assert runs and runs[0]["state"] == "succeeded" and runs[0]["attempts"] == 2, runs
    replacement = subprocess.run(["pgrep", "-f", "-x", binary("CINESCALE_TRANSCODE_BIN")], capture_output=True, text=True).stdout.split()
    assert len(replacement) == 1 and replacement != workers
