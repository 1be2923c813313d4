"""The product end to end on `cinescale dev` (one process: store, gateway, probe and transcode workers, API):
an upload through a presigned PUT with curl, polled until ready; a signed MP4 rendition read with a Range
header; the signed HLS master playlist followed URI by URI with plain HTTP and played by ffprobe; refused
URLs (tampered, expired, wrong length); JSON errors; delete."""
import hashlib
import hmac
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import api_key, ACCESS_KEY, SECRET_KEY, binary, ffmpeg, stop_process, temporary, wait_for


def request(method, url, body=None, headers=None):
    """(status, headers, body bytes) without raising on 4xx/5xx and without following redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


class Dev:
    ARGS = ("--ladder", "240,360", "--x264-preset", "ultrafast", "--stream-expiry", "120")

    def __init__(self, root):
        self.root = root
        ready = os.path.join(root, "ready.json")
        self.log = open(os.path.join(root, "dev.log"), "wb")
        self.proc = subprocess.Popen(
            [binary("CINESCALE_BIN"), "dev", "--data-dir", os.path.join(root, "data"), "--port", "0", "--store-port", "0",
             "--ready-file", ready, "--functions-dir", os.path.dirname(binary("CINESCALE_PROBE_BIN")),
             *self.ARGS, "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
             "--log-level", "info"], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for("cinescale dev", lambda: os.path.exists(ready) or self._died())
        addresses = json.load(open(ready))
        self.api, self.store = addresses["api"], addresses["store"]
        # The dev tenant's admin key, as `cinescale dev` writes it to its ready file.
        self.key = addresses["apiKey"]
        self.database = os.path.join(root, "data", "gateway", "queue.sqlite")
        self.auth = {"Authorization": f"Bearer {self.key}"}

    def _died(self):
        if self.proc.poll() is not None:
            raise RuntimeError("cinescale dev exited:\n" + open(os.path.join(self.root, "dev.log")).read())
        return False

    def json(self, method, path, body=None, key=None):
        """A call with the dev admin key (or `key`: a token, or "" for none)."""
        token = self.key if key is None else key
        status, _, data = request(method, self.api + path, body, {"Authorization": f"Bearer {token}"} if token else {})
        return status, (json.loads(data) if data else None)

    def close(self):
        stop_process(self.proc)


@pytest.fixture(scope="module")
def dev():
    with temporary("cinescale-dev-", Dev) as d:
        yield d


def upload(dev, tmp_path, name, seconds=6):
    clip = str(tmp_path / name)
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", clip)
    size = os.path.getsize(clip)
    status, ticket = dev.json("POST", "/uploads", {"fileName": name, "contentType": "video/mp4", "size": size})
    assert status == 201, ticket
    assert ticket["method"] == "PUT" and ticket["headers"] == {"Content-Length": str(size)}
    status, video = dev.json("GET", f"/videos/{ticket['videoId']}")
    assert status == 200 and video["state"] == "awaiting-upload"
    # curl, as a user would, straight to the bucket.
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", clip, ticket["uploadUrl"]],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "200", out
    return ticket, clip


def wait_ready(dev, video_id):
    def ready():
        status, video = dev.json("GET", f"/videos/{video_id}")
        assert status == 200 and video["state"] != "failed", video
        return video if video["state"] == "ready" else None
    return wait_for("ready", ready, timeout=180)


def test_upload_to_signed_streams(dev, tmp_path):
    ticket, clip = upload(dev, tmp_path, "first.mp4")
    video = wait_ready(dev, ticket["videoId"])
    assert [(r["name"], r["width"], r["height"]) for r in video["renditions"]] == [("240p", 426, 240), ("360p", 640, 360)]
    assert video["metadata"]["streams"][0]["width"] == 640 and video["fileName"] == "first.mp4"
    assert len(video["thumbnails"]["posters"]) == 3

    # The MP4 rendition through its signed URL: whole, then a Range → 206 with the same bytes.
    rendition = video["renditions"][1]
    assert "X-Amz-Expires=120&" in rendition["url"]  # --stream-expiry
    status, _, whole = request("GET", rendition["url"])
    assert status == 200 and len(whole) == rendition["size"]
    out = subprocess.run(["curl", "-sS", "-r", "1000-4999", "-D", "-", "-o", str(tmp_path / "part"), rendition["url"]],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("HTTP/1.1 206"), out.stdout
    assert f"content-range: bytes 1000-4999/{len(whole)}" in out.stdout.lower()
    assert (tmp_path / "part").read_bytes() == whole[1000:5000]
    # /stream/{id}/{rendition} redirects to a fresh signed URL.
    status, headers, _ = request("GET", dev.api + rendition["stream"])
    assert status == 302 and headers["Location"].startswith(dev.store + "/media/")

    # The master playlist: every URI signed, every one answers 200 with plain HTTP.
    status, headers, master = request("GET", dev.api + video["hls"])
    assert status == 200 and headers["Content-Type"] == "application/vnd.apple.mpegurl"
    children = [line for line in master.decode().splitlines() if line and not line.startswith("#")]
    assert len(children) == 2 and all("signature=" in c for c in children)
    fetched = 0
    for child in children:
        status, _, playlist = request("GET", f"{dev.api}/stream/{ticket['videoId']}/{child}")
        assert status == 200
        text = playlist.decode()
        uris = [line for line in text.splitlines() if line and not line.startswith("#")]
        uris += [line.split('URI="')[1].split('"')[0] for line in text.splitlines() if 'URI="' in line]
        assert len(uris) == 3  # two segments of 4 s and 2 s, and the init section
        for uri in uris:
            assert uri.startswith(dev.store) and "X-Amz-Signature=" in uri
            status, _, body = request("GET", uri)
            assert status == 200 and body
            fetched += 1
        # A tampered segment URL is refused by the store.
        status, _, _ = request("GET", uris[0][:-1] + ("0" if uris[0][-1] != "0" else "1"))
        assert status == 403
    assert fetched == 6
    # ffprobe plays the whole ladder through the API's playlists.
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                            dev.api + video["hls"]], capture_output=True, text=True, timeout=60)
    assert abs(float(probe.stdout) - 6) < 0.2, probe


def test_refused_urls_and_json_errors(dev, tmp_path):
    ticket, clip = upload(dev, tmp_path, "second.mp4", seconds=2)
    video_id = ticket["videoId"]
    # The PUT URL signs Content-Length: another length is refused by the store.
    status, ticket2 = dev.json("POST", "/uploads", {"fileName": "x.mp4", "size": 10})
    status, _, body = request("PUT", ticket2["uploadUrl"], b"0123456789ab", {"Content-Length": "12"})
    assert status == 403 and b"SignatureDoesNotMatch" in body
    video = wait_ready(dev, video_id)

    # Media playlists: a tampered signature, and a correctly signed but expired URL.
    status, _, master = request("GET", dev.api + video["hls"])
    child = [line for line in master.decode().splitlines() if line and not line.startswith("#")][0]
    status, body = dev.json("GET", f"/stream/{video_id}/{child[:-1]}{'0' if child[-1] != '0' else '1'}")
    assert status == 403 and body["error"]["code"] == "InvalidSignature"
    key = hmac.new(SECRET_KEY.encode(), b"cinescale-stream-v1", hashlib.sha256).digest()
    path = f"/stream/{video_id}/240p/index.m3u8"
    expires = int(time.time()) - 5
    signature = hmac.new(key, f"GET\n{path}\n{expires}".encode(), hashlib.sha256).hexdigest()
    status, body = dev.json("GET", f"{path}?expires={expires}&signature={signature}")
    assert status == 403 and body["error"]["code"] == "ExpiredURL", body
    # An expired presigned GET is refused by the store.
    out = subprocess.run([binary("CINESCALE_BIN"), "presign", f"s3://media/{video_id}/mp4/240p.mp4", "--expires", "1",
                          "--endpoint", dev.store, "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY],
                         capture_output=True, text=True, check=True)
    time.sleep(2.1)
    status, _, body = request("GET", out.stdout.strip())
    assert status == 403 and b"expired" in body.lower()

    # JSON errors.
    assert dev.json("GET", "/videos/nosuchvideo")[0] == 404
    assert dev.json("GET", "/videos/bad%2Fid")[0] in (400, 404)
    status, body = dev.json("GET", f"/stream/{video_id}/1080p")
    assert status == 400 and body["error"]["code"] == "InvalidResolution"
    status, body = dev.json("GET", f"/stream/{ticket2['videoId']}/240p")
    assert status == 409 and body["error"]["code"] == "VideoNotReady"
    status, body = dev.json("POST", "/uploads", {"fileName": "cat.png", "contentType": "image/png"})
    assert status == 415 and body["error"]["code"] == "UnsupportedMediaType"
    status, body = dev.json("POST", "/uploads", {"fileName": "big.mp4", "size": 50 << 30})
    assert status == 413 and body["error"]["code"] == "UploadTooLarge"
    status, _, body = request("POST", dev.api + "/uploads", b"{not json", dev.auth)
    assert status == 400 and json.loads(body)["error"]["code"] == "InvalidRequest"

    # Listing pages through every video; deleting removes the source and every output.
    seen, cursor = [], ""
    while True:
        status, page = dev.json("GET", f"/videos?limit=1&cursor={urllib.request.quote(cursor)}")
        assert status == 200 and len(page["videos"]) <= 1
        seen += [v["videoId"] for v in page["videos"]]
        if not page.get("nextCursor"):
            break
        cursor = page["nextCursor"]
    assert video_id in seen and ticket2["videoId"] in seen
    assert request("DELETE", f"{dev.api}/videos/{video_id}", None, dev.auth)[0] == 204
    assert dev.json("GET", f"/videos/{video_id}")[0] == 404
    assert request("GET", video["renditions"][0]["url"])[0] == 404
    assert request("DELETE", f"{dev.api}/videos/{video_id}", None, dev.auth)[0] == 404


def test_openapi_describes_every_route():
    import yaml
    spec = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "docs", "openapi.yaml")))
    assert set(spec["paths"]) == {"/uploads", "/uploads/{id}", "/uploads/{id}/parts", "/uploads/{id}/complete",
                                  "/upload", "/videos", "/videos/{id}", "/videos/{id}/captions", "/stream/{id}/master.m3u8",
                                  "/stream/{id}/manifest.mpd",
                                  "/stream/{id}/{rendition}/index.m3u8", "/stream/{id}/{rendition}",
                                  "/stream/{id}/{rendition}/{segment}", "/keys", "/keys/{id}",
                                  "/playback-keys", "/playback-keys/{id}", "/webhooks", "/webhooks/{id}",
                                  "/webhooks/{id}/deliveries", "/webhooks/{id}/deliveries/{delivery}/resend"}
    assert set(spec["paths"]["/videos/{id}"]) >= {"get", "delete"}


def test_upload_command_follows_a_video_to_ready_or_to_its_failure(dev, tmp_path):
    clip = str(tmp_path / "cli.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3", "-c:v", "libx264", "-preset", "ultrafast", clip)
    out = subprocess.run([binary("CINESCALE_BIN"), "upload", clip, "--api", dev.api, "--api-key", dev.key],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "upload: 100 %" in out.stdout and "process: 100 % done" in out.stdout
    assert "ready: " + dev.api + "/videos/" in out.stdout and "ffplay '" + dev.api + "/stream/" in out.stdout
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 1000)
    out = subprocess.run([binary("CINESCALE_BIN"), "upload", str(garbage), "--api", dev.api], capture_output=True,
                         text=True, timeout=180, env={**os.environ, "CINESCALE_API_KEY": dev.key})
    assert out.returncode == 1 and "UnreadableMedia at probe" in out.stderr, (out.stdout, out.stderr)


def test_demo_ends_with_a_playable_rendition(tmp_path):
    """What the README's first command runs (after building): `cinescale demo`, non-interactive."""
    started = time.time()
    out = subprocess.run([binary("CINESCALE_BIN"), "demo", "--exit", "--seconds", "4", "--data-dir", str(tmp_path / "demo")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "==> playback checked: 720p MP4 answers Range requests (206)" in out.stdout, out.stdout
    print(f"demo took {time.time() - started:.1f} s")


def test_form_upload_streams_to_the_bucket(dev, tmp_path):
    """The old CineScale's POST /upload (multipart/form-data), with a file of several 8 MiB parts, by curl -F."""
    clip = str(tmp_path / "form clip.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=9", "-c:v", "libx264", "-preset", "ultrafast",
           "-qp", "0", clip)
    size = os.path.getsize(clip)
    assert size > 17 << 20  # three parts at least
    authorization = ["-H", f"Authorization: Bearer {dev.key}"]
    out = subprocess.run(["curl", "-sS", *authorization, "-F", "title=holiday", "-F", f"file=@{clip};type=video/mp4",
                          dev.api + "/upload"], capture_output=True, text=True, timeout=120)
    ticket = json.loads(out.stdout)
    assert ticket["source"]["size"] == size, ticket
    url = subprocess.run([binary("CINESCALE_BIN"), "presign", f"s3://ingest/{ticket['source']['key']}", "--endpoint",
                          dev.store, "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY],
                         capture_output=True, text=True, check=True).stdout.strip()
    status, _, stored = request("GET", url)
    assert status == 200 and hashlib.md5(stored).hexdigest() == hashlib.md5(open(clip, "rb").read()).hexdigest()
    video = wait_ready(dev, ticket["videoId"])
    assert video["fileName"] == "form clip.mp4" and video["renditions"][-1]["height"] == 360
    # Not a form, not a video, no file part: JSON errors.
    status, _, body = request("POST", dev.api + "/upload", b"{}", {"Content-Type": "application/json", **dev.auth})
    assert status == 415
    out = subprocess.run(["curl", "-sS", *authorization, "-F", "file=@/etc/hostname;type=text/plain", dev.api + "/upload"],
                         capture_output=True, text=True, timeout=30)
    assert json.loads(out.stdout)["error"]["code"] == "UnsupportedMediaType"
    out = subprocess.run(["curl", "-sS", *authorization, "-F", "title=x", dev.api + "/upload"], capture_output=True, text=True,
                         timeout=30)
    assert json.loads(out.stdout)["error"]["code"] == "MalformedForm"


def test_keys_scopes_and_tenants(dev, tmp_path):
    """Every route but streaming and the page needs a key; a key's scopes bound what it may do; a tenant sees
    none of another's videos (404 as for an unknown id); a revoked key stops at once; tokens are shown once."""
    # No key, a malformed header, a wrong token: 401 with a JSON error; the page and streaming stay open.
    for path in ("/videos", "/videos/dev_000000000000000000000000", "/keys"):
        status, body = dev.json("GET", path, key="")
        assert status == 401 and body["error"]["code"] == "Unauthorized", (path, body)
    status, headers, _ = request("GET", dev.api + "/videos", None, {"Authorization": "Basic eDp5"})
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert dev.json("POST", "/uploads", {"fileName": "a.mp4"}, key="cs_k0000000000000000_" + "A" * 43)[0] == 401
    assert request("GET", dev.api + "/")[0] == 200

    # Keys through the API (admin): a read-only key cannot upload, delete or manage keys.
    status, created = dev.json("POST", "/keys", {"name": "reader", "scopes": ["read"]})
    assert status == 201 and created["key"]["scopes"] == ["read"] and created["token"].startswith("cs_")
    reader = created["token"]
    assert "token" not in json.dumps(dev.json("GET", "/keys")[1]) and any(
        k["id"] == created["key"]["id"] for k in dev.json("GET", "/keys")[1]["keys"])
    status, body = dev.json("POST", "/uploads", {"fileName": "a.mp4"}, key=reader)
    assert status == 403 and body["error"]["code"] == "Forbidden"
    assert dev.json("GET", "/keys", key=reader)[0] == 403
    assert dev.json("POST", "/keys", {"scopes": ["root"]})[0] == 400
    status, ticket = dev.json("POST", "/uploads", {"fileName": "mine.mp4"})
    assert status == 201 and ticket["videoId"].startswith("dev_")
    assert ticket["source"]["key"].startswith("uploads/dev_")
    assert dev.json("GET", f"/videos/{ticket['videoId']}", key=reader)[0] == 200
    assert dev.json("DELETE", f"/videos/{ticket['videoId']}", key=reader)[0] == 403

    # Another tenant, made by the operator's CLI on the same database: sees nothing of the dev tenant's.
    other = api_key(dev.database, tenant="other", scopes="upload,read,delete")
    status, page = dev.json("GET", "/videos", key=other)
    assert status == 200 and page["videos"] == []
    for method in ("GET", "DELETE"):
        status, body = dev.json(method, f"/videos/{ticket['videoId']}", key=other)
        assert status == 404 and body["error"]["code"] == "NoSuchVideo"
    assert dev.json("GET", "/keys", key=other)[0] == 403
    status, theirs = dev.json("POST", "/uploads", {"fileName": "theirs.mp4"}, key=other)
    assert theirs["videoId"].startswith("other_")
    assert dev.json("GET", f"/videos/{theirs['videoId']}")[0] == 404
    assert [v["videoId"] for v in dev.json("GET", "/videos", key=other)[1]["videos"]] == [theirs["videoId"]]

    # Webhooks to loopback or private addresses are refused: this dev's operator has not allowed them.
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data/", "http://localhost:8080/x"):
        status, body = dev.json("POST", "/webhooks", {"url": url, "events": ["video.ready"]})
        assert status == 400 and body["error"]["code"] == "WebhookURLNotAllowed", (url, body)

    # Revoked through the API: refused at once; the operator lists it as revoked.
    assert dev.json("DELETE", f"/keys/{created['key']['id']}")[0] == 204
    assert dev.json("GET", "/videos", key=reader)[0] == 401
    assert dev.json("DELETE", f"/keys/{created['key']['id']}", key=other)[0] == 403
    out = subprocess.run([binary("CINESCALE_BIN"), "keys", "list", "--database", dev.database, "--json"],
                         capture_output=True, text=True, timeout=60, check=True)
    keys = {k["id"]: k for k in json.loads(out.stdout)}
    assert keys[created["key"]["id"]]["revokedAt"] and {k["tenant"] for k in keys.values()} >= {"dev", "other"}
    assert all("token" not in k and "hash" not in k for k in keys.values())


def playback_token(key, video_id, seconds=300, aud=None, algorithm="HS256", kid=None, sub=None):
    import jwt  # PyJWT
    claims = {"sub": sub or video_id, "exp": int(time.time()) + seconds}
    if aud:
        claims["aud"] = aud
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def test_signed_playback_needs_a_token_of_the_tenant_for_that_video(dev, tmp_path):
    """A `signed` video streams only with a playback token (a JWT with the tenant's HS256 secret or RS256 key
    naming the video, with an expiry); the URLs minted from it never outlive the token; origins are checked."""
    import base64
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    clip = str(tmp_path / "signed.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3", "-f", "lavfi", "-i", "sine=duration=3",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", clip)
    status, ticket = dev.json("POST", "/uploads", {"fileName": "signed.mp4", "playbackPolicy": "signed"})
    assert status == 201, ticket
    assert dev.json("POST", "/uploads", {"playbackPolicy": "secret"})[0] == 400
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", clip, ticket["uploadUrl"]],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "200"
    video_id = ticket["videoId"]
    video = wait_ready(dev, video_id)
    assert video["playbackPolicy"] == "signed"

    status, created = dev.json("POST", "/playback-keys", {"algorithm": "HS256"})
    assert status == 201 and created["key"]["algorithm"] == "HS256" and created["secret"]
    kid, secret = created["key"]["id"], base64.urlsafe_b64decode(created["secret"] + "==")
    assert "secret" not in json.dumps(dev.json("GET", "/playback-keys")[1])

    def master(token=None, headers=None):
        url = dev.api + video["hls"] + (f"?token={token}" if token else "")
        status, _, body = request("GET", url, None, headers)
        return status, body

    # No token, a tampered one, another video's, an expired one, a thumbnail-only one: refused.
    status, body = master()
    assert status == 403 and json.loads(body)["error"]["code"] == "PlaybackTokenRequired"
    good = playback_token(secret, video_id, seconds=120, kid=kid)
    assert master(good[:-2] + ("AA" if not good.endswith("AA") else "BB"))[0] == 403
    assert master(playback_token(secret, "dev_000000000000000000000000", kid=kid))[0] == 403
    assert master(playback_token(b"x" * 32, video_id, kid=kid))[0] == 403
    status, body = master(playback_token(secret, video_id, seconds=-10, kid=kid))
    assert status == 403 and json.loads(body)["error"]["code"] == "ExpiredPlaybackToken"
    assert master(playback_token(secret, video_id, aud="t", kid=kid))[0] == 403
    assert request("GET", f"{dev.api}/stream/{video_id}/240p")[0] == 403

    # A good token: the master answers, its playlists expire with the token, and ffprobe plays the tree.
    status, body = master(good)
    assert status == 200
    expiries = [int(line.split("expires=")[1].split("&")[0]) for line in body.decode().splitlines() if "expires=" in line]
    token_exp = int(time.time()) + 120
    assert expiries and all(e <= token_exp + 1 for e in expiries)
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_packets", "-of", "csv=p=0", dev.api + video["hls"] + f"?token={good}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and int(out.stdout.split()[0]) == 75, out.stderr
    status, headers, _ = request("GET", f"{dev.api}/stream/{video_id}/240p?token={good}")
    assert status == 302
    assert int(headers["Location"].split("X-Amz-Expires=")[1].split("&")[0]) <= 121
    assert request("GET", f"{dev.api}/stream/{video_id}/thumbnail.jpg?token={good}")[0] == 403
    thumb = playback_token(secret, video_id, aud="t", kid=kid)
    status, headers, _ = request("GET", f"{dev.api}/stream/{video_id}/thumbnail.jpg?token={thumb}")
    assert status == 302 and request("GET", headers["Location"])[0] == 200

    # RS256: the tenant registers a public key and keeps the private one.
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    status, registered = dev.json("POST", "/playback-keys", {"algorithm": "RS256", "publicKey": pem})
    assert status == 201 and registered.get("secret") is None
    assert dev.json("POST", "/playback-keys", {"algorithm": "RS256", "publicKey": "not a key"})[0] == 400
    rs = playback_token(private, video_id, algorithm="RS256", kid=registered["key"]["id"])
    assert master(rs)[0] == 200

    # Another tenant's key cannot sign for this video; a revoked key stops at once.
    other = api_key(dev.database, tenant="signer", scopes="admin")
    status, foreign = dev.json("POST", "/playback-keys", {"algorithm": "HS256"}, key=other)
    foreign_secret = base64.urlsafe_b64decode(foreign["secret"] + "==")
    assert master(playback_token(foreign_secret, video_id, kid=foreign["key"]["id"]))[0] == 403
    assert dev.json("DELETE", f"/playback-keys/{kid}")[0] == 204
    assert master(good)[0] == 403

    # Allowed origins: a public video streams only for pages of its origins.
    status, ticket = dev.json("POST", "/uploads", {"fileName": "o.mp4", "allowedOrigins": ["https://app.example"]})
    assert status == 201
    assert dev.json("POST", "/uploads", {"allowedOrigins": ["app.example/path"]})[0] == 400
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", clip, ticket["uploadUrl"]],
                         capture_output=True, text=True, timeout=60)
    wait_ready(dev, ticket["videoId"])
    path = f"{dev.api}/stream/{ticket['videoId']}/master.m3u8"
    assert request("GET", path)[0] == 403
    assert request("GET", path, None, {"Origin": "https://evil.example"})[0] == 403
    assert request("GET", path, None, {"Origin": "https://app.example"})[0] == 200
    assert request("GET", path, None, {"Referer": "https://app.example/watch?v=1"})[0] == 200
