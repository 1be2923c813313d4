"""Two gateways sharing one PostgreSQL invocation queue (a throwaway cluster): the store sends every event to
both, the queue's dedupe makes one invocation of each, and the gateways split the work by claiming it under
leases. One gateway is killed with SIGKILL midway through 200 uploads: the other takes over its leased
attempts once the lease expires, and every video ends processed, each by exactly one successful invocation
per stage."""
import concurrent.futures
import os
import subprocess
import time

import pytest

from conftest import binary, ffmpeg
from pipeline_cluster import Cluster, wait_until

VIDEOS = 200


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(os.path.dirname(binary("CINESCALE_BIN")), str(tmp_path), gateways=2, queue="postgres", ladder="240",
                lease=3)
    try:
        yield c
    finally:
        c.close()


def states(cluster):
    counts = {}
    for function, state, n in cluster.postgres.sql(
            "SELECT function, state, COUNT(*) FROM cinescale_invocation GROUP BY 1, 2"):
        counts.setdefault(function, {})[state] = int(n)
    return counts


def test_two_gateways_on_postgres_process_every_upload_once_through_a_kill_9(cluster, tmp_path):
    clip = str(tmp_path / "clip.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-f", "lavfi", "-i", "sine=duration=2",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", clip)
    data = open(clip, "rb").read()
    s3 = cluster.s3()
    videos = [f"v{n:03d}" for n in range(VIDEOS)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda v: s3.put_object(Bucket="ingest", Key=f"uploads/{v}.mp4", Body=data,
                                              ContentType="video/mp4"), videos))

    def transcoded():
        return states(cluster).get("transcode", {}).get("succeeded", 0)

    wait_until("a quarter of the videos transcoded", lambda: transcoded() >= VIDEOS // 4, timeout=300, interval=0.5)
    victim = cluster.gateways[0]
    held = cluster.postgres.sql(
        f"SELECT id, function FROM cinescale_invocation WHERE state = 'running' AND lease_owner LIKE '%/{victim.pid}/%'")
    done_before = transcoded()
    victim.kill_hard()
    killed_at = time.monotonic()
    assert done_before < VIDEOS, "the kill came too late to be midway"

    wait_until("every video transcoded", lambda: transcoded() == VIDEOS, timeout=600, interval=1)
    counts = states(cluster)
    # Exactly once in effect: each stage of each video has one invocation (both gateways got every event; the
    # queue deduplicated them), and each succeeded; nothing dead-lettered, nothing left pending.
    assert counts == {"probe": {"succeeded": VIDEOS}, "transcode": {"succeeded": VIDEOS}}, counts
    keys = cluster.postgres.sql(
        "SELECT COUNT(DISTINCT dedupe_key), COUNT(*) FROM cinescale_invocation WHERE function = 'probe'")
    assert keys == [[str(VIDEOS), str(VIDEOS)]]
    # What the killed gateway was running was taken over (after its lease) and finished.
    for invocation_id, function in held:
        state = cluster.postgres.sql(f"SELECT state FROM cinescale_invocation WHERE id = '{invocation_id}'")
        assert state == [["succeeded"]], (invocation_id, function, state)
    print(f"killed gateway 0 holding {len(held)} attempts with {done_before}/{VIDEOS} transcoded; "
          f"the rest finished {time.monotonic() - killed_at:.1f} s later")
    # Every video's outputs are there and say so.
    for video in videos:
        status = cluster.status(s3, video)
        assert status and status["state"] == "ready", (video, status)
        renditions = status.get("renditions") or []
        assert [r["name"] for r in renditions] == ["240p"], (video, status)
        assert s3.head_object(Bucket="media", Key=renditions[0]["key"])["ContentLength"] == renditions[0]["size"]


def test_two_gateways_on_postgres_run_the_chunks_of_one_video(tmp_path):
    """Chunked transcoding on the shared queue: one video's chunk invocations are claimed by both gateways
    (each has one chunk worker, so two chunks running at once are on two gateways), each chunk runs once, one
    finish joins them, and the ladder has every frame."""
    cluster = Cluster(os.path.dirname(binary("CINESCALE_BIN")), str(tmp_path), gateways=2, queue="postgres",
                      ladder="240,360", lease=3, chunk_seconds=8)
    try:
        clip = str(tmp_path / "long.mp4")
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=60", "-f", "lavfi",
               "-i", "sine=frequency=440:sample_rate=48000:duration=60", "-c:v", "libx264", "-preset", "ultrafast",
               "-c:a", "aac", "-shortest", clip)
        s3 = cluster.s3()
        s3.upload_file(clip, "ingest", "uploads/chunked.mp4")
        pids = {str(g.pid) for g in cluster.gateways}
        owners = set()

        def ready():
            # Which gateway holds each running chunk's lease (owner "host/pid/…"), sampled while the video runs.
            for (owner,) in cluster.postgres.sql(
                    "SELECT lease_owner FROM cinescale_invocation WHERE function = 'transcode-chunk' AND state = 'running'"):
                owners.update(pid for pid in pids if f"/{pid}/" in owner)
            status = cluster.status(s3, "chunked")
            assert not status or status["state"] != "failed", status
            return status if status and status["state"] == "ready" else None
        status = wait_until("the chunked video ready", ready, timeout=600, interval=0.05)
        assert owners == pids, f"chunks ran on gateways {owners} of {pids}"
        counts = states(cluster)
        # 2 s lead, then 8 s chunks over the remaining 58 s: 1 lead and 8 bulk chunks, each once; plan + finish.
        assert counts == {"probe": {"succeeded": 1}, "transcode": {"succeeded": 2}, "transcode-lead": {"succeeded": 1},
                          "transcode-chunk": {"succeeded": 8}}, counts
        attempts = cluster.postgres.sql("SELECT MAX(attempts) FROM cinescale_invocation")
        assert attempts == [["1"]]
        for rendition in status["renditions"]:
            path = str(tmp_path / f"{rendition['name']}.mp4")
            s3.download_file("media", rendition["key"], path)
            out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0", "-show_entries",
                                  "stream=nb_read_packets", "-of", "csv=p=0", path], capture_output=True, text=True,
                                 check=True)
            assert int(out.stdout.strip()) == 1800, rendition
    finally:
        cluster.close()


