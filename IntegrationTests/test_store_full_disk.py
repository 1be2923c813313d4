"""The store on a full disk: a small tmpfs mounted for the store alone (in a mount namespace of its own, made with
unshare, so no mount outlives the test). Writes that cannot be stored get 507 StorageFull, which SDKs do not
retry; nothing partial is left; what was stored reads back intact; writes work again once space is freed; the
free-space floor refuses writes before the disk is full; /metrics shows free space and refusals; never a 500."""
import concurrent.futures
import os
import re
import shutil
import subprocess
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, REGION, SECRET_KEY, binary, start_process, stop_process

MiB = 1024 * 1024
DISK = 24 * MiB


def start_on_tmpfs(tmp_path, *extra):
    if not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is needed to mount the test's tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    # unshare: a private mount namespace (mapped to root when not root), where the tmpfs is mounted, then the store.
    command = ["unshare", "--mount", "--map-root-user", "--propagation", "private", "sh", "-c",
               f'mount -t tmpfs -o size={DISK} tmpfs "$0" && exec "$@"', str(disk),
               binary("CINESCALE_BIN"), "store", "--data-dir", str(disk / "data"), "--access-key", ACCESS_KEY,
               "--secret-key", SECRET_KEY, "--no-fsync", "--log-level", "info", *extra]
    proc, port = start_process(command, str(tmp_path), "store")
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                          region_name=REGION, config=Config(retries={"max_attempts": 3, "mode": "standard"}))
    return proc, endpoint, client


def metrics(endpoint):
    text = urllib.request.urlopen(endpoint + "/metrics", timeout=30).read().decode()
    values = {}
    for name in ("free_bytes", "disk_bytes", "free_floor_bytes", "storage_full_refusals_total"):
        match = re.search(rf"^cinescale_store_{name} (\S+)$", text, re.M)
        assert match, f"cinescale_store_{name} missing from /metrics"
        values[name] = float(match.group(1))
    return values


def storage_full(call, *args, **kwargs):
    with pytest.raises(ClientError) as error:
        call(*args, **kwargs)
    response = error.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("StorageFull", 507), response
    assert response["ResponseMetadata"]["RetryAttempts"] == 0  # not a 500 or 503: the SDK does not retry it
    return response


def test_a_full_disk_refuses_writes_cleanly_and_keeps_serving(tmp_path):
    proc, endpoint, client = start_on_tmpfs(tmp_path, "--min-free-space", "0")
    try:
        client.create_bucket(Bucket="full")
        kept = {f"kept-{i}": os.urandom(200_000) for i in range(5)}
        for key, data in kept.items():
            client.put_object(Bucket="full", Key=key, Body=data)
        before = metrics(endpoint)
        assert before["disk_bytes"] == DISK and 0 < before["free_bytes"] < DISK and before["free_floor_bytes"] == 0

        # Larger than the free space: refused before a byte is written.
        too_big = os.urandom(int(before["free_bytes"]) + MiB)
        response = storage_full(client.put_object, Bucket="full", Key="too-big", Body=too_big)
        assert "free" in response["Error"]["Message"]
        upload = client.create_multipart_upload(Bucket="full", Key="parts")["UploadId"]
        storage_full(client.upload_part, Bucket="full", Key="parts", UploadId=upload, PartNumber=1, Body=too_big)

        # Writes that each fit but not all together: those that meet the full disk mid-write (ENOSPC) get 507
        # as well, and leave nothing behind.
        size = int(before["free_bytes"] * 0.4)
        bodies = {f"racer-{i}": os.urandom(size) for i in range(4)}

        def put(key):
            try:
                client.put_object(Bucket="full", Key=key, Body=bodies[key])
                return key, 200
            except ClientError as error:
                return key, (error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"])

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            outcomes = dict(pool.map(put, bodies))
        stored = [key for key, outcome in outcomes.items() if outcome == 200]
        refused = [key for key, outcome in outcomes.items() if outcome == ("StorageFull", 507)]
        assert sorted(stored + refused) == sorted(bodies), outcomes
        assert len(stored) <= 2 and refused, outcomes  # how many fit depends on how the writes interleave

        listed = {o["Key"] for o in client.list_objects_v2(Bucket="full")["Contents"]}
        assert listed == set(kept) | set(stored)
        for key in stored:
            assert client.get_object(Bucket="full", Key=key)["Body"].read() == bodies[key]
        for key, data in kept.items():
            assert client.get_object(Bucket="full", Key=key)["Body"].read() == data
        refusals = metrics(endpoint)["storage_full_refusals_total"]
        assert refusals >= 2 + len(refused)

        # Space freed: writes work again, and the refused writes left no temp files (the free space is back).
        for key in stored:
            client.delete_object(Bucket="full", Key=key)
        client.abort_multipart_upload(Bucket="full", Key="parts", UploadId=upload)
        after = metrics(endpoint)
        assert abs(after["free_bytes"] - before["free_bytes"]) < 256 * 1024, (before, after)
        client.put_object(Bucket="full", Key="small-after", Body=b"fits")
        assert client.get_object(Bucket="full", Key="small-after")["Body"].read() == b"fits"
        assert proc.poll() is None
    finally:
        stop_process(proc)
    log = open(tmp_path / "store.log", errors="replace").read()
    assert "InternalError" not in log and "storage failure" not in log


def test_the_free_space_floor_refuses_writes_before_the_disk_is_full(tmp_path):
    proc, endpoint, client = start_on_tmpfs(tmp_path, "--min-free-space", "50%")
    try:
        client.create_bucket(Bucket="floor")
        state = metrics(endpoint)
        assert state["free_floor_bytes"] == DISK // 2
        room = int(state["free_bytes"] - state["free_floor_bytes"])
        client.put_object(Bucket="floor", Key="fits", Body=os.urandom(room - 512 * 1024))
        response = storage_full(client.put_object, Bucket="floor", Key="crosses", Body=os.urandom(MiB))
        assert "keeps at least" in response["Error"]["Message"]
        assert metrics(endpoint)["storage_full_refusals_total"] == 1
        assert metrics(endpoint)["free_bytes"] > DISK // 2  # the floor held: the disk is not full
        client.delete_object(Bucket="floor", Key="fits")
        client.put_object(Bucket="floor", Key="crosses", Body=os.urandom(MiB))
    finally:
        stop_process(proc)
