"""Webhooks out to the app, end to end on `cinescale dev` (its gateway database holding the endpoints and the
deliveries): a small receiver (Python's http.server) gets the tenant's video events, each verified against its
signature the way Stripe's and Mux's receivers verify (HMAC-SHA256 over "<t>.<body>"); while the receiver is
down, events wait and then arrive in order, each once; a `kill -9` of the gateway with deliveries pending
loses none."""
import hashlib
import hmac
import http.server
import json
import os
import signal
import threading
import time

import pytest

from conftest import free_port, temporary, wait_for
from test_product import Dev


class WebhookDev(Dev):
    ARGS = Dev.ARGS + ("--webhooks-may-reach-private-addresses",)


class Receiver:
    """An app's webhook endpoint on 127.0.0.1 that can be taken down and brought back on the same port."""

    def __init__(self):
        self.port = free_port()
        self.seen = []
        self.server = None

    def up(self):
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seen.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hooks"

    def events(self, secret):
        """The received events, each checked against its signature (and its timestamp's freshness)."""
        out = []
        for headers, body in self.seen:
            fields = dict(part.split("=", 1) for part in headers["CineScale-Signature"].split(","))
            expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(fields["v1"], expected), headers
            assert abs(time.time() - int(fields["t"])) < 300
            event = json.loads(body)
            assert headers["CineScale-Event-Id"] == event["id"]
            out.append(event)
        return out


@pytest.fixture
def receiver():
    r = Receiver()
    r.up()
    yield r
    try:
        r.down()
    except Exception:
        pass


def register(dev, receiver, events):
    status, created = dev.json("POST", "/webhooks", {"url": receiver.url, "events": events})
    assert status == 201, created
    assert created["secret"].startswith("whsec_") and "secret" not in json.dumps(dev.json("GET", "/webhooks")[1])
    return created["webhook"]["id"], created["secret"]


def test_events_arrive_signed_in_order_once_each_through_a_receiver_outage_and_a_kill_9(receiver, tmp_path):
    with temporary("cinescale-webhooks-", WebhookDev) as dev:
        webhook, secret = register(dev, receiver, ["video.created", "video.deleted"])
        status, first = dev.json("POST", "/uploads", {"fileName": "first.mp4"})
        assert status == 201
        wait_for("video.created", lambda: len(receiver.seen) >= 1, timeout=30)
        event = receiver.events(secret)[0]
        assert event["type"] == "video.created" and event["data"]["videoId"] == first["videoId"]
        assert event["data"]["state"] == "awaiting-upload" and event["id"].startswith("evt_")

        # The receiver down for 30 s: the events wait (retried with backoff: 1, 2, 4, 8, 16 s…) and then arrive in
        # order, each once. (The outage is what is tested, so it is a duration; the arrivals are waited for.)
        receiver.down()
        ids = [dev.json("POST", "/uploads", {"fileName": f"{n}.mp4"})[1]["videoId"] for n in range(3)]
        assert dev.json("DELETE", f"/videos/{first['videoId']}")[0] == 204
        wait_for("failed attempts", lambda: any(
            d["attempts"] >= 1 and d["state"] == "pending"
            for d in dev.json("GET", f"/webhooks/{webhook}/deliveries")[1]["deliveries"]), timeout=30)
        time.sleep(30)
        assert len(receiver.seen) == 1
        receiver.up()
        wait_for("the backlog", lambda: len(receiver.seen) >= 5, timeout=120)
        events = receiver.events(secret)
        assert [(e["type"], e["data"]["videoId"]) for e in events[1:]] == [
            ("video.created", ids[0]), ("video.created", ids[1]), ("video.created", ids[2]),
            ("video.deleted", first["videoId"])]
        assert len({e["id"] for e in events}) == len(events) == 5
        deliveries = dev.json("GET", f"/webhooks/{webhook}/deliveries")[1]["deliveries"]
        assert len(deliveries) == 5 and all(d["state"] == "delivered" and d["lastStatus"] == 204 for d in deliveries)
        assert any(d["attempts"] >= 2 for d in deliveries)

        # Re-sent on request: the same event (same id) again.
        oldest = deliveries[-1]
        assert dev.json("POST", f"/webhooks/{webhook}/deliveries/{oldest['id']}/resend")[0] == 202
        wait_for("the re-sent event", lambda: len(receiver.seen) >= 6, timeout=30)
        assert receiver.events(secret)[-1]["id"] == oldest["eventId"]

        # kill -9 with deliveries pending: nothing is lost; a new process delivers them.
        receiver.down()
        pending = [dev.json("POST", "/uploads", {"fileName": f"k{n}.mp4"})[1]["videoId"] for n in range(2)]
        os.kill(dev.proc.pid, signal.SIGKILL)
        dev.proc.wait(timeout=30)
        receiver.up()
        os.remove(os.path.join(dev.root, "ready.json"))
        restarted = WebhookDev(dev.root)
        try:
            wait_for("the events pending at the kill", lambda: len(receiver.seen) >= 8, timeout=90)
            assert [e["data"]["videoId"] for e in receiver.events(secret)[6:]] == pending
        finally:
            restarted.close()


def test_the_pipeline_reports_uploaded_playable_ready_and_failed(receiver, tmp_path):
    """The store's notifications, through the gateway's event intake, become the tenant's video events: a real
    upload through its presigned PUT is uploaded → playable → ready; a file that is no video fails with the
    probe's reason."""
    import subprocess

    from conftest import ffmpeg

    with temporary("cinescale-webhooks-", WebhookDev) as dev:
        _, secret = register(dev, receiver, ["video.created", "video.uploaded", "video.playable", "video.ready",
                                             "video.failed"])
        clip = str(tmp_path / "hook.mp4")
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3", "-f", "lavfi", "-i", "sine=duration=3",
               "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", clip)
        garbage = tmp_path / "garbage.mp4"
        garbage.write_bytes(b"no video here" * 500)
        ids = []
        for path in (clip, str(garbage)):
            status, ticket = dev.json("POST", "/uploads", {"fileName": os.path.basename(path)})
            assert status == 201
            out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", path, ticket["uploadUrl"]],
                                 capture_output=True, text=True, timeout=60)
            assert out.stdout == "200"
            ids.append(ticket["videoId"])

        def types(video):
            return [e["type"] for e in receiver.events(secret) if e["data"]["videoId"] == video]
        wait_for("video.ready", lambda: "video.ready" in types(ids[0]), timeout=180)
        wait_for("video.failed", lambda: "video.failed" in types(ids[1]), timeout=180)
        assert types(ids[0]) == ["video.created", "video.uploaded", "video.playable", "video.ready"]
        assert types(ids[1]) == ["video.created", "video.uploaded", "video.failed"]
        events = {(e["data"]["videoId"], e["type"]): e for e in receiver.events(secret)}
        assert events[(ids[0], "video.ready")]["data"]["renditions"] == ["240p"]
        failed = events[(ids[1], "video.failed")]["data"]
        assert failed["stage"] == "probe" and failed["code"] and failed["message"]
        assert events[(ids[0], "video.uploaded")]["data"]["size"] == os.path.getsize(clip)
