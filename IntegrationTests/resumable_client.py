"""A resumable-upload client as an app would write one, on plain http.client: asks the API which parts of the
session are stored, mints URLs for the missing ones, PUTs them three at a time straight to the store (each
streamed from the file), then completes. Prints `missing <stored bytes> <part,part,…>` (what the API said was
still to send), `sent <part> <bytes>` the moment each part is stored and `completed` at the end, so a test can kill it half way and count what a resumed run sends.

Usage: python resumable_client.py API KEY FILE SESSION_ID [PARALLEL]"""
import http.client
import json
import sys
import threading
import urllib.parse

BLOCK = 1 << 20


def call(api, key, method, path, body=None):
    url = urllib.parse.urlsplit(api)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {key}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {answer[:300]!r}")
    return json.loads(answer) if answer else None


def put_part(url, path, offset, size):
    """PUTs `size` bytes of the file from `offset`, 1 MiB at a time; returns the bytes written to the socket."""
    target = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
    connection.putrequest("PUT", target.path + "?" + target.query, skip_accept_encoding=True)
    connection.putheader("Content-Length", str(size))
    connection.endheaders()
    sent = 0
    with open(path, "rb") as f:
        f.seek(offset)
        while sent < size:
            block = f.read(min(BLOCK, size - sent))
            connection.send(block)
            sent += len(block)
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"part at {offset}: {response.status} {answer[:300]!r}")
    return sent


def upload(api, key, path, session, parallel=3, out=print):
    view = call(api, key, "GET", f"/uploads/{session}")
    missing, part_size = view["missingParts"], view["partSize"]
    out(f"missing {view['storedBytes']} {','.join(map(str, missing))}")
    urls = {}
    for start in range(0, len(missing), 1000):
        batch = call(api, key, "POST", f"/uploads/{session}/parts", {"partNumbers": missing[start:start + 1000]})
        urls.update({p["partNumber"]: p for p in batch["parts"]})
    queue = list(missing)
    lock = threading.Lock()
    errors = []

    def worker():
        while True:
            with lock:
                if not queue or errors:
                    return
                number = queue.pop(0)
            part = urls[number]
            try:
                sent = put_part(part["url"], path, (number - 1) * part_size, part["size"])
            except Exception as error:  # noqa: BLE001 — reported below
                errors.append(error)
                return
            with lock:
                out(f"sent {number} {sent}")

    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    call(api, key, "POST", f"/uploads/{session}/complete")
    out("completed")


if __name__ == "__main__":
    api, key, path, session = sys.argv[1:5]
    upload(api, key, path, session, int(sys.argv[5]) if len(sys.argv) > 5 else 3,
           out=lambda line: print(line, flush=True))
