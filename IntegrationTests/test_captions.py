"""Captions end to end on `cinescale dev`, whole-video and chunked: a source with two audio tracks and a
mov_text subtitle track (languages set) becomes `ready` with the subtitles as a WebVTT rendition; ffprobe
reads the signed master over HTTP and finds the subtitle track with its language; the .vtt URL answers 200
and, tampered, 403; a SubRip file added through POST /videos/{id}/captions is served as WebVTT, listed and
named in the master; a body that is neither SubRip nor WebVTT is a 400."""
import json
import os
import re
import subprocess

import pytest

from conftest import ffmpeg, temporary
from test_product import Dev, request, wait_ready

CUES = [(0.5, 1.75, "Hello there."), (2.0, 3.25, "Two lines,\nthe second one."), (4.1, 5.6, "The last cue.")]


def stamp(seconds, comma=False):
    millis = round(seconds * 1000)
    text = f"{millis // 3600000:02}:{millis // 60000 % 60:02}:{millis // 1000 % 60:02}.{millis % 1000:03}"
    return text.replace(".", ",") if comma else text


def srt(cues):
    return "\n".join(f"{i + 1}\n{stamp(a, True)} --> {stamp(b, True)}\n{t}\n" for i, (a, b, t) in enumerate(cues))


def vtt_cues(text):
    """(start, end, text) of a WebVTT document."""
    cues = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line]
        for i, line in enumerate(lines):
            if "-->" in line:
                a, b = [p.strip().split(" ")[0] for p in line.split("-->")]
                seconds = [sum(float(x) * 60 ** k for k, x in enumerate(reversed(s.split(":")))) for s in (a, b)]
                cues.append((seconds[0], seconds[1], "\n".join(lines[i + 1:])))
                break
    return cues


def same(got, expected):
    assert [c[2] for c in got] == [c[2] for c in expected], got
    for (a, b, _), (c, d, _) in zip(got, expected):
        assert abs(a - c) <= 0.010 and abs(b - d) <= 0.010, (got, expected)


def source(tmp_path, seconds):
    subs = tmp_path / "english.srt"
    subs.write_text(srt(CUES))
    clip = str(tmp_path / "subtitled.mp4")
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=880:duration={seconds}", "-i", str(subs),
           "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-c:s", "mov_text",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra",
           "-metadata:s:s:0", "language=eng", "-metadata:s:s:0", "title=English", clip)
    return clip


def upload(dev, clip):
    size = os.path.getsize(clip)
    status, ticket = dev.json("POST", "/uploads", {"fileName": "subtitled.mp4", "contentType": "video/mp4", "size": size})
    assert status == 201, ticket
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", clip, ticket["uploadUrl"]],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "200", out
    return ticket["videoId"]


