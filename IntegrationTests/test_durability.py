"""Interrupted uploads leave nothing visible; a restarted store keeps everything it acknowledged."""
import os
import shutil
import socket
import tempfile
import time
import urllib.parse

import botocore
import pytest

from conftest import start_store, stop_process


def test_interrupted_upload_leaves_nothing(store, bucket):
    s3 = store.client(signature_version="s3v4")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "partial.bin"}, ExpiresIn=60)
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    head = (
        f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    )
    sock.sendall(head.encode() + os.urandom(3 * 1024 * 1024))
    time.sleep(0.3)
    sock.close()
    time.sleep(0.5)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.head_object(Bucket=bucket, Key="partial.bin")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # No temporary file is left behind either.
    leftovers = [f for f in os.listdir(os.path.join(store.data_dir, "tmp"))]
    assert leftovers == []
    # The store is still serving.
    s3.put_object(Bucket=bucket, Key="after.bin", Body=b"ok")
    assert s3.get_object(Bucket=bucket, Key="after.bin")["Body"].read() == b"ok"


def test_restart_keeps_acknowledged_objects():
    root = tempfile.mkdtemp(prefix="cinescale-restart-")
    try:
        proc, store = start_store(root)
        s3 = store.client()
        s3.create_bucket(Bucket="keep")
        payloads = {f"k/{i}": os.urandom(1000 + i) for i in range(20)}
        for key, body in payloads.items():
            s3.put_object(Bucket="keep", Key=key, Body=body)
        upload = s3.create_multipart_upload(Bucket="keep", Key="pending")
        stop_process(proc)

        os.remove(os.path.join(root, "store.port"))
        proc, store = start_store(root)
        s3 = store.client()
        for key, body in payloads.items():
            assert s3.get_object(Bucket="keep", Key=key)["Body"].read() == body
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket="keep")["Contents"]]
        assert listed == sorted(payloads)
        uploads = s3.list_multipart_uploads(Bucket="keep").get("Uploads", [])
        assert [u["UploadId"] for u in uploads] == [upload["UploadId"]]
        stop_process(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)
