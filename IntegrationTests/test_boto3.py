"""boto3 (from PyPI) against the running embedded store: presigned URLs followed with plain HTTP, and the API."""
import base64
import hashlib
from http.client import HTTPConnection
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import botocore
import pytest


def raw_request(method, url, body=None, headers=None):
    """Plain HTTP with no SDK in the way; returns (status, headers, body)."""
    parts = urllib.parse.urlsplit(url)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=30)
    path = parts.path + (("?" + parts.query) if parts.query else "")
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def error_code(body):
    return ET.fromstring(body).findtext("Code")


@pytest.mark.parametrize("signature_version", [None, "s3v4"])
def test_presigned_put_then_get(store, bucket, signature_version):
    client = store.client(signature_version=signature_version) if signature_version else store.client()
    key = "uploads/a b/c+d~e ü.mp4"
    payload = os.urandom(300_000)
    put_url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)
    if signature_version is None:
        assert "AWSAccessKeyId=" in put_url  # botocore's default with a custom endpoint: SigV2
    else:
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in put_url
    status, headers, _ = raw_request("PUT", put_url, body=payload)
    assert status == 200
    assert headers["etag"] == '"%s"' % hashlib.md5(payload).hexdigest()

    get_url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)
    status, headers, body = raw_request("GET", get_url)
    assert status == 200 and body == payload

    status, headers, body = raw_request("GET", get_url, headers={"Range": "bytes=1000-1999"})
    assert status == 206
    assert headers["content-range"] == "bytes 1000-1999/300000"
    assert body == payload[1000:2000]


@pytest.mark.parametrize("signature_version", [None, "s3v4"])
def test_tampered_and_expired_urls_refused(store, bucket, signature_version):
    client = store.client(signature_version=signature_version) if signature_version else store.client()
    client.put_object(Bucket=bucket, Key="secret.bin", Body=b"top secret")
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "secret.bin"}, ExpiresIn=600)
    name = "Signature" if signature_version is None else "X-Amz-Signature"
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    tampered = []
    for k, v in query:
        if k == name:
            # Change the value, not just its case: hex signatures compare case-insensitively.
            replacement = "0" if v[0] != "0" else "1"
            v = replacement + v[1:]
        tampered.append((k, v))
    tampered_url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(tampered)))
    status, _, body = raw_request("GET", tampered_url)
    assert status == 403 and error_code(body) == "SignatureDoesNotMatch"

    # Another key under the same signature.
    other = url.replace("secret.bin", "other.bin")
    status, _, body = raw_request("GET", other)
    assert status == 403 and error_code(body) == "SignatureDoesNotMatch"

    short = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "secret.bin"}, ExpiresIn=1)
    time.sleep(2.2)
    status, _, body = raw_request("GET", short)
    assert status == 403 and error_code(body) == "AccessDenied"
    assert b"expired" in body


def test_anonymous_refused_public_bucket_readable(store, bucket):
    client = store.client()
    client.put_object(Bucket=bucket, Key="k", Body=b"x")
    status, _, body = raw_request("GET", f"{store.endpoint}/{bucket}/k")
    assert status == 403 and error_code(body) == "AccessDenied"
    try:
        client.create_bucket(Bucket="public-media")
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    client.put_object(Bucket="public-media", Key="poster.jpg", Body=b"jpeg", ContentType="image/jpeg")
    status, headers, body = raw_request("GET", f"{store.endpoint}/public-media/poster.jpg")
    assert status == 200 and body == b"jpeg" and headers["content-type"] == "image/jpeg"
    status, _, _ = raw_request("PUT", f"{store.endpoint}/public-media/evil", body=b"no")
    assert status == 403


def test_object_api(store, bucket):
    s3 = store.client()
    body = b"hello cinescale" * 100
    put = s3.put_object(Bucket=bucket, Key="a/b.txt", Body=body, ContentType="text/plain", Metadata={"video-id": "v1"})
    assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    head = s3.head_object(Bucket=bucket, Key="a/b.txt")
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"video-id": "v1"}
    got = s3.get_object(Bucket=bucket, Key="a/b.txt", Range="bytes=-5")
    assert got["Body"].read() == body[-5:]
    assert got["ContentRange"] == f"bytes {len(body) - 5}-{len(body) - 1}/{len(body)}"

    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.get_object(Bucket=bucket, Key="a/b.txt", Range=f"bytes={len(body)}-")
    assert err.value.response["Error"]["Code"] == "InvalidRange"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416

    # Conditional GET
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.get_object(Bucket=bucket, Key="a/b.txt", IfNoneMatch=put["ETag"])
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.get_object(Bucket=bucket, Key="a/b.txt", IfModifiedSince=head["LastModified"])
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.get_object(Bucket=bucket, Key="a/b.txt", IfMatch='"0000"')
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"

    # Conditional writes
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"overwrite", IfNoneMatch="*")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"overwrite", IfMatch='"ffffffffffffffffffffffffffffffff"')
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"overwrite", IfMatch=put["ETag"])
    assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"overwrite"

    # Copy, with metadata copied and replaced
    s3.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": "a/b.txt"})
    assert s3.get_object(Bucket=bucket, Key="copy.txt")["Body"].read() == b"overwrite"
    s3.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": "copy.txt"},
                   MetadataDirective="REPLACE", Metadata={"x": "y"}, ContentType="video/mp4")
    head = s3.head_object(Bucket=bucket, Key="copy.txt")
    assert head["Metadata"] == {"x": "y"} and head["ContentType"] == "video/mp4"

    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.get_object(Bucket=bucket, Key="missing")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"

    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.delete_bucket(Bucket=bucket)
    assert err.value.response["Error"]["Code"] == "BucketNotEmpty"

    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a/b.txt"}, {"Key": "copy.txt"}, {"Key": "never"}]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["a/b.txt", "copy.txt", "never"]
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.head_bucket(Bucket=bucket)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_listing_pagination_and_delimiter(store, bucket):
    s3 = store.client()
    keys = [f"videos/{i:03d}/source.mp4" for i in range(30)] + [f"top-{i}" for i in range(7)] + ["videos/readme"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    paginator = s3.get_paginator("list_objects_v2")
    seen = [o["Key"] for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 4}) for o in page.get("Contents", [])]
    assert seen == sorted(keys)

    prefixes, contents = [], []
    for page in paginator.paginate(Bucket=bucket, Prefix="videos/", Delimiter="/", PaginationConfig={"PageSize": 7}):
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        contents += [o["Key"] for o in page.get("Contents", [])]
    assert prefixes == [f"videos/{i:03d}/" for i in range(30)]
    assert contents == ["videos/readme"]

    v1 = s3.get_paginator("list_objects")
    seen = [o["Key"] for page in v1.paginate(Bucket=bucket, PaginationConfig={"PageSize": 5}) for o in page.get("Contents", [])]
    assert seen == sorted(keys)


