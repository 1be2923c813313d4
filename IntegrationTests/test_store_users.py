"""`cinescale store --users FILE`: several keys, each limited to what it needs, checked per bucket and operation
with boto3 and aws-cli; re-read on SIGHUP."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, binary, start_process, stop_process

USERS = """
- name: operator
  accessKey: OPERATORKEY
  secretKey: operator-secret-key
  admin: true
- name: functions
  accessKey: FUNCTIONSKEY
  secretKey: functions-secret-key
  buckets: {ingest: read, media: readwrite}
- name: alice
  accessKey: ALICEKEY
  secretKey: alice-secret-key
  createBuckets: true
- name: bob
  accessKey: BOBKEY
  secretKey: bob-secret-key
  createBuckets: true
"""


def client(endpoint, key, secret):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name=REGION, config=Config(retries={"max_attempts": 1}))


def code(error):
    return error.value.response["Error"]["Code"], error.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def users_store():
    root = tempfile.mkdtemp(prefix="cinescale-users-")
    users = os.path.join(root, "users.yaml")
    with open(users, "w") as f:
        f.write(USERS)
    proc, port = start_process([binary("CINESCALE_BIN"), "store", "--data-dir", os.path.join(root, "data"),
                                "--users", users, "--create-buckets", "ingest,media", "--log-level", "debug"], root, "store")
    try:
        yield f"http://127.0.0.1:{port}", users, proc, root
    finally:
        stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)


def denied(call, *args, **kwargs):
    with pytest.raises(ClientError) as error:
        call(*args, **kwargs)
    assert code(error) == ("AccessDenied", 403), error.value.response


def test_each_key_does_only_what_it_is_given(users_store, tmp_path):
    endpoint, _, _, _ = users_store
    operator = client(endpoint, "OPERATORKEY", "operator-secret-key")
    functions = client(endpoint, "FUNCTIONSKEY", "functions-secret-key")
    alice = client(endpoint, "ALICEKEY", "alice-secret-key")
    bob = client(endpoint, "BOBKEY", "bob-secret-key")

    operator.put_object(Bucket="ingest", Key="uploads/v1", Body=b"video")
    # The functions' key reads uploads and writes media, and nothing else.
    assert functions.get_object(Bucket="ingest", Key="uploads/v1")["Body"].read() == b"video"
    assert [o["Key"] for o in functions.list_objects_v2(Bucket="ingest")["Contents"]] == ["uploads/v1"]
    denied(functions.put_object, Bucket="ingest", Key="uploads/evil", Body=b"x")
    denied(functions.delete_object, Bucket="ingest", Key="uploads/v1")
    denied(functions.create_multipart_upload, Bucket="ingest", Key="uploads/evil")
    functions.put_object(Bucket="media", Key="v1/metadata.json", Body=b"{}")
    functions.copy_object(Bucket="media", Key="v1/source", CopySource={"Bucket": "ingest", "Key": "uploads/v1"})
    denied(functions.copy_object, Bucket="ingest", Key="uploads/copy", CopySource={"Bucket": "media", "Key": "v1/source"})
    denied(functions.create_bucket, Bucket="functions-own")
    denied(functions.delete_bucket, Bucket="media")
    denied(functions.put_bucket_acl, Bucket="media", ACL="public-read")
    denied(functions.get_bucket_notification_configuration, Bucket="ingest")
    assert sorted(b["Name"] for b in functions.list_buckets()["Buckets"]) == ["ingest", "media"]

    # aws-cli, as a user would try it with the functions' key.
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    upload = tmp_path / "f.bin"
    upload.write_bytes(os.urandom(1000))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": "FUNCTIONSKEY",
           "AWS_SECRET_ACCESS_KEY": "functions-secret-key", "AWS_DEFAULT_REGION": REGION,
           "AWS_CONFIG_FILE": str(tmp_path / "c"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "k")}
    result = subprocess.run([aws, "--endpoint-url", endpoint, "s3", "cp", str(upload), "s3://ingest/uploads/cli"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "AccessDenied" in result.stderr, result.stderr
    result = subprocess.run([aws, "--endpoint-url", endpoint, "s3", "cp", str(upload), "s3://media/cli"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    # Users who may create buckets own them: full control for the owner, nothing for another user, everything
    # for the administrator; the bucket namespace is shared.
    alice.create_bucket(Bucket="alice-bucket")
    alice.put_object(Bucket="alice-bucket", Key="k", Body=b"a")
    alice.create_bucket(Bucket="alice-bucket")  # one's own bucket again: 200 in us-east-1, as S3 answers
    with pytest.raises(ClientError) as error:
        bob.create_bucket(Bucket="alice-bucket")
    assert code(error) == ("BucketAlreadyExists", 409)
    denied(bob.get_object, Bucket="alice-bucket", Key="k")
    denied(bob.list_objects_v2, Bucket="alice-bucket")
    denied(bob.put_object, Bucket="alice-bucket", Key="k2", Body=b"b")
    assert operator.get_object(Bucket="alice-bucket", Key="k")["Body"].read() == b"a"
    assert [b["Name"] for b in bob.list_buckets()["Buckets"]] == []
    assert [b["Name"] for b in alice.list_buckets()["Buckets"]] == ["alice-bucket"]
    assert alice.get_bucket_acl(Bucket="alice-bucket")["Owner"]["ID"] == "alice"
    # What alice opens with an ACL, bob (and anyone) may read.
    alice.put_object_acl(Bucket="alice-bucket", Key="k", ACL="public-read")
    assert bob.get_object(Bucket="alice-bucket", Key="k")["Body"].read() == b"a"
    alice.put_bucket_acl(Bucket="alice-bucket", ACL="public-read")
    assert [o["Key"] for o in bob.list_objects_v2(Bucket="alice-bucket")["Contents"]] == ["k"]
    denied(bob.delete_bucket, Bucket="alice-bucket")
    alice.delete_object(Bucket="alice-bucket", Key="k")
    alice.delete_bucket(Bucket="alice-bucket")

    unknown = client(endpoint, "NOBODY", "whatever-secret")
    with pytest.raises(ClientError) as error:
        unknown.list_buckets()
    assert code(error) == ("InvalidAccessKeyId", 403)


def test_users_are_reread_on_sighup(users_store):
    endpoint, users, proc, _ = users_store
    functions = client(endpoint, "FUNCTIONSKEY", "functions-secret-key")
    denied(functions.put_object, Bucket="ingest", Key="uploads/a", Body=b"x")

    # A broken file keeps the users in force.
    with open(users, "w") as f:
        f.write("- name: [not a string\n")
    proc.send_signal(signal.SIGHUP)
    with open(users, "w") as f:
        f.write(USERS.replace("buckets: {ingest: read, media: readwrite}", "buckets: {ingest: readwrite}")
                .replace("accessKey: BOBKEY", "accessKey: BOBKEY2"))
    proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 60
    while True:
        try:
            functions.put_object(Bucket="ingest", Key="uploads/a", Body=b"x")
            break
        except ClientError as error:
            assert code_of(error) == ("AccessDenied", 403)
            assert time.time() < deadline, "the new users were not read after SIGHUP"
            time.sleep(0.1)
    assert proc.poll() is None
    denied(functions.get_object, Bucket="media", Key="anything")
    with pytest.raises(ClientError) as error:
        client(endpoint, "BOBKEY", "bob-secret-key").list_buckets()
    assert code(error) == ("InvalidAccessKeyId", 403)
    assert client(endpoint, "BOBKEY2", "bob-secret-key").list_buckets()["Buckets"] == []


def code_of(error):
    return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize("text,message", [
    ("- name: a\n  accessKey: K\n", "users[0].secretKey: missing"),
    ("- {name: a, accessKey: K, secretKey: long-enough-1}\n- {name: b, accessKey: K, secretKey: long-enough-2}\n",
     "users[1].accessKey: 'K' is listed twice"),
    ("- {name: a, accessKey: K, secretKey: long-enough, buckets: {media: everything}}\n", "users[0].buckets.media"),
    ("[]\n", "the file lists no users"),
])
def test_a_bad_users_file_is_refused_at_start_up(tmp_path, text, message):
    users = tmp_path / "users.yaml"
    users.write_text(text)
    result = subprocess.run([binary("CINESCALE_BIN"), "store", "--data-dir", str(tmp_path / "data"), "--users", str(users),
                             "--port", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and message in result.stderr, result.stderr
