"""The example project and the scripted answers that repair it, shared by the end-to-end tests.

Why shared: the README demo, the CLI tests, the sandbox tests and the pre-commit tests all repair the same
``examples/buggy_project``; one definition of the "right" answers keeps them consistent.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "buggy_project"
ISSUE = EXAMPLE / "ISSUE.md"

REPRO_TEST = """from stats import median


def test_median_of_even_count_is_mean_of_middle_pair():
    assert median([4, 1, 3, 2]) == 2.5
"""

SEARCH = """    middle = len(ordered) // 2
    return ordered[middle]
"""
REPLACE = """    middle = len(ordered) // 2
    if len(ordered) % 2 == 0:
        return (ordered[middle - 1] + ordered[middle]) / 2
    return ordered[middle]
"""

CWM_REPRODUCE = (
    "The task says median is wrong for even counts. I will write a test for that.\n</think>\n"
    f"<tool: create>\ntests/test_mendloop_repro.py\n{REPRO_TEST}</tool>"
)
# one tool call per answer, as CWM was trained (a second block in the same answer is a format error)
CWM_FIX = (
    "median returns the upper middle element; for even counts it must average the two middle ones.\n</think>\n"
    f"<tool: edit>\nstats/core.py\n<<<<<<< SEARCH\n{SEARCH}=======\n{REPLACE}>>>>>>> REPLACE\n</tool>"
)
CWM_WRONG_FIX = (
    "Maybe the sort is the problem.\n</think>\n"
    "<tool: edit>\nstats/core.py\n<<<<<<< SEARCH\n    ordered = sorted(values)\n=======\n"
    "    ordered = sorted(values, reverse=True)\n>>>>>>> REPLACE\n</tool>"
)
CWM_NO_EDIT = "I am not sure what to do here.\n</think>\nThe code looks fine to me."

OPENAI_REPRODUCE: dict[str, Any] = {
    "content": None,
    "tool_calls": [{"name": "create", "arguments": {"path": "tests/test_mendloop_repro.py", "content": REPRO_TEST}}],
}
OPENAI_FIX: dict[str, Any] = {
    "content": None,
    "tool_calls": [
        {"name": "edit", "arguments": {"path": "stats/core.py", "search": SEARCH, "replace": REPLACE}},
        {"name": "submit", "arguments": {}},
    ],
}


def make_repo(dest: Path) -> Path:
    """A real git repository holding a copy of the example project, with one commit."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "initial"],
    ):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


def tree_state(path: Path) -> dict[str, bytes]:
    """Every file's bytes (outside .git): to prove a tree was not touched."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(path).parts and "__pycache__" not in p.parts
    }


def assert_patch_repairs(patch_file: Path, tmp_path: Path) -> None:
    """The produced patch applies with plain `git apply` to a pristine copy, and the tests pass there."""
    pristine = make_repo(tmp_path / "pristine-check")
    subprocess.run(["git", "apply", "--check", str(patch_file)], cwd=pristine, check=True)
    subprocess.run(["git", "apply", str(patch_file)], cwd=pristine, check=True)
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=pristine, capture_output=True, text=True
    )
    assert tests.returncode == 0, tests.stdout[-2000:]
