"""The S3 calls real clients send beyond the basics, with boto3 against the running embedded store: managed
multipart copies (UploadPartCopy), retried CompleteMultipartUpload, GET/HEAD by part number,
GetObjectAttributes, ListObjectVersions on an unversioned bucket, ListBuckets pages, canned ACLs and
non-ASCII user metadata."""
import base64
import hashlib
import os
import shutil
import subprocess
import tempfile

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, start_store, stop_process

MiB = 1024 * 1024


def code(error):
    return error.value.response["Error"]["Code"], error.value.response["ResponseMetadata"]["HTTPStatusCode"]


def anonymous(store):
    return boto3.client("s3", endpoint_url=store.endpoint, region_name=REGION, config=Config(signature_version=UNSIGNED))


def multipart_etag(parts):
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def test_managed_copy_is_a_multipart_copy(store, bucket):
    """boto3's copy() switches to CreateMultipartUpload + UploadPartCopy above its 8 MB threshold."""
    client = store.client()
    data = os.urandom(20 * MiB + 123)
    client.put_object(Bucket=bucket, Key="source", Body=data)
    other = store.new_bucket("copy")
    client.copy({"Bucket": bucket, "Key": "source"}, other, "copy", Config=TransferConfig(multipart_chunksize=8 * MiB))
    head = client.head_object(Bucket=other, Key="copy")
    assert head["ETag"] == multipart_etag([data[:8 * MiB], data[8 * MiB:16 * MiB], data[16 * MiB:]])
    assert head["ContentLength"] == len(data)
    assert client.get_object(Bucket=other, Key="copy")["Body"].read() == data


def test_upload_part_copy_ranges_and_conditions(store, bucket):
    client = store.client()
    data = os.urandom(6 * MiB)
    etag = client.put_object(Bucket=bucket, Key="src", Body=data)["ETag"]
    upload = client.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    source = {"Bucket": bucket, "Key": "src"}

    first = client.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=1, CopySource=source,
                                    CopySourceRange=f"bytes=0-{5 * MiB - 1}", CopySourceIfMatch=etag)
    assert first["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(data[:5 * MiB]).hexdigest()
    second = client.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=2, CopySource=source,
                                     CopySourceRange=f"bytes={5 * MiB}-{6 * MiB - 1}")

    # A range past the end, a malformed range, a failed source condition, a missing source: clear errors.
    with pytest.raises(ClientError) as error:
        client.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=3, CopySource=source,
                                CopySourceRange=f"bytes=0-{6 * MiB}")
    assert code(error) == ("InvalidRange", 416)
    with pytest.raises(ClientError) as error:
        client.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=3, CopySource=source,
                                CopySourceRange="bytes=10-")
    assert code(error) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as error:
        client.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=3, CopySource=source,
                                CopySourceIfNoneMatch=etag)
    assert code(error) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as error:
        client.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=3,
                                CopySource={"Bucket": bucket, "Key": "missing"})
    assert code(error) == ("NoSuchKey", 404)

    parts = [{"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
             {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]
    listed = client.list_parts(Bucket=bucket, Key="dst", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, 5 * MiB), (2, MiB)]
    client.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=upload, MultipartUpload={"Parts": parts})
    assert client.get_object(Bucket=bucket, Key="dst")["Body"].read() == data


def complete_upload(client, bucket, key, chunks):
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, chunk in enumerate(chunks, start=1):
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    first = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    return upload, parts, first


def test_retried_complete_gets_the_same_answer_across_a_restart(tmp_path):
    """A client that lost CompleteMultipartUpload's answer retries it: S3 answers the same result, so does the
    store — also after a restart; a retry naming other parts is still NoSuchUpload."""
    root = tempfile.mkdtemp(prefix="cinescale-complete-")
    proc, store = start_store(root)
    try:
        client = store.client()
        bucket = store.new_bucket()
        chunks = [os.urandom(5 * MiB), os.urandom(1000)]
        upload, parts, first = complete_upload(client, bucket, "retried", chunks)
        assert first["ETag"] == multipart_etag(chunks)
        again = client.complete_multipart_upload(Bucket=bucket, Key="retried", UploadId=upload,
                                                 MultipartUpload={"Parts": parts})
        assert (again["ETag"], again["Key"], again["Bucket"]) == (first["ETag"], "retried", bucket)
        with pytest.raises(ClientError) as error:
            client.complete_multipart_upload(Bucket=bucket, Key="retried", UploadId=upload,
                                             MultipartUpload={"Parts": parts[:1]})
        assert code(error) == ("NoSuchUpload", 404)
        with pytest.raises(ClientError) as error:
            client.complete_multipart_upload(Bucket=bucket, Key="other-key", UploadId=upload,
                                             MultipartUpload={"Parts": parts})
        assert code(error) == ("NoSuchUpload", 404)

        stop_process(proc)
        os.remove(os.path.join(root, "store.port"))
        proc, store = start_store(root)
        client = store.client()
        again = client.complete_multipart_upload(Bucket=bucket, Key="retried", UploadId=upload,
                                                 MultipartUpload={"Parts": parts})
        assert again["ETag"] == first["ETag"]
        assert client.get_object(Bucket=bucket, Key="retried")["Body"].read() == b"".join(chunks)
    finally:
        stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)


