"""The README's layout section against the manifest (`swift package dump-package`, a few seconds, no build):
every target is listed at its path with the project targets it depends on, every target path listed is a
target, every test target is named, and every top-level folder of the repository has its line."""
import json
import os
import re
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# A first column that names a target's folder (not a placeholder such as `Tests/<Target>Tests` or a glob).
TARGET_ROOTS = ("Sources/", "Tests/", "functions/", "Benchmarks/")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    # A scratch path of its own: no wait on the lock of a build running in .build, and nothing resolved or built.
    scratch = tmp_path_factory.mktemp("dump-package")
    out = subprocess.run(["swift", "package", "--scratch-path", str(scratch), "dump-package"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    targets = {}
    for target in json.loads(out.stdout)["targets"]:
        path = target.get("path") or ("Tests/" if target["type"] == "test" else "Sources/") + target["name"]
        targets[target["name"]] = (target["type"], path, target.get("dependencies", []))
    return targets


def project_dependencies(targets, name):
    names = set()
    for dependency in targets[name][2]:
        for kind in ("byName", "target"):
            if kind in dependency and dependency[kind][0] in targets:
                names.add(dependency[kind][0])
    return names


def layout_entries():
    """The layout block's entries: first column → the entry's text (its continuation lines joined)."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("\n## Layout\n", 1)[1]
    block = section.split("```\n", 2)[1]
    entries = {}
    current = None
    for line in block.splitlines():
        if not line.strip():
            continue
        if line[0] != " ":
            current, _, text = line.partition(" ")
            assert current not in entries, f"{current} is listed twice"
            entries[current] = text.strip()
        else:
            assert current, line
            entries[current] += " " + line.strip()
    return entries


def test_every_target_is_listed_at_its_path_with_its_dependencies(manifest):
    entries = layout_entries()
    words = set(re.findall(r"[\w-]+", " ".join(entries.values())))
    problems = []
    for name, (kind, path, _) in sorted(manifest.items()):
        if kind == "test":
            if name not in words:
                problems.append(f"test target {name} is not named")
            continue
        if path not in entries:
            problems.append(f"{name}: no line for {path}")
            continue
        listed = re.search(r"\(([^()]*)\)$", entries[path])
        if not listed:
            problems.append(f"{path}: no (dependencies) at the end of its line")
            continue
        named = set() if listed.group(1) == "no project target" else {d.strip() for d in listed.group(1).split(",")}
        wanted = project_dependencies(manifest, name)
        if named != wanted:
            problems.append(
                f"{path}: lists ({', '.join(sorted(named))}), the manifest has ({', '.join(sorted(wanted))})")
    assert not problems, "README layout section:\n" + "\n".join(problems)


def test_every_listed_target_exists(manifest):
    paths = {path for _, path, _ in manifest.values()}
    entries = layout_entries()
    listed = [first for first in entries if first.startswith(TARGET_ROOTS) and not re.search(r"[<*]", first)]
    assert listed, "no target paths found in the README's layout section"
    assert not [first for first in listed if first not in paths], "listed in the README, not targets in Package.swift"
    text = " ".join(entries.values())
    tests = {name for name, (kind, _, _) in manifest.items() if kind == "test"}
    named_tests = set(re.findall(r"\b\w+Tests\b", text)) - {"IntegrationTests"}
    assert named_tests <= tests, f"named as test targets, not in Package.swift: {sorted(named_tests - tests)}"


def test_every_top_level_folder_has_its_line():
    # What git has or would add (not what it ignores: .build, .venv), as it is on disk now.
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode == 0 and out.stdout:
        folders = {path.split("/", 1)[0] for path in out.stdout.splitlines()
                   if "/" in path and os.path.exists(os.path.join(ROOT, path))}
    else:  # not a git checkout: what is on disk
        folders = {name for name in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, name))}
    folders = {name for name in folders if not name.startswith(".")}
    firsts = set(layout_entries())
    missing = [name for name in sorted(folders) if not any(first.startswith(name + "/") for first in firsts)]
    assert not missing, f"top-level folders without a line in the README's layout section: {missing}"
