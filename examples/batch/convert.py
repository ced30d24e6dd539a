"""Turn QuixBugs or HumanEvalFix JSONL into a ``mendloop batch`` tasks file: one tiny git repo per task.

    python examples/batch/convert.py quixbugs ../shared/bench/data/quixbugs_python.jsonl --dest /tmp/qb
    mendloop batch /tmp/qb/tasks.jsonl --out /tmp/qb-run --base-url URL --workers 2 --command-timeout 20
    python examples/batch/grade.py /tmp/qb /tmp/qb-run/preds.jsonl

Why a repo per task: that is what ``mendloop batch`` repairs, so any endpoint can be measured with the product's own
front door. Why a separate grader: the agent sees only the *visible* test; grading runs the *hidden* one on the
patched program. For HumanEvalFix the visible test is ``example_test`` and the hidden one is ``test`` (showing
``test`` to the model would make grading circular); for QuixBugs both are the shipped tests (weak in a few tasks).
Both datasets have programs that loop forever when buggy (QuixBugs bitcount, sqrt, find_first_in_sorted;
HumanEvalFix Python/10): always run with ``--command-timeout`` and grade with a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "convert",
    "GIT_AUTHOR_EMAIL": "convert@localhost",
    "GIT_COMMITTER_NAME": "convert",
    "GIT_COMMITTER_EMAIL": "convert@localhost",
}


@dataclass
class Converted:
    """One task: the files of its repo, the hidden grader, and the batch line."""

    instance_id: str
    program_file: str
    files: dict[str, str]  # the repo the agent repairs (program + visible test)
    hidden_test: str  # run as a script next to the patched program; exit 0 = correct
    reference: str  # the fixed program, to check the conversion itself
    task: str
    test_cmd: str


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def quixbugs(row: dict[str, Any]) -> Converted:
    name = row["name"]
    program = f"{name}.py"
    # The shipped tests are plain statements run after the program, in its namespace: import it wholesale.
    test = f"from {name} import *  # noqa: F403\n\n{row['tests']}\n"
    docstring = row.get("docstring", "").strip().strip('"').strip()
    text = (
        f"The function `{name}` in `{program}` has a one-line bug. It should do what this says:\n\n"
        f"{docstring}\n\nFix the bug; `python test_{name}.py` must pass."
    )
    return Converted(
        instance_id=f"quixbugs/{name}",
        program_file=program,
        files={program: row["buggy_program"].rstrip() + "\n", f"test_{name}.py": test},
        hidden_test=test,
        reference=row["solution"].rstrip() + "\n",
        task=text,
        test_cmd=f"python test_{name}.py",
    )


def humanevalfix(row: dict[str, Any]) -> Converted:
    entry = row["entry_point"]
    program = "solution.py"
    visible = row.get("example_test", "").strip()
    visible_test = f"from solution import *  # noqa: F403\n\n{visible}\n" if visible else "import solution  # noqa\n"
    hidden = f"from solution import *  # noqa: F403\n\n{row['test']}\n"
    text = (
        f"Fix the bug in `{entry}` in `{program}`. It should do what its docstring says:\n\n"
        f"{row.get('docstring', '').strip()}\n\n`python test_example.py` must pass."
    )
    return Converted(
        instance_id=f"humanevalfix/{row['task_id']}",
        program_file=program,
        files={program: row["declaration"] + row["buggy_solution"], "test_example.py": visible_test},
        hidden_test=hidden,
        reference=row["declaration"] + row["canonical_solution"],
        task=text,
        test_cmd="python test_example.py",
    )


CONVERTERS = {"quixbugs": quixbugs, "humanevalfix": humanevalfix}


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **_GIT_ENV}, check=True, capture_output=True)


def write_task(item: Converted, dest: Path) -> dict[str, Any]:
    """Create the repo and the hidden grader; return the batch line (``repo`` relative to the tasks file)."""
    slug = _slug(item.instance_id)
    repo = dest / "repos" / slug
    repo.mkdir(parents=True)
    for name, text in item.files.items():
        (repo / name).write_text(text, encoding="utf-8")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "buggy program")
    grader = dest / "graders" / slug
    grader.mkdir(parents=True)
    (grader / "hidden_test.py").write_text(item.hidden_test, encoding="utf-8")
    (grader / "reference.py").write_text(item.reference, encoding="utf-8")
    (grader / "meta.json").write_text(json.dumps({"instance_id": item.instance_id, "program": item.program_file}))
    return {"instance_id": item.instance_id, "repo": f"repos/{slug}", "task": item.task, "test_cmd": item.test_cmd}


def read_rows(path: Path, limit: int | None) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for count, line in enumerate(handle):
            if limit is not None and count >= limit:
                return
            if line.strip():
                yield json.loads(line)


def convert(kind: str, source: Path, dest: Path, limit: int | None = None) -> Path:
    """Write ``dest/tasks.jsonl``, ``dest/repos/*`` and ``dest/graders/*``; returns the tasks file."""
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"{dest} is not empty; choose a new --dest")
    dest.mkdir(parents=True, exist_ok=True)
    lines = [write_task(CONVERTERS[kind](row), dest) for row in read_rows(source, limit)]
    tasks = dest / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(CONVERTERS))
    parser.add_argument("source", type=Path, help="the dataset's JSONL file")
    parser.add_argument("--dest", type=Path, required=True, help="new directory for tasks.jsonl, repos/, graders/")
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N tasks")
    args = parser.parse_args(argv)
    tasks = convert(args.kind, args.source, args.dest, args.limit)
    print(f"wrote {sum(1 for _ in tasks.open())} tasks to {tasks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
