"""Resumable uploads end to end on `cinescale dev`: a 1 GB upload session (a generated clip padded to 1 GB
with an MP4 `free` box, which every MP4 reader skips) sent part by part with plain HTTP PUTs by a client that
is SIGKILLed once half the parts are stored; a new client asks the API what is stored and sends only the rest
(counted in bytes), completes, and the video is processed to `ready`. Then `cinescale upload` itself, killed
half way and run again. No fixed sleeps: every wait is for an event (a line, a state)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import binary, ffmpeg, temporary, wait_for
from test_product import Dev, wait_ready

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def dev():
    with temporary("cinescale-resumable-", Dev) as d:
        yield d


def padded_clip(tmp_path, name, size, seconds=4):
    """A short H.264/AAC MP4 (moov first) padded to exactly `size` bytes with a trailing `free` box (sparse on
    disk, so writing it costs nothing; the store still receives and stores every byte)."""
    clip = str(tmp_path / name)
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", "-movflags", "+faststart", clip)
    padding = size - os.path.getsize(clip)
    assert 8 <= padding < 1 << 32
    with open(clip, "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.write(padding.to_bytes(4, "big") + b"free")
        f.truncate(size)
    return clip


def test_a_1gb_upload_killed_half_way_resumes_without_resending_stored_parts(dev, tmp_path):
    started = time.monotonic()
    size = 1_000_000_000
    clip = padded_clip(tmp_path, "one gigabyte.mp4", size)
    status, session = dev.json("POST", "/uploads", {"fileName": "one gigabyte.mp4", "size": size})
    assert status == 201, session
    assert session["resumable"] and session["partSize"] == 8 << 20 and session["partCount"] == 120
    assert len(session["parts"]) == 100 and "uploadUrl" not in session
    sid, count = session["sessionId"], session["partCount"]

    # The first client: killed (SIGKILL, no goodbye) as soon as it has reported half the parts stored.
    first = subprocess.Popen([sys.executable, os.path.join(HERE, "resumable_client.py"), dev.api, dev.key, clip, sid],
                             stdout=subprocess.PIPE, text=True)
    reported = []
    for line in first.stdout:
        if line.startswith("sent "):
            reported.append(int(line.split()[1]))
        if len(reported) >= count // 2:
            first.send_signal(signal.SIGKILL)
            break
    first.wait(timeout=30)
    first.stdout.close()
    assert first.returncode == -signal.SIGKILL
    killed_at = time.monotonic()

    status, view = dev.json("GET", f"/uploads/{sid}")
    assert status == 200 and view["state"] == "open"
    stored = {p["partNumber"] for p in view["parts"]}
    assert set(reported) <= stored and len(stored) < count, (len(reported), len(stored))
    assert view["storedBytes"] == sum(p["size"] for p in view["parts"])
    assert sorted(stored | set(view["missingParts"])) == list(range(1, count + 1))

    # The second client sends only what is missing, counted byte by byte as it writes them to the socket.
    second = subprocess.run([sys.executable, os.path.join(HERE, "resumable_client.py"), dev.api, dev.key, clip, sid],
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    sent = [tuple(map(int, line.split()[1:])) for line in second.stdout.splitlines() if line.startswith("sent ")]
    resent_parts = {number for number, _ in sent}
    resent_bytes = sum(nbytes for _, nbytes in sent)
    # What the second client found missing when it started: the parts missing above, less any part the killed
    # client had already written whole into its socket (the store finishes storing it after the kill).
    _, stored_then, missing_then = next(line for line in second.stdout.splitlines() if line.startswith("missing ")).split()
    missing_then = set(map(int, missing_then.split(",")))
    assert missing_then <= set(view["missingParts"]) and len(set(view["missingParts"]) - missing_then) <= 3
    assert resent_parts == missing_then and not resent_parts & stored
    assert resent_bytes == size - int(stored_then) and len(resent_parts) <= count - count // 2
    assert second.stdout.rstrip().endswith("completed")
    uploaded_at = time.monotonic()

    video = wait_ready(dev, session["videoId"])
    assert video["source"]["size"] == size and video["fileName"] == "one gigabyte.mp4"
    assert [r["name"] for r in video["renditions"]] == ["240p", "360p"]
    status, view = dev.json("GET", f"/uploads/{sid}")
    assert status == 200 and view["state"] == "completed"
    print(f"\n1 GB resumable: {count - len(missing_then)} of {count} parts stored by the killed client "
          f"({size - resent_bytes} bytes), the second sent {len(resent_parts)} parts = "
          f"{resent_bytes} bytes ({resent_bytes / size:.1%}); first run to kill {killed_at - started:.1f} s (incl. writing "
          f"the file), resume + complete {uploaded_at - killed_at:.1f} s, to ready {time.monotonic() - uploaded_at:.1f} s")


def test_cinescale_upload_killed_half_way_sends_only_the_missing_parts_on_the_next_run(dev, tmp_path):
    size = 200_000_000
    clip = padded_clip(tmp_path, "cli clip.mp4", size, seconds=3)
    environment = dict(os.environ, CINESCALE_API=dev.api, CINESCALE_API_KEY=dev.key, XDG_STATE_HOME=str(tmp_path / "state"))
    command = [binary("CINESCALE_BIN"), "upload", clip, "--parallel", "2"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    session = None
    count = None
    for line in first.stdout:
        if line.startswith("session "):
            session = line.split()[1]
        if "as a resumable upload, " in line:
            count = int(line.split("as a resumable upload, ")[1].split()[0])
        if line.startswith("part stored: ") and int(line.split()[2].split("/")[0]) >= count // 2:
            first.send_signal(signal.SIGKILL)
            break
    first.wait(timeout=30)
    first.stdout.close()
    assert first.returncode == -signal.SIGKILL and session and count == 24
    state_files = os.listdir(tmp_path / "state" / "cinescale" / "uploads")
    assert len(state_files) == 1 and json.load(open(tmp_path / "state" / "cinescale" / "uploads" / state_files[0]))["sessionId"] == session
    status, view = dev.json("GET", f"/uploads/{session}")
    stored = count - len(view["missingParts"])
    assert status == 200 and count // 2 <= stored < count

    second = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout
    # What the second run found stored: the parts stored above, or up to two more (parts the killed run had
    # written whole into its sockets, which the store finished storing after the kill).
    line = next(line for line in out.splitlines() if line.startswith(f"video {view['videoId']}: resuming session {session}: "))
    found, stored_bytes = int(line.split(": ")[2].split()[0]), int(line.split("(")[1].split()[0])
    assert stored <= found <= stored + 2 and f"{found} of {count} parts already stored" in line, line
    assert f"sent {count - found} parts, {size - stored_bytes} bytes" in out, out
    assert out.count("part stored: ") == count - found
    stored = found
    assert "ready: " in out and "360p 640x360" in out
    assert os.listdir(tmp_path / "state" / "cinescale" / "uploads") == []
    print(f"\ncinescale upload: killed after {stored} of {count} parts; the second run sent {count - stored}")


def test_a_session_that_expires_is_aborted_by_the_janitor(tmp_path):
    """A dev whose sessions live 2 s: the janitor (a Service in the same group) aborts the multipart upload,
    and the session answers 410 UploadExpired."""
    class ShortSessions(Dev):
        ARGS = Dev.ARGS + ("--upload-session-expiry", "2")

    with temporary("cinescale-janitor-", ShortSessions) as dev:
        status, session = dev.json("POST", "/uploads", {"fileName": "a.mp4", "size": 100 << 20})
        assert status == 201
        sid = session["sessionId"]
        assert dev.json("GET", f"/uploads/{sid}")[0] == 200

        def gone():
            status, body = dev.json("GET", f"/uploads/{sid}")
            return body if status == 410 else None
        body = wait_for("the janitor", gone, timeout=30)
        assert body["error"]["code"] == "UploadExpired"
        status, body = dev.json("POST", f"/uploads/{sid}/parts", {"partNumbers": [1]})
        assert status == 410 and body["error"]["code"] == "UploadExpired"
        # (The janitor logs after the abort has answered: the line may follow the 410 by a moment.)
        wait_for("the janitor's log line",
                 lambda: b"expired upload session aborted" in open(os.path.join(dev.root, "dev.log"), "rb").read(), timeout=10)