def test_get_and_head_by_part_number(store, bucket):
    client = store.client()
    chunks = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(77)]
    complete_upload(client, bucket, "parts", chunks)
    for number, chunk in enumerate(chunks, start=1):
        got = client.get_object(Bucket=bucket, Key="parts", PartNumber=number)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["PartsCount"] == 3 and got["ETag"] == multipart_etag(chunks)
        assert got["Body"].read() == chunk
        head = client.head_object(Bucket=bucket, Key="parts", PartNumber=number)
        assert head["ContentLength"] == len(chunk) and head["PartsCount"] == 3
        start = sum(len(c) for c in chunks[:number - 1])
        assert head["ContentRange"] == f"bytes {start}-{start + len(chunk) - 1}/{sum(map(len, chunks))}"
    with pytest.raises(ClientError) as error:
        client.get_object(Bucket=bucket, Key="parts", PartNumber=4)
    assert code(error) == ("InvalidPartNumber", 416)

    client.put_object(Bucket=bucket, Key="single", Body=b"whole")
    assert client.get_object(Bucket=bucket, Key="single", PartNumber=1)["Body"].read() == b"whole"
    with pytest.raises(ClientError) as error:
        client.get_object(Bucket=bucket, Key="single", PartNumber=2)
    assert code(error) == ("InvalidPartNumber", 416)


def test_get_object_attributes(store, bucket):
    client = store.client()
    chunks = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(10)]
    complete_upload(client, bucket, "attrs", chunks)
    attributes = client.get_object_attributes(
        Bucket=bucket, Key="attrs", ObjectAttributes=["ETag", "ObjectParts", "ObjectSize", "StorageClass"], MaxParts=2)
    assert attributes["ETag"] == multipart_etag(chunks).strip('"')
    assert attributes["ObjectSize"] == sum(map(len, chunks)) and attributes["StorageClass"] == "STANDARD"
    parts = attributes["ObjectParts"]
    assert parts["TotalPartsCount"] == 3 and parts["IsTruncated"] and parts["NextPartNumberMarker"] == 2
    assert [(p["PartNumber"], p["Size"]) for p in parts["Parts"]] == [(1, 5 * MiB), (2, 5 * MiB)]
    rest = client.get_object_attributes(Bucket=bucket, Key="attrs", ObjectAttributes=["ObjectParts"],
                                        PartNumberMarker=2)["ObjectParts"]
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(3, 10)] and not rest["IsTruncated"]

    client.put_object(Bucket=bucket, Key="plain", Body=b"abc", ChecksumAlgorithm="CRC32")
    plain = client.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=["ETag", "Checksum", "ObjectSize"])
    assert plain["ETag"] == hashlib.md5(b"abc").hexdigest() and plain["ObjectSize"] == 3
    assert plain["Checksum"]["ChecksumCRC32"] == base64.b64encode((0x352441C2).to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as error:
        client.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=["ETag"])
    assert code(error) == ("NoSuchKey", 404)


def test_list_object_versions_of_an_unversioned_bucket(store, bucket):
    client = store.client()
    for key in ["a/1", "a/2", "b/1", "c"]:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode())
    listing = client.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in listing["Versions"]] == [
        ("a/1", "null", True), ("a/2", "null", True), ("b/1", "null", True), ("c", "null", True)]
    page = client.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert page["IsTruncated"] and page["NextKeyMarker"] == "a/2" and page["NextVersionIdMarker"] == "null"
    rest = client.list_object_versions(Bucket=bucket, KeyMarker=page["NextKeyMarker"],
                                       VersionIdMarker=page["NextVersionIdMarker"])
    assert [v["Key"] for v in rest["Versions"]] == ["b/1", "c"]
    grouped = client.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/", "b/"]
    assert [v["Key"] for v in grouped["Versions"]] == ["c"]
    # What `aws s3 rb --force` and versioned-cleanup scripts call: every "version" deleted, the bucket empty.
    paginator = client.get_paginator("list_object_versions")
    for result in paginator.paginate(Bucket=bucket):
        for version in result.get("Versions", []):
            client.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_list_buckets_in_pages(store):
    client = store.client()
    names = sorted(f"pages-{i}-{os.urandom(3).hex()}" for i in range(5))
    for name in names:
        client.create_bucket(Bucket=name)
    seen, token = [], None
    while True:
        page = client.list_buckets(MaxBuckets=2, Prefix="pages-", **({"ContinuationToken": token} if token else {}))
        assert len(page["Buckets"]) <= 2
        seen += [b["Name"] for b in page["Buckets"]]
        token = page.get("ContinuationToken")
        if not token:
            break
    assert seen == names


