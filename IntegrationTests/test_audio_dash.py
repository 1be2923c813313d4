"""Every audio track and DASH end to end on `cinescale dev`, whole-video and chunked: a source with two audio
tracks (English, French) and a subtitle track becomes `ready` with both tracks as audio renditions of the
master (ffprobe reads them over HTTP with their languages and durations), an M4A download, and a DASH
manifest over the very same segment objects as the HLS tree. ffprobe reads the signed manifest and decodes
video and audio from it; every URL in it answers 200 with plain HTTP and 403 once tampered."""
import contextlib
import http.server
import json
import re
import subprocess
import threading
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from conftest import temporary
from test_captions import ChunkedDev, WholeDev, source, upload
from test_product import request, wait_ready

MPD = "{urn:mpeg:dash:schema:mpd:2011}"


@contextlib.contextmanager
def serve(document):
    """`document` as an MPD on 127.0.0.1 (a free port) while the block runs."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/dash+xml")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/manifest.mpd"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def whole():
    with temporary("cinescale-audio-", WholeDev) as d:
        yield d


@pytest.fixture(scope="module")
def chunked():
    with temporary("cinescale-audio-chunked-", ChunkedDev) as d:
        yield d


def probe(url, *extra):
    out = subprocess.run(["ffprobe", "-v", "error", *extra, "-show_entries",
                          "stream=codec_type,codec_name,sample_rate,duration,nb_read_frames,nb_read_packets:stream_tags=language",
                          "-of", "json", url], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["streams"]


def tampered(url):
    return re.sub(r"X-Amz-Signature=(.)", lambda m: "X-Amz-Signature=" + ("0" if m.group(1) != "0" else "1"), url)


def object_key(url):
    """The store object a presigned URL names (path without the bucket's leading slash)."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path).lstrip("/")


def hls_objects(dev, video):
    """Every object the signed HLS tree names: each media playlist's init section and segments."""
    status, _, master = request("GET", dev.api + video["hls"])
    assert status == 200
    keys = set()
    for line in master.decode().splitlines():
        uri = line.split('URI="')[1].split('"')[0] if 'URI="' in line else (line if line and not line.startswith("#") else None)
        if uri is None:
            continue
        status, _, playlist = request("GET", f"{dev.api}/stream/{video['videoId']}/{uri}")
        assert status == 200, uri
        for entry in playlist.decode().splitlines():
            target = entry.split('URI="')[1].split('"')[0] if entry.startswith("#EXT-X-MAP") else (entry if entry and not entry.startswith("#") else None)
            if target:
                keys.add(object_key(target))
    return keys, master.decode()


def check(dev, video_id, seconds):
    video = wait_ready(dev, video_id)
    assert [(a["name"], a["language"], a["isDefault"], a["codecs"]) for a in video["audio"]] == \
        [("audio-1", "eng", True, "mp4a.40.2"), ("audio-2", "fra", False, "mp4a.40.2")], video["audio"]

    # The master: both tracks in the AUDIO group, every variant naming it; ffprobe reads them with their languages.
    keys, master = hls_objects(dev, video)
    media = [line for line in master.splitlines() if line.startswith("#EXT-X-MEDIA:TYPE=AUDIO")]
    assert len(media) == 2 and 'LANGUAGE="eng"' in media[0] and "DEFAULT=YES" in media[0] and 'LANGUAGE="fra"' in media[1], master
    assert all('AUDIO="audio"' in line and "mp4a.40.2" in line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF"))
    streams = probe(dev.api + video["hls"])
    audio = [s for s in streams if s["codec_type"] == "audio"]
    assert sorted(s["tags"]["language"] for s in audio) == ["eng", "fra"], streams
    for rendition in ("audio-1", "audio-2"):
        uri = [line for line in media if f"{rendition}/index.m3u8" in line][0].split('URI="')[1].split('"')[0]
        packets = probe(f"{dev.api}/stream/{video_id}/{uri}", "-count_packets")
        assert len(packets) == 1 and packets[0]["codec_type"] == "audio"
        # AAC: 1024 samples a packet; the track's length within a few packets of the source's.
        assert abs(int(packets[0]["nb_read_packets"]) * 1024 / int(packets[0]["sample_rate"]) - seconds) < 0.1, packets

    # The M4A download: the default track alone.
    m4a = probe(video["audioDownload"]["url"])
    assert [(s["codec_type"], s["codec_name"]) for s in m4a] == [("audio", "aac")]
    assert abs(float(m4a[0]["duration"]) - seconds) < 0.1

    # DASH: the same segment objects as the HLS tree, every URL signed.
    status, headers, body = request("GET", dev.api + video["dash"])
    assert status == 200 and headers["Content-Type"] == "application/dash+xml", body
    root = ET.fromstring(body)
    sets = root.findall(f"{MPD}Period/{MPD}AdaptationSet")
    assert [(s.get("contentType"), s.get("lang")) for s in sets] == \
        [("video", None), ("audio", "eng"), ("audio", "fra"), ("text", "eng")], body.decode()
    urls = [e.get("sourceURL") for e in root.iter(f"{MPD}Initialization")]
    urls += [e.get("media") for e in root.iter(f"{MPD}SegmentURL")]
    # The caption file: the API's own route, relative to the manifest, redirecting to a presigned URL.
    for base in root.iter(f"{MPD}BaseURL"):
        assert base.text == "subs-1.vtt"
        status, headers, _ = request("GET", urllib.parse.urljoin(dev.api + video["dash"], base.text))
        assert status == 302
        urls.append(headers["Location"])
    mpd_keys = {object_key(u) for u in urls}
    assert mpd_keys == keys, sorted(mpd_keys ^ keys)[:8]
    for url in urls:
        assert request("GET", url)[0] == 200, url
        assert request("GET", tampered(url))[0] == 403, url
    # ffprobe reads the manifest and decodes the picture and both audio tracks from it.
    # FFmpeg 5.1's DASH reader sizes its URL buffer from the manifest's own URL and BaseURLs, not from the
    # SegmentURLs, and cuts a presigned URL (~400 characters) to "invalid:truncated"; a longer manifest URL (a
    # query the API ignores) gives it room. Same manifest, same signed URLs.
    room = "?room=" + "x" * 1024
    streams = probe(dev.api + video["dash"] + room)
    assert sorted((s["codec_type"], s.get("tags", {}).get("language")) for s in streams) == \
        [("audio", "eng"), ("audio", "fra"), ("subtitle", "eng"), ("video", None), ("video", None)], streams
    # It also ends the whole presentation when its side-loaded WebVTT file runs out (the reader stops at the
    # first stream's end): every picture and sample is decoded from the same manifest without its text set,
    # served over HTTP.
    without_text = re.sub(r'<AdaptationSet id="\d+" contentType="text".*?</AdaptationSet>\n', "", body.decode(), flags=re.S)
    assert without_text.count("<AdaptationSet") == 3
    with serve(without_text.encode()) as url:
        streams = probe(url + room, "-count_frames")
    pictures = [s for s in streams if s["codec_type"] == "video"]
    sounds = [s for s in streams if s["codec_type"] == "audio"]
    assert len(pictures) == 2 and len(sounds) == 2, streams  # two rungs, two tracks
    # Within a frame (a packet): the reader ends everything at the first stream's end.
    assert all(round(seconds * 30) - 1 <= int(s["nb_read_frames"]) <= round(seconds * 30) for s in pictures), pictures
    assert all(abs(int(s["nb_read_frames"]) * 1024 / int(s["sample_rate"]) - seconds) < 0.1 for s in sounds), sounds
    return video


def test_whole_video_audio_tracks_and_dash(whole, tmp_path):
    check(whole, upload(whole, source(tmp_path, 6)), 6)


def test_chunked_audio_tracks_and_dash(chunked, tmp_path):
    check(chunked, upload(chunked, source(tmp_path, 12)), 12)
