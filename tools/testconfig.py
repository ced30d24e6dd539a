"""The tests' configuration, held to the base: what decides which tests run is not the repair's to change.

Why: a repair is judged by the tests, and a test run is decided as much by its configuration as by the test files -
``addopts = "--deselect tests/test_x.py::test_that_fails"`` in pyproject.toml, a ``testpaths`` that misses a folder,
``-m "not slow"``, a ``collect_ignore`` in a conftest.py - so a change there would make a failing test vanish and the
run look resolved. Three guards, each sufficient for its route:

* :func:`pinned` puts every configuration file (pytest.ini, .pytest.ini, pytest.toml, .pytest.toml, tox.ini,
  setup.cfg, pyproject.toml, conftest.py - anywhere in the tree) back as the base commit had it while the suite
  runs, whatever the workspace holds, and puts the workspace's own files back afterwards;
* :func:`config_changes` names the changes to test selection that a patch would carry into the user's repository
  (the pytest sections of pyproject.toml and setup.cfg, any change to the other files): a run carrying one is not
  resolved;
* :func:`check_against_baseline` compares the tests that ran with the baseline's: a test that ran before the
  repair and is now missing or skipped (deleted inside a container, skipped by the code under test) makes the run
  not resolved.
"""

from __future__ import annotations

import configparser
import os
import stat
import tomllib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from tools import proc
from tools.testing import TestCase, TestReport
from tools.tree import walk
from tools.workspace import Workspace

__all__ = ["CONFIG_NAMES", "WHOLE_FILE_CONFIGS", "check_against_baseline", "config_changes", "pinned"]