def test_canned_acls_on_buckets_and_objects(store, bucket):
    client, anon = store.client(), anonymous(store)
    client.put_object(Bucket=bucket, Key="private", Body=b"p")
    client.put_object(Bucket=bucket, Key="public", Body=b"open", ACL="public-read")
    assert anon.get_object(Bucket=bucket, Key="public")["Body"].read() == b"open"
    with pytest.raises(ClientError) as error:
        anon.get_object(Bucket=bucket, Key="private")
    assert code(error) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as error:
        anon.list_objects_v2(Bucket=bucket)
    assert code(error) == ("AccessDenied", 403)

    # A public-read bucket opens its listing, not its private objects (as in S3).
    client.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert [o["Key"] for o in anon.list_objects_v2(Bucket=bucket)["Contents"]] == ["private", "public"]
    with pytest.raises(ClientError) as error:
        anon.get_object(Bucket=bucket, Key="private")
    assert code(error) == ("AccessDenied", 403)
    grants = client.get_bucket_acl(Bucket=bucket)["Grants"]
    assert {(g["Grantee"].get("URI"), g["Permission"]) for g in grants} == {
        (None, "FULL_CONTROL"), ("http://acs.amazonaws.com/groups/global/AllUsers", "READ")}

    # PutObjectAcl in both directions, canned or as an AccessControlPolicy document; the data and ETag stay.
    etag = client.head_object(Bucket=bucket, Key="private")["ETag"]
    client.put_object_acl(Bucket=bucket, Key="private", ACL="public-read")
    assert anon.get_object(Bucket=bucket, Key="private")["Body"].read() == b"p"
    assert client.head_object(Bucket=bucket, Key="private")["ETag"] == etag
    owner = client.get_object_acl(Bucket=bucket, Key="public")["Owner"]
    client.put_object_acl(Bucket=bucket, Key="public", AccessControlPolicy={
        "Owner": owner, "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"}]})
    with pytest.raises(ClientError) as error:
        anon.get_object(Bucket=bucket, Key="public")
    assert code(error) == ("AccessDenied", 403)
    assert [g["Permission"] for g in client.get_object_acl(Bucket=bucket, Key="public")["Grants"]] == ["FULL_CONTROL"]

    # Copies do not carry the source's ACL; they take the request's.
    client.copy_object(Bucket=bucket, Key="copy-private", CopySource={"Bucket": bucket, "Key": "private"})
    with pytest.raises(ClientError) as error:
        anon.get_object(Bucket=bucket, Key="copy-private")
    assert code(error) == ("AccessDenied", 403)

    # ACLs the store cannot enforce are refused, never silently ignored.
    for acl in ("authenticated-read", "public-read-write"):
        with pytest.raises(ClientError) as error:
            client.put_object(Bucket=bucket, Key="x", Body=b"x", ACL=acl)
        assert code(error) == ("NotImplemented", 501)
    with pytest.raises(ClientError) as error:
        client.put_object(Bucket=bucket, Key="x", Body=b"x", GrantRead='id="someone-else"')
    assert code(error) == ("NotImplemented", 501)
    client.put_bucket_acl(Bucket=bucket, ACL="private")
    with pytest.raises(ClientError) as error:
        anon.list_objects_v2(Bucket=bucket)
    assert code(error) == ("AccessDenied", 403)


def test_non_ascii_user_metadata_round_trips(store, bucket):
    """botocore refuses non-ASCII header values, so SDK users send RFC 2047 words; browsers and curl send raw
    UTF-8. S3 stores the text and answers it as a =?UTF-8?B?…?= word either way — so does the store."""
    client = store.client(signature_version="s3v4")
    text = "héllo wörld ✓ 日本"
    word = "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="
    client.put_object(Bucket=bucket, Key="encoded", Body=b"x", Metadata={"title": word, "plain": "ascii"})
    head = client.head_object(Bucket=bucket, Key="encoded")
    assert head["Metadata"] == {"title": word, "plain": "ascii"}
    q_word = "=?utf-8?Q?h=C3=A9llo_w=C3=B6rld?="
    client.put_object(Bucket=bucket, Key="q", Body=b"x", Metadata={"title": q_word})
    answered = client.head_object(Bucket=bucket, Key="q")["Metadata"]["title"]
    assert base64.b64decode(answered[len("=?UTF-8?B?"):-2]).decode() == "héllo wörld"

    url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "raw"})
    put = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "--data-binary", "x",
                          "-H", f"x-amz-meta-title: {text}", url], capture_output=True, text=True, timeout=60)
    assert put.stdout == "200", put.stderr
    assert client.head_object(Bucket=bucket, Key="raw")["Metadata"]["title"] == word
