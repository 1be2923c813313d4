"""Chunked transcoding end to end on `cinescale dev` (real store, gateway and function processes): a video is
cut into chunk invocations, is playable through the API while later chunks are still being encoded (segments
not written yet are held until they exist), and ends as a ladder equal in what players see to the source —
every frame, every audio packet, a keyframe at every segment, faststart MP4s joined from the segments. Faults:
a chunk worker killed with SIGKILL re-runs only that chunk; a duplicate finish trigger finishes once; a delete
cancels the queued chunks."""
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config

from conftest import ACCESS_KEY, SECRET_KEY, binary, ffmpeg, temporary, wait_for
from test_product import Dev, request


class ChunkedDev(Dev):
    ARGS = ("--ladder", "240,360", "--x264-preset", "ultrafast", "--chunk-seconds", "8")

    def __init__(self, root):
        super().__init__(root)
        self.s3 = boto3.client("s3", endpoint_url=self.store, aws_access_key_id=ACCESS_KEY,
                               aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                               config=Config(signature_version="s3v4"))

    def media(self, key):
        try:
            return json.loads(self.s3.get_object(Bucket="media", Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def invocations(self, function, video_id):
        out = subprocess.run([binary("CINESCALE_BIN"), "invocations", "list", "--function", function, "--limit", "1000",
                              "--json", "--gateway", self.api, "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [i for i in json.loads(out.stdout)["invocations"] if video_id in json.dumps(i.get("event", i))]

    def workers(self, function):
        """PIDs of the gateway's workers of one function (the same executable serves several functions)."""
        pids = []
        for pid in subprocess.run(["pgrep", "-f", "-x", binary("CINESCALE_TRANSCODE_BIN")],
                                  capture_output=True, text=True).stdout.split():
            try:
                environment = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            if f"AWS_LAMBDA_FUNCTION_NAME={function}".encode() in environment:
                pids.append(int(pid))
        return pids



@pytest.fixture(scope="module")
def dev():
    with temporary("cinescale-chunked-", ChunkedDev) as d:
        yield d


def upload(dev, tmp_path, name, seconds, size="640x360", audio=("-c:a", "aac", "-movflags", "+faststart")):
    clip = str(tmp_path / name)
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", *audio, "-shortest", clip)
    status, ticket = dev.json("POST", "/uploads", {"fileName": name, "size": os.path.getsize(clip)})
    assert status == 201, ticket
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", clip, ticket["uploadUrl"]],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "200", out
    return ticket["videoId"], clip


def audio_payloads(url):
    """The audio packets' MD5s, in order."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_data_hash", "MD5", "-show_entries",
                          "packet=data_hash", "-of", "json", url], capture_output=True, text=True, timeout=300, check=True)
    return [p["data_hash"] for p in json.loads(out.stdout)["packets"]]


def packets(url, stream):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time,flags",
                          "-of", "csv=p=0", url], capture_output=True, text=True, timeout=300, check=True)
    rows = [line.split(",") for line in out.stdout.splitlines() if line.strip()]
    return sorted((float(r[0]), "K" in r[1]) for r in rows if r[0] not in ("", "N/A"))


def wait_state(dev, video_id, state, timeout=300):
    def reached():
        status, video = dev.json("GET", f"/videos/{video_id}")
        assert status == 200 and (video["state"] != "failed" or state == "failed"), video
        return video if video["state"] == state else None
    return wait_for(state, reached, timeout=timeout)


def wait_playable(dev, video_id):
    def playable():
        status, video = dev.json("GET", f"/videos/{video_id}")
        assert status == 200 and video["state"] != "failed", video
        return video if video.get("playable") else None
    return wait_for("playable", playable, timeout=180)


def test_playable_while_chunks_encode_and_the_ladder_equals_the_source(dev, tmp_path):
    video_id, clip = upload(dev, tmp_path, "long.mp4", 60)
    # Playable before ready: the whole VOD playlist from the start, its later segments held until written.
    seen = wait_playable(dev, video_id)
    assert seen["state"] == "transcoding" and 0 <= seen["percent"] < 100, seen
    plan = dev.media(f"{video_id}/plan.json")
    # A first chunk of one 2 s segment, then the 4 s grid from 2 s (the last segment the 2 s left over).
    assert [c["segments"] for c in plan["chunks"]] == [1, 2, 2, 2, 2, 2, 2, 2, 1]
    assert plan["segmentDurations"] == [2] + [4] * 14 + [2]
    status, _, master = request("GET", dev.api + seen["hls"])
    assert status == 200 and master.decode().count("#EXT-X-STREAM-INF:") == 2
    uri = next(line for line in master.decode().splitlines() if line.startswith("360p/"))
    status, _, playlist = request("GET", dev.api + "/stream/" + video_id + "/" + uri)
    assert status == 200
    lines = playlist.decode().splitlines()
    assert "#EXT-X-ENDLIST" in lines and "#EXT-X-PLAYLIST-TYPE:VOD" in lines
    segments = [line for line in lines if line and not line.startswith("#")]
    assert len(segments) == 16
    # The first segment is in the bucket; the last is encoded later, and the API holds its request till then.
    with urllib.request.urlopen(segments[0], timeout=30) as response:
        assert response.status == 200 and len(response.read()) > 1000
    last = segments[-1] if segments[-1].startswith("http") else dev.api + segments[-1]
    # Held up to 60 s; a segment still not encoded then (a loaded machine) answers 503 with Retry-After, and a
    # player asks again, as this does.
    deadline = time.time() + 300
    while True:
        try:
            with urllib.request.urlopen(last, timeout=120) as response:
                assert response.status == 200 and len(response.read()) > 1000
            break
        except urllib.error.HTTPError as error:
            assert error.code == 503 and error.headers["Retry-After"] and time.time() < deadline, error
            time.sleep(int(error.headers["Retry-After"]))

    video = wait_state(dev, video_id, "ready")
    assert video["playable"] is True and video["percent"] == 100
    assert [r["name"] for r in video["renditions"]] == ["240p", "360p"]
    source_audio = packets(clip, "a:0")
    for rendition in video["renditions"]:
        path = str(tmp_path / f"{rendition['name']}.mp4")
        urllib.request.urlretrieve(rendition["url"], path)
        frames = packets(path, "v:0")
        assert len(frames) == 1800
        assert [round(t) for t, key in frames if key] == [0] + list(range(2, 60, 4))
        assert abs(frames[0][0]) < 0.001 and all(abs(b[0] - a[0] - 1 / 30) < 0.002 for a, b in zip(frames, frames[1:]))
        audio = packets(path, "a:0")
        assert len(audio) == len(source_audio)
        assert all(abs(b[0] - a[0] - 1024 / 48000) < 0.001 for a, b in zip(audio, audio[1:]))
        with open(path, "rb") as f:
            head = f.read(65536)
        assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))
    # The final HLS tree through the API: every frame, a keyframe starting every segment.
    status, _, master = request("GET", dev.api + video["hls"])
    uri = next(line for line in master.decode().splitlines() if line.startswith("240p/"))
    hls = packets(dev.api + "/stream/" + video_id + "/" + uri, "v:0")
    assert len(hls) == 1800 and sum(1 for _, key in hls if key) == 16
    # Posters from the chunks holding 10/50/90 %, one sprite of 60 tiles joined from the chunks' parts.
    thumbnails = video["thumbnails"]
    assert [round(p["time"]) for p in thumbnails["posters"]] == [6, 30, 54]
    assert thumbnails["sprite"]["count"] == 60
    # Each chunk ran once (no retries here), the lead on its own function.
    chunk_runs = dev.invocations("transcode-chunk", video_id)
    lead_runs = dev.invocations("transcode-lead", video_id)
    assert len(lead_runs) == 1 and len(chunk_runs) == 8
    assert all(i["state"] == "succeeded" and i["attempts"] == 1 for i in chunk_runs + lead_runs)


def test_audio_that_is_not_aac_is_encoded_once_and_muxed_by_every_chunk(dev, tmp_path):
    # Opus in Matroska (what WebM uploads carry): the plan encodes the audio to AAC once; the lead encodes its
    # own 2 s and the other chunks mux the single encode's packets, so the video is still cut into chunks.
    video_id, _ = upload(dev, tmp_path, "opus.mkv", 20, audio=("-c:a", "libopus"))
    video = wait_state(dev, video_id, "ready")
    plan = dev.media(f"{video_id}/plan.json")
    assert plan["encodedAudio"] is True and [c["segments"] for c in plan["chunks"]] == [1, 2, 2, 1]
    record = dev.media(f"{video_id}/audio/audio.json")
    assert record["sampleRate"] == 48000 and abs(record["duration"] - 20) < 0.1, record
    m4a = dev.s3.generate_presigned_url("get_object", Params={"Bucket": "media", "Key": record["key"]}, ExpiresIn=600)
    single = audio_payloads(m4a)
    assert len(single) == record["packets"]
    for rendition in video["renditions"]:
        path = str(tmp_path / f"opus-{rendition['name']}.mp4")
        urllib.request.urlretrieve(rendition["url"], path)
        assert len(packets(path, "v:0")) == 600
        # The rendition's audio is the single encode, packet for packet and byte for byte (the lead's own
        # encode of its range included), evenly spaced: no priming, gap or overlap at any chunk boundary.
        assert audio_payloads(path) == single
        audio = packets(path, "a:0")
        assert all(abs(b[0] - a[0] - 1024 / 48000) < 0.001 for a, b in zip(audio, audio[1:]))
    assert len(dev.invocations("transcode-chunk", video_id)) == 3


def test_a_chunk_worker_killed_mid_chunk_reruns_only_that_chunk(dev, tmp_path):
    video_id, _ = upload(dev, tmp_path, "kill.mp4", 48, size="1280x720")
    # Chunk 1 done: chunk 2 is the bulk worker's next; kill it once it is busy (CPU time rising).
    wait_for("chunk 1's record", lambda: dev.media(f"{video_id}/chunks/00001.json"), timeout=180)

    def busy_worker():
        for pid in dev.workers("transcode-chunk"):
            try:
                before = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11])
                time.sleep(0.1)
                after = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11])
            except OSError:
                continue
            if after > before and not dev.media(f"{video_id}/chunks/00002.json"):
                return pid
        return None
    pid = wait_for("a busy chunk worker", busy_worker, timeout=60)
    os.kill(pid, signal.SIGKILL)
    video = wait_state(dev, video_id, "ready")
    assert len(packets(video["renditions"][0]["url"], "v:0")) == 48 * 30
    runs = dev.invocations("transcode-chunk", video_id)
    assert len(runs) == 6 and all(i["state"] == "succeeded" for i in runs), runs
    assert sorted(i["attempts"] for i in runs) == [1, 1, 1, 1, 1, 2], [(i["attempts"], i.get("errorType")) for i in runs]


def test_a_duplicate_finish_trigger_finishes_once(dev, tmp_path):
    video_id, _ = upload(dev, tmp_path, "dup.mp4", 12)
    wait_state(dev, video_id, "ready")
    before = dev.s3.head_object(Bucket="media", Key=f"{video_id}/status.json")["ETag"]
    # The finish object again (as a redelivered or replayed notification would): a second finish runs, finds
    # the video ready and does nothing.
    dev.s3.put_object(Bucket="media", Key=f"{video_id}/jobs/finish.json",
                      Body=json.dumps({"videoId": video_id, "index": -1}).encode())
    finishes = wait_for("the second finish", lambda: (lambda runs: runs if len(runs) == 2 and all(
        r["state"] == "succeeded" for r in runs) else None)(
        [r for r in dev.invocations("transcode", video_id) if "finish.json" in json.dumps(r.get("event", r))]))
    assert len(finishes) == 2
    assert dev.s3.head_object(Bucket="media", Key=f"{video_id}/status.json")["ETag"] == before


def test_deleting_a_video_cancels_its_queued_chunks(dev, tmp_path):
    video_id, _ = upload(dev, tmp_path, "gone.mp4", 60)
    wait_playable(dev, video_id)
    status, _ = dev.json("DELETE", f"/videos/{video_id}")
    assert status == 204
    # Every queued chunk ends (cancelled) without writing anything back.
    wait_for("the chunks to end", lambda: (lambda runs: runs and all(r["state"] in ("succeeded", "dead") for r in runs))(
        dev.invocations("transcode-chunk", video_id)), timeout=180)
    time.sleep(0.5)
    left = dev.s3.list_objects_v2(Bucket="media", Prefix=f"{video_id}/").get("KeyCount", 0)
    assert left == 0
    assert dev.json("GET", f"/videos/{video_id}")[0] == 404
