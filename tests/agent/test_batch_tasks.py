"""Batch input: both task shapes parse, and every bad line is reported with its number before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.doors.batch.tasks import BatchInputError, read_tasks, run_dir_name, select_tasks
from tests.agent.test_batch_support import make_repo, write_tasks


def test_swebench_instance_with_json_encoded_lists(tmp_path: Path) -> None:
    row = {
        "instance_id": "astropy__astropy-12907",
        "repo": "astropy/astropy",
        "base_commit": "d16bfe05a744909de4b27f5875fe0d4ed41ce607",
        "problem_statement": "separability_matrix is wrong",
        "FAIL_TO_PASS": json.dumps(["tests/test_sep.py::test_nested"]),
        "PASS_TO_PASS": ["tests/test_sep.py::test_simple"],
        "image_name": "sweb.eval.x86_64.astropy",
        "patch": "diff --git ...",  # extra SWE-bench fields are ignored
        "hints_text": "",
    }
    [task] = read_tasks(write_tasks(tmp_path / "t.jsonl", [row]))
    assert task.repo_kind == "slug" and task.repo == "astropy/astropy"
    assert task.fail_to_pass == ["tests/test_sep.py::test_nested"]
    assert task.pass_to_pass == ["tests/test_sep.py::test_simple"]
    assert task.image == "sweb.eval.x86_64.astropy"
    assert task.base_commit and task.text == "separability_matrix is wrong"


def test_mendloop_form_resolves_relative_paths_and_urls(tmp_path: Path) -> None:
    make_repo(tmp_path / "proj")
    rows = [
        {
            "instance_id": "a",
            "repo": "proj",
            "task": "fix it",
            "test_cmd": "pytest -x",
            "setup": "pip install -e .",
            "image": "img:1",
        },
        {"instance_id": "b", "repo": "https://example.invalid/x/y.git", "task": "fix", "setup": ["a", "b"]},
    ]
    a, b = read_tasks(write_tasks(tmp_path / "t.jsonl", rows))
    assert (a.repo_kind, a.repo) == ("path", str((tmp_path / "proj").resolve()))
    assert a.setup == ["pip install -e ."] and a.test_cmd == "pytest -x" and a.image == "img:1"
    assert b.repo_kind == "url" and b.setup == ["a", "b"]


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    make_repo(tmp_path / "proj")
    good = json.dumps({"instance_id": "ok", "repo": "proj", "task": "t"})
    lines = [
        good,
        "{not json",
        json.dumps({"instance_id": "x", "repo": "proj"}),
        "",
        json.dumps({"instance_id": "y", "repo": "no/such/dir/here", "task": "t"}),
        json.dumps({"instance_id": "ok", "repo": "proj", "task": "again"}),
        json.dumps({"instance_id": "z", "repo": "proj", "task": "t", "FAIL_TO_PASS": "[oops"}),
        json.dumps(["a", "list"]),
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BatchInputError) as info:
        read_tasks(path)
    message = info.value.message
    assert f"{path}:2: not valid JSON" in message
    assert f"{path}:3: missing 'problem_statement'" in message
    assert f"{path}:5: repo 'no/such/dir/here'" in message
    assert f"{path}:6: duplicate instance_id 'ok' (first on line 1)" in message
    assert f"{path}:7: 'FAIL_TO_PASS' is a string but not a JSON-encoded list" in message
    assert f"{path}:8: expected a JSON object" in message
    assert ":1:" not in message and ":4:" not in message
    assert info.value.exit_code == 2


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("\n\n")
    with pytest.raises(BatchInputError, match="holds no tasks"):
        read_tasks(path)


def test_select_filters_then_shuffles_reproducibly_then_limits(tmp_path: Path) -> None:
    make_repo(tmp_path / "proj")
    rows = [{"instance_id": f"{'keep' if i % 2 else 'drop'}-{i}", "repo": "proj", "task": "t"} for i in range(20)]
    tasks = read_tasks(write_tasks(tmp_path / "t.jsonl", rows))
    first = [t.instance_id for t in select_tasks(tasks, pattern="^keep", shuffle=True, seed=7, limit=4)]
    again = [t.instance_id for t in select_tasks(tasks, pattern="^keep", shuffle=True, seed=7, limit=4)]
    assert first == again and len(first) == 4 and all(i.startswith("keep") for i in first)
    assert [t.instance_id for t in select_tasks(tasks, limit=2)] == ["drop-0", "keep-1"]
    with pytest.raises(BatchInputError, match="not a valid regular expression"):
        select_tasks(tasks, pattern="(")


def test_run_dir_names_are_safe_and_distinct() -> None:
    assert run_dir_name("calc-01") == "calc-01"
    a, b = run_dir_name("Python/0"), run_dir_name("Python_0")
    assert "/" not in a and a != b and a.startswith("Python_0-")
    assert run_dir_name("..") not in ("..", ".", "")
