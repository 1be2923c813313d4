"""A function for the trigger tests (awslambdaric): records every run in RECORD_DIR/runs.log (one JSON line,
fsync'd) and, unless FAIL=1, its effect as RECORD_DIR/effects/<request id>.json, so that a re-run of the same
invocation overwrites rather than adds. SLEEP seconds of pretend work before the effect."""

import json, os, time

def handler(event, context):
    d = os.environ["RECORD_DIR"]
    rec = {"requestId": context.aws_request_id, "event": event, "t": time.time()}
    with open(os.path.join(d, "runs.log"), "a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("FAIL") == "1":
        raise RuntimeError("always fails")
    time.sleep(float(os.environ.get("SLEEP", "0")))
    os.makedirs(os.path.join(d, "effects"), exist_ok=True)
    tmp = os.path.join(d, "effects", context.aws_request_id + ".tmp")
    with open(tmp, "w") as f:
        json.dump(rec, f)
    os.rename(tmp, os.path.join(d, "effects", context.aws_request_id + ".json"))
    return {"ok": True}


# What the tests read back of a RECORD_DIR.

def read_runs(d):
    """Every run recorded in d/runs.log, in order (none yet: [])."""
    try:
        with open(os.path.join(d, "runs.log")) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def read_effects(d):
    """Each effect in d/effects by request id (none yet: {})."""
    directory = os.path.join(d, "effects")
    if not os.path.isdir(directory):
        return {}
    out = {}
    for name in os.listdir(directory):
        if name.endswith(".json"):
            with open(os.path.join(directory, name)) as f:
                out[name[:-5]] = json.load(f)
    return out
