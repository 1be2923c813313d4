"""aws-cli (v1, from PyPI) against the running embedded store."""
import hashlib
import os


def write_random(path, size):
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            n = min(remaining, 1 << 20)
            f.write(os.urandom(n))
            remaining -= n
    return path


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_cp_small_and_large_ls_rm(aws, store, tmp_path):
    aws("s3", "mb", "s3://awscli-bucket")
    small = write_random(tmp_path / "small.bin", 1024)
    large = write_random(tmp_path / "large.bin", 40 * 1024 * 1024)
    aws("s3", "cp", str(small), "s3://awscli-bucket/dir/small.bin")
    aws("s3", "cp", str(large), "s3://awscli-bucket/dir/large.bin")

    # The 40 MB file went multipart: its ETag has S3's md5-N form.
    head = store.client().head_object(Bucket="awscli-bucket", Key="dir/large.bin")
    assert head["ContentLength"] == 40 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-5"), head["ETag"]

    listing = aws("s3", "ls", "s3://awscli-bucket/dir/").stdout
    assert "small.bin" in listing and "large.bin" in listing
    assert "dir/" in aws("s3", "ls", "s3://awscli-bucket").stdout
    assert "awscli-bucket" in aws("s3", "ls").stdout

    down_small = tmp_path / "down-small.bin"
    down_large = tmp_path / "down-large.bin"
    aws("s3", "cp", "s3://awscli-bucket/dir/small.bin", str(down_small))
    aws("s3", "cp", "s3://awscli-bucket/dir/large.bin", str(down_large))
    assert sha256(down_small) == sha256(small)
    assert sha256(down_large) == sha256(large)

    aws("s3", "rm", "s3://awscli-bucket/dir/small.bin")
    listing = aws("s3", "ls", "s3://awscli-bucket/dir/").stdout
    assert "small.bin" not in listing and "large.bin" in listing
    aws("s3", "rm", "--recursive", "s3://awscli-bucket/")
    aws("s3", "rb", "s3://awscli-bucket")
    assert "awscli-bucket" not in aws("s3", "ls").stdout


def test_get_object_range(aws, bucket, tmp_path):
    src = write_random(tmp_path / "range.bin", 10000)
    aws("s3", "cp", str(src), f"s3://{bucket}/range.bin")
    out = tmp_path / "part.bin"
    result = aws("s3api", "get-object", "--bucket", bucket, "--key", "range.bin", "--range", "bytes=100-1099", str(out))
    assert "bytes 100-1099/10000" in result.stdout
    assert out.read_bytes() == src.read_bytes()[100:1100]


def test_presign_sigv2_default_and_s3v4(aws, bucket, tmp_path):
    import urllib.request

    src = write_random(tmp_path / "p.bin", 5000)
    aws("s3", "cp", str(src), f"s3://{bucket}/pre signed/p+1.bin")
    url = aws("s3", "presign", f"s3://{bucket}/pre signed/p+1.bin", "--expires-in", "300").stdout.strip()
    assert "AWSAccessKeyId=" in url and "Signature=" in url  # botocore 1.43 presigns SigV2 here
    with urllib.request.urlopen(url) as response:
        assert response.read() == src.read_bytes()

    aws("configure", "set", "default.s3.signature_version", "s3v4")
    url = aws("s3", "presign", f"s3://{bucket}/pre signed/p+1.bin", "--expires-in", "300").stdout.strip()
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url) as response:
        assert response.read() == src.read_bytes()


def test_missing_key_and_bucket_errors(aws, bucket, tmp_path):
    result = aws("s3api", "head-object", "--bucket", bucket, "--key", "nope", check=False)
    assert result.returncode != 0 and "404" in result.stderr
    result = aws("s3api", "get-object", "--bucket", bucket, "--key", "nope", str(tmp_path / "x"), check=False)
    assert "NoSuchKey" in result.stderr
    result = aws("s3", "ls", "s3://no-such-bucket-here", check=False)
    assert "NoSuchBucket" in result.stderr


def test_cp_mv_and_sync_between_buckets(aws, store, tmp_path):
    """aws-cli copies objects over 8 MB bucket to bucket with UploadPartCopy (multipart copy): cp and mv of a
    40 MB and a 200 MB object, and sync of a bucket, arrive byte for byte."""
    aws("s3", "mb", "s3://copy-from")
    aws("s3", "mb", "s3://copy-to")
    medium = write_random(tmp_path / "medium.bin", 40 * 1024 * 1024)
    big = write_random(tmp_path / "big.bin", 200 * 1024 * 1024)
    small = write_random(tmp_path / "small.bin", 1000)
    aws("s3", "cp", str(medium), "s3://copy-from/a/medium.bin")
    aws("s3", "cp", str(big), "s3://copy-from/a/big.bin")
    aws("s3", "cp", str(small), "s3://copy-from/b/small.bin")

    aws("s3", "cp", "s3://copy-from/a/medium.bin", "s3://copy-to/medium.bin")
    aws("s3", "cp", "s3://copy-from/a/big.bin", "s3://copy-to/big.bin")
    aws("s3", "mv", "s3://copy-from/a/big.bin", "s3://copy-to/moved/big.bin")
    client = store.client()
    # Multipart copies: ETags of S3's md5-N form, parts of aws-cli's 8 MiB chunks.
    assert client.head_object(Bucket="copy-to", Key="medium.bin")["ETag"].strip('"').endswith("-5")
    assert client.head_object(Bucket="copy-to", Key="big.bin")["ContentLength"] == 200 * 1024 * 1024
    assert "big.bin" not in aws("s3", "ls", "s3://copy-from/a/").stdout
    for key, source in [("medium.bin", medium), ("big.bin", big), ("moved/big.bin", big)]:
        out = tmp_path / "down.bin"
        aws("s3", "cp", f"s3://copy-to/{key}", str(out))
        assert sha256(out) == sha256(source), key

    aws("s3", "mb", "s3://copy-synced")
    aws("s3", "sync", "s3://copy-from", "s3://copy-synced")
    listing = aws("s3", "ls", "--recursive", "s3://copy-synced").stdout
    assert "a/medium.bin" in listing and "b/small.bin" in listing and "big.bin" not in listing
    # A second sync has nothing to copy.
    assert aws("s3", "sync", "s3://copy-from", "s3://copy-synced").stdout.strip() == ""
    out = tmp_path / "synced.bin"
    aws("s3", "cp", "s3://copy-synced/a/medium.bin", str(out))
    assert sha256(out) == sha256(medium)
    for bucket in ("copy-from", "copy-to", "copy-synced"):
        aws("s3", "rb", "--force", f"s3://{bucket}")