def test_api_keys_live_in_the_shared_database_and_a_revoke_counts_on_every_gateway(tmp_path):
    """Both gateways serve the product API with their keys in the PostgreSQL database they share the queue in:
    a key made by the operator's CLI or through one gateway works on the other, and one revoked through either
    is refused by both at their next request (nothing cached)."""
    import json
    import urllib.request

    from conftest import api_key

    cluster = Cluster(os.path.dirname(binary("CINESCALE_BIN")), str(tmp_path), gateways=2, queue="postgres",
                      ladder="240", api=True)
    try:
        urls = [f"http://127.0.0.1:{port}" for port in cluster.gateway_ports]

        def call(url, method, path, token, body=None):
            request = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body else None,
                                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    data = response.read()
                    return response.status, (json.loads(data) if data else None)
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read() or b"null")

        admin = api_key(cluster.postgres.url, tenant="shared", scopes="admin")
        status, created = call(urls[0], "POST", "/keys", admin, {"name": "reader", "scopes": ["read"]})
        assert status == 201
        reader = created["token"]
        assert [call(url, "GET", "/videos", reader)[0] for url in urls] == [200, 200]
        status, ticket = call(urls[1], "POST", "/uploads", admin, {"fileName": "a.mp4"})
        assert status == 201 and ticket["videoId"].startswith("shared_")
        assert call(urls[0], "GET", f"/videos/{ticket['videoId']}", reader)[0] == 200
        assert call(urls[1], "DELETE", f"/keys/{created['key']['id']}", admin)[0] == 204
        assert [call(url, "GET", "/videos", reader)[0] for url in urls] == [401, 401]
    finally:
        cluster.close()