# Files pytest reads its configuration from (in its own search order), and the conftest.py plugins.
CONFIG_NAMES = frozenset(
    {"pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"}
)
# Files that are test configuration through and through: any change to them is a change to the tests.
WHOLE_FILE_CONFIGS = frozenset({"pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "tox.ini", "conftest.py"})
_PINNED = CONFIG_NAMES | {"conftest.py"}
_SKIP_DIRS = frozenset(
    {".git", ".mendloop", "__pycache__", ".venv", "venv", "node_modules", ".tox", ".pytest_cache", ".hypothesis"}
)
_RAN = ("passed", "failed", "error")
_READ_LIMIT = 1_000_000


@dataclass(frozen=True)
class _Base:
    """A configuration file as the base commit holds it: the bytes, or a link's target."""

    data: bytes
    mode: int  # 0o100644, 0o100755 or 0o120000 (a link)


def _base_configs(workspace: Workspace) -> dict[str, _Base]:
    listing = workspace.git.run("ls-tree", "-r", "-z", "--full-tree", workspace.base).stdout
    out: dict[str, _Base] = {}
    for entry in listing.split("\0"):
        meta, _, rel = entry.partition("\t")
        parts = meta.split()
        if len(parts) != 3 or parts[1] != "blob" or PurePosixPath(rel).name not in _PINNED:
            continue
        blob = workspace.git.run("cat-file", "blob", parts[2])
        out[rel] = _Base(proc.encode(blob.stdout), int(parts[0], 8))
    return out


def _tree_configs(root: Path) -> list[str]:
    """Configuration files (and links by those names) in the tree now; links to directories are not entered."""
    return [rel for rel, entry in walk(root, _SKIP_DIRS.__contains__) if entry.name in _PINNED]


def _same(path: Path, want: _Base | None) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return want is None
    if want is None:
        return False
    if stat.S_ISLNK(info.st_mode):
        return want.mode == 0o120000 and os.fsencode(os.readlink(path)) == want.data
    if not stat.S_ISREG(info.st_mode) or want.mode == 0o120000 or info.st_size != len(want.data):
        return False
    return _read(path) == want.data


def _read(path: Path) -> bytes | None:
    """A regular file's bytes, never through a link, ``None`` for anything else or anything big."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > _READ_LIMIT:
            return None
        return handle.read(_READ_LIMIT + 1)


def _write(path: Path, want: _Base) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if want.mode == 0o120000:
        os.symlink(os.fsdecode(want.data), path)
        return
    path.write_bytes(want.data)
    path.chmod(0o755 if want.mode == 0o100755 else 0o644)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        return  # a directory by that name is nothing pytest reads; it stays
    path.unlink(missing_ok=True)


@contextmanager
def pinned(workspace: Workspace) -> Iterator[dict[str, Path | None]]:
    """Hold every test configuration file of ``workspace`` to the base commit while the block runs.

    Yields ``rel -> aside``: each file that differed, and where the workspace's own version waits (``None`` when it
    had none). Afterwards every file is as it was before the block, links and modes included. A directory that
    has a configuration file's name is left alone (pytest only reads files).
    """
    base = _base_configs(workspace)
    root = workspace.root
    aside: dict[str, Path | None] = {}
    try:
        for rel in sorted(set(base) | set(_tree_configs(root))):
            path = root / rel
            if _same(path, base.get(rel)) or (path.is_dir() and not path.is_symlink()):
                continue
            kept: Path | None = None
            if os.path.lexists(path):
                kept = path.with_name(f".{path.name}.mendloop-{uuid.uuid4().hex[:12]}")
                os.rename(path, kept)
            aside[rel] = kept
            if rel in base:
                _write(path, base[rel])
        yield aside
    finally:
        for rel, kept in aside.items():
            _remove(root / rel)
            if kept is not None:
                os.rename(kept, root / rel)


def config_changes(workspace: Workspace, aside: Mapping[str, Path | None]) -> list[str]:
    """What the workspace changed in the tests' configuration, one line each (empty: nothing).

    ``aside`` is what :func:`pinned` yielded. pyproject.toml and setup.cfg count only where they configure pytest;
    every other configuration file counts whole.
    """
    base = _base_configs(workspace)
    changes = []
    for rel, kept in sorted(aside.items()):
        name = PurePosixPath(rel).name
        old = base[rel].data if rel in base and base[rel].mode != 0o120000 else None
        linked = kept is not None and kept.is_symlink()
        new = _read(kept) if kept is not None and not linked else None
        if not linked and name == "pyproject.toml" and _pytest_table(old) == _pytest_table(new):
            continue
        if not linked and name == "setup.cfg" and _cfg_section(old) == _cfg_section(new):
            continue
        changes.append(_describe(rel, name, rel in base, kept))
    return changes


def _describe(rel: str, name: str, in_base: bool, kept: Path | None) -> str:
    what = {"pyproject.toml": f"{rel} [tool.pytest]", "setup.cfg": f"{rel} [tool:pytest]"}.get(name, rel)
    if kept is None:
        return f"{what}: deleted"
    return f"{what}: {'changed' if in_base else 'added'}"


def _pytest_table(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ("unparsable", data)
    tool = document.get("tool", {})
    return tool.get("pytest") if isinstance(tool, dict) else None


def _cfg_section(data: bytes | None) -> Any:
    if data is None:
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(data.decode("utf-8"))
    except (UnicodeDecodeError, configparser.Error):
        return ("unparsable", data)
    sections = {name: dict(parser[name]) for name in ("tool:pytest", "pytest") if parser.has_section(name)}
    return sections or None


def check_against_baseline(report: TestReport, baseline: Mapping[str, Any] | None, config: Sequence[str]) -> TestReport:
    """``report`` with an error case for each change to the tests' configuration and for each test that ran at the
    baseline but not now (missing, or skipped); such a report is never "passed".

    Only a run that produced per-test results is compared (a crash or a timeout is already not resolved).
    """
    cases = list(report.cases)
    lost = _lost_tests(cases, baseline) if report.status in ("passed", "failed") and baseline else {}
    problems = [
        TestCase(
            f"test configuration: {line}",
            "error",
            f"{line}. The tests' configuration is protected like the tests (it decides which tests run); "
            "the suite was run with the original configuration. Put it back as it was and fix the code instead.",
        )
        for line in config
    ]
    if not problems and not lost:
        return report
    kept = [lost.pop(case.id, case) for case in cases]
    status = "failed" if report.status == "passed" else report.status
    return replace(report, status=status, cases=[*problems, *kept, *lost.values()])


def _lost_tests(cases: Sequence[TestCase], baseline: Mapping[str, Any]) -> dict[str, TestCase]:
    """An error case for each test that ran at the baseline and now did not run or was skipped, by id."""
    now = {case.id: case for case in cases}
    lost: dict[str, TestCase] = {}
    for case in baseline.get("cases", []):
        seen = now.get(case.get("id", ""))
        if case.get("outcome") not in _RAN or (seen is not None and seen.outcome in _RAN):
            continue
        how = "was skipped" if seen is not None else "did not run"
        lost[case["id"]] = TestCase(
            case["id"],
            "error",
            f"this test ran before the repair and now {how}: the set of tests may not shrink "
            "(a deleted, deselected or skipped test is not a fix). Fix the code so that it runs and passes.",
        )
    return lost