def test_multipart_with_checksums(store, bucket, tmp_path):
    s3 = store.client()
    path = tmp_path / "big.bin"
    data = os.urandom(23 * 1024 * 1024 + 17)
    path.write_bytes(data)
    from boto3.s3.transfer import TransferConfig

    s3.upload_file(str(path), bucket, "big.bin", Config=TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20))
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    md5s = b"".join(hashlib.md5(data[i:i + (8 << 20)]).digest() for i in range(0, len(data), 8 << 20))
    assert head["ETag"] == '"%s-3"' % hashlib.md5(md5s).hexdigest()
    out = tmp_path / "out.bin"
    s3.download_file(bucket, "big.bin", str(out))
    assert out.read_bytes() == data

    # Parts too small are refused at completion; aborting leaves nothing.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="small-parts")
    etags = []
    for n in (1, 2):
        part = s3.upload_part(Bucket=bucket, Key="small-parts", UploadId=upload["UploadId"], PartNumber=n, Body=b"x" * 1000)
        etags.append({"PartNumber": n, "ETag": part["ETag"]})
    parts = s3.list_parts(Bucket=bucket, Key="small-parts", UploadId=upload["UploadId"])
    assert [p["PartNumber"] for p in parts["Parts"]] == [1, 2]
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="small-parts", UploadId=upload["UploadId"], MultipartUpload={"Parts": etags})
    assert err.value.response["Error"]["Code"] == "EntityTooSmall"
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="small-parts", UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"abc"'}]})
    assert err.value.response["Error"]["Code"] == "InvalidPart"
    s3.abort_multipart_upload(Bucket=bucket, Key="small-parts", UploadId=upload["UploadId"])
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.list_parts(Bucket=bucket, Key="small-parts", UploadId=upload["UploadId"])
    assert err.value.response["Error"]["Code"] == "NoSuchUpload"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="small-parts")


def test_hostile_keys_stay_data(store, bucket):
    s3 = store.client()
    keys = ["../../etc/passwd", "a//b", "/leading", "./dot", "..", "sp ace/+plus/%percent", "ünï/çødé"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())
    # Nothing was written outside the data directory.
    root = os.path.dirname(store.data_dir)
    assert sorted(os.listdir(root)) == sorted(["data", "store.port", "store.log"])
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert err.value.response["Error"]["Code"] == "KeyTooLongError"


def test_cors_preflight_and_headers(store, bucket):
    status, headers, _ = raw_request("OPTIONS", f"{store.endpoint}/{bucket}/upload.mp4", headers={
        "Origin": "http://localhost:8080", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type",
    })
    assert status == 200
    assert headers["access-control-allow-origin"] in ("*", "http://localhost:8080")
    assert "PUT" in headers["access-control-allow-methods"]
    assert "content-type" in headers["access-control-allow-headers"].lower()
    s3 = store.client()
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "cors.bin"}, ExpiresIn=60)
    status, headers, _ = raw_request("PUT", url, body=b"abc", headers={"Origin": "http://localhost:8080"})
    assert status == 200
    assert "etag" in headers["access-control-expose-headers"].lower()


def test_bad_requests_get_s3_errors(store, bucket):
    s3 = store.client()
    # SigV2 signs Content-MD5, so a wrong digest must travel under a SigV4 URL to reach the digest check.
    url = store.client(signature_version="s3v4").generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "md5"}, ExpiresIn=60)
    status, _, body = raw_request("PUT", url, body=b"abc", headers={"Content-MD5": base64.b64encode(hashlib.md5(b"xyz").digest()).decode()})
    assert status == 400 and error_code(body) == "BadDigest"
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.create_bucket(Bucket="Invalid_Bucket")
    assert err.value.response["Error"]["Code"] == "InvalidBucketName"