def probe_subtitles(url):
    """The subtitle streams ffprobe finds through the signed master playlist, over HTTP."""
    # FFmpeg 5.1's hls demuxer leaves subtitle renditions out unless -strict experimental.
    out = subprocess.run(["ffprobe", "-v", "error", "-strict", "experimental", "-show_entries", "stream=codec_type,codec_name:stream_tags=language",
                          "-of", "json", url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [s for s in json.loads(out.stdout)["streams"] if s["codec_type"] == "subtitle"]


def check_captions(dev, video_id):
    video = wait_ready(dev, video_id)
    assert [(c["name"], c["language"], c["label"], c["origin"]) for c in video["captions"]] == \
        [("subs-1", "eng", "eng", "source")]  # MP4 keeps no stream title: the label is the language
    caption = video["captions"][0]

    # The .vtt through its signed URL: the source's cues; tampered, the store refuses it.
    status, headers, body = request("GET", caption["url"])
    assert status == 200 and headers["Content-Type"].startswith("text/vtt"), body
    same(vtt_cues(body.decode()), CUES)
    tampered = re.sub(r"X-Amz-Signature=(.)", lambda m: "X-Amz-Signature=" + ("0" if m.group(1) != "0" else "1"), caption["url"])
    assert request("GET", tampered)[0] == 403
    status, headers, _ = request("GET", dev.api + caption["stream"])
    assert status == 302 and headers["Location"].startswith(dev.store)

    # The signed master: the subtitle rendition, every variant in its group, its URI signed by the API.
    status, _, master = request("GET", dev.api + video["hls"])
    assert status == 200
    text = master.decode()
    media = [line for line in text.splitlines() if line.startswith("#EXT-X-MEDIA:TYPE=SUBTITLES")]
    assert len(media) == 1 and 'NAME="eng"' in media[0] and 'LANGUAGE="eng"' in media[0], text
    uri = media[0].split('URI="')[1].split('"')[0]
    assert uri.startswith("subs-1/index.m3u8?") and "signature=" in uri
    assert all('SUBTITLES="subs"' in line for line in text.splitlines() if line.startswith("#EXT-X-STREAM-INF"))
    status, _, playlist = request("GET", f"{dev.api}/stream/{video_id}/{uri}")
    assert status == 200 and "#EXT-X-ENDLIST" in playlist.decode()
    vtt_url = [line for line in playlist.decode().splitlines() if line and not line.startswith("#")][0]
    assert "captions.vtt" in vtt_url and request("GET", vtt_url)[0] == 200
    tampered_playlist = f"{dev.api}/stream/{video_id}/{uri[:-1]}{'0' if uri[-1] != '0' else '1'}"
    assert request("GET", tampered_playlist)[0] == 403
    assert [(s["codec_name"], s["tags"]["language"]) for s in probe_subtitles(dev.api + video["hls"])] == [("webvtt", "eng")]
    return video


def add_srt(dev, video_id):
    cues = [(1.0, 2.5, "Hallo."), (3.0, 4.0, "Zwei\nZeilen.")]
    status, headers, body = request("POST", f"{dev.api}/videos/{video_id}/captions?language=de&label=Deutsch",
                                    srt(cues).encode(), {**dev.auth, "Content-Type": "application/x-subrip"})
    assert status == 201, body
    added = json.loads(body)
    assert (added["name"], added["language"], added["label"], added["origin"]) == ("subs-2", "de", "Deutsch", "upload")
    status, _, vtt = request("GET", added["url"])
    assert status == 200 and vtt.decode().startswith("WEBVTT\n") and "," not in vtt.decode().split("\n")[2]
    same(vtt_cues(vtt.decode()), cues)
    status, video = dev.json("GET", f"/videos/{video_id}")
    assert [c["name"] for c in video["captions"]] == ["subs-1", "subs-2"]
    languages = [(s["codec_name"], s["tags"]["language"]) for s in probe_subtitles(dev.api + video["hls"])]
    assert languages == [("webvtt", "eng"), ("webvtt", "de")]

    # Neither SubRip nor WebVTT: a clear 400, nothing added.
    status, _, body = request("POST", f"{dev.api}/videos/{video_id}/captions?language=fr&label=Nope",
                              b"this is not a caption file\n", dev.auth)
    assert status == 400 and json.loads(body)["error"]["code"] == "InvalidCaption", body
    status, _, body = request("POST", f"{dev.api}/videos/{video_id}/captions?language=f&label=Nope", srt(cues).encode(), dev.auth)
    assert status == 400 and json.loads(body)["error"]["code"] == "InvalidLanguage", body
    assert len(dev.json("GET", f"/videos/{video_id}")[1]["captions"]) == 2


class WholeDev(Dev):
    """One invocation per video (functions/transcode/Whole.swift): `cinescale dev` chunks by default."""
    ARGS = Dev.ARGS + ("--chunk-seconds", "0")


@pytest.fixture(scope="module")
def dev():
    with temporary("cinescale-captions-", WholeDev) as d:
        yield d


class ChunkedDev(Dev):
    ARGS = ("--ladder", "240,360", "--x264-preset", "ultrafast", "--chunk-seconds", "4", "--stream-expiry", "120")


@pytest.fixture(scope="module")
def chunked():
    with temporary("cinescale-captions-chunked-", ChunkedDev) as d:
        yield d


def test_whole_video_subtitles_and_an_added_srt(dev, tmp_path):
    video_id = upload(dev, source(tmp_path, 6))
    video = check_captions(dev, video_id)
    assert [s["type"] for s in video["metadata"]["streams"]].count("audio") == 2
    log = open(os.path.join(dev.root, "dev.log"), errors="replace").read()
    assert "subtitles extracted" not in log  # decoded in the whole transcode's own loop, no separate pass
    add_srt(dev, video_id)


def test_chunked_subtitles_are_extracted_once_in_the_finish(chunked, tmp_path):
    video_id = upload(chunked, source(tmp_path, 12))
    check_captions(chunked, video_id)
    log = open(os.path.join(chunked.root, "dev.log"), errors="replace").read()
    lines = [line for line in log.splitlines() if "subtitles extracted" in line and video_id in line]
    assert len(lines) == 1, lines
    print(lines[0])
