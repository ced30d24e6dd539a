"""examples/batch: the converters make valid batch tasks, and the grader tells a right fix from the bug."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.doors.batch.tasks import read_tasks
from tests.agent.test_batch_support import git

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "batch"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, check=False)


def graded(done: subprocess.CompletedProcess[str]) -> dict[str, bool]:
    assert done.returncode == 0, done.stderr
    return {row["instance_id"]: row["passed"] for row in map(json.loads, done.stdout.splitlines())}


@pytest.mark.parametrize(
    ("kind", "sample", "ids"),
    [
        ("quixbugs", "quixbugs_sample.jsonl", ["quixbugs/flatten", "quixbugs/gcd", "quixbugs/to_base"]),
        ("humanevalfix", "humanevalfix_sample.jsonl", ["humanevalfix/Python/0", "humanevalfix/Python/2"]),
    ],
)
def test_convert_then_grade(tmp_path: Path, kind: str, sample: str, ids: list[str]) -> None:
    dest = tmp_path / kind
    done = run(str(EXAMPLES / "convert.py"), kind, str(EXAMPLES / "sample" / sample), "--dest", str(dest))
    assert done.returncode == 0, done.stderr
    tasks = read_tasks(dest / "tasks.jsonl")  # the batch front door accepts them
    assert sorted(t.instance_id for t in tasks) == ids
    assert all(t.repo_kind == "path" and t.test_cmd and (Path(t.repo) / ".git").is_dir() for t in tasks)

    assert set(graded(run(str(EXAMPLES / "grade.py"), str(dest), "--reference")).values()) == {True}
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert set(graded(run(str(EXAMPLES / "grade.py"), str(dest), str(empty), "--timeout", "5")).values()) == {False}

    # A prediction made the way mendloop makes one (a git diff of the repo) is applied and graded.
    preds = []
    for task in tasks:
        repo = Path(task.repo)
        program = next(p for p in repo.glob("*.py") if not p.name.startswith("test_"))
        slug = repo.name
        program.write_text((dest / "graders" / slug / "reference.py").read_text())
        preds.append({"instance_id": task.instance_id, "model_patch": git(repo, "diff") + "\n"})
        git(repo, "checkout", "--", ".")
    preds[0]["model_patch"] = "not a patch"
    pred_file = tmp_path / "preds.jsonl"
    pred_file.write_text("".join(json.dumps(p) + "\n" for p in preds))
    result = graded(run(str(EXAMPLES / "grade.py"), str(dest), str(pred_file)))
    assert result == {t.instance_id: i != 0 for i, t in enumerate(tasks)}


def test_visible_test_fails_on_the_bug_but_hidden_test_is_not_in_the_repo(tmp_path: Path) -> None:
    dest = tmp_path / "he"
    run(
        str(EXAMPLES / "convert.py"),
        "humanevalfix",
        str(EXAMPLES / "sample" / "humanevalfix_sample.jsonl"),
        "--dest",
        str(dest),
    )
    repo = dest / "repos" / "humanevalfix_Python_0"
    assert sorted(p.name for p in repo.iterdir() if p.name != ".git") == ["solution.py", "test_example.py"]
    hidden = (dest / "graders" / "humanevalfix_Python_0" / "hidden_test.py").read_text()
    assert hidden not in (repo / "test_example.py").read_text()
    visible = subprocess.run([sys.executable, "test_example.py"], cwd=repo, capture_output=True, timeout=30)
    assert visible.returncode != 0, "the buggy program fails its visible test"
