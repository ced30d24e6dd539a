"""Isolation: a task that crashes, hangs, raises or hits an infrastructure error never stops the others.

These drive the real worker processes and executor with a stand-in repair (tests/agent/test_batch_support.py) so
each failure mode is deterministic and fast; tests/agent/test_batch_e2e.py runs the real repair loop.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.config import Settings
from agent.doors.batch.run import BatchOptions, run_batch
from tests.agent.test_batch_support import STANDIN, make_repo, read_jsonl, worker_env, write_tasks


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return status != "Z"


def test_failures_stay_inside_their_task(tmp_path: Path) -> None:
    kinds = {
        "good-1": "fix it",
        "good-2": "fix it",
        "crash": "crash",
        "hang": "hang",
        "flaky-endpoint": "fatal:1",
        "endpoint-down": "fatal:9",
        "bug": "boom",
    }
    rows = []
    for name, text in kinds.items():
        make_repo(tmp_path / name)
        rows.append({"instance_id": name, "repo": name, "task": text})
    tasks = write_tasks(tmp_path / "tasks.jsonl", rows)
    out = tmp_path / "out"
    options = BatchOptions(
        out=out, workers=2, task_timeout=4.0, retries=1, retry_backoff=0.05, solve_target=STANDIN, progress=False
    )
    summary = run_batch(tasks, Settings(model="scripted", api_key="sk-very-secret"), options)

    results = {r["instance_id"]: r for r in read_jsonl(out / "results.jsonl")}
    assert {k: (v["status"], v["attempts"]) for k, v in results.items()} == {
        "good-1": ("resolved", 1),
        "good-2": ("resolved", 1),
        "crash": ("error", 2),  # a crash is retried, then recorded
        "hang": ("error", 1),  # a timeout is not retried
        "flaky-endpoint": ("resolved", 2),  # one FatalError, then it worked
        "endpoint-down": ("error", 2),
        "bug": ("error", 1),  # a plain exception is a bug: not retried
    }
    assert "timed out after 4s" in results["hang"]["error"]
    assert "endpoint down (attempt 2)" in results["endpoint-down"]["error"]
    assert "RuntimeError: a bug in the repair" in results["bug"]["error"]
    assert "worker exited 3" in results["crash"]["error"]
    child = int((tmp_path / "hang" / ".child").read_text())
    assert not _alive(child), "the hanging task's child process must be killed with it"

    preds = read_jsonl(out / "preds.jsonl")
    assert sorted(p["instance_id"] for p in preds) == sorted(kinds)
    good = next(p for p in preds if p["instance_id"] == "good-1")
    assert good["model_name_or_path"] == "scripted" and "+    return a + b" in good["model_patch"]
    assert all(p["model_patch"] == "" for p in preds if results[p["instance_id"]]["status"] == "error")
    assert (summary.this_run.resolved, summary.this_run.error) == (3, 4)
    report = (out / "report.md").read_text()
    assert "resolved 3, unresolved 0, error 4" in report and "| hang | error |" in report
    assert (out / "runs" / "good-1" / "patch.diff").is_file()
    assert (out / "runs" / "good-1" / "key_seen").read_text() == "yes", "the worker gets the key in memory"
    on_disk = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    assert on_disk and not any(b"sk-very-secret" in data for data in on_disk), "the key never reaches the disk"


def test_rerun_skips_finished_and_redo_forces(tmp_path: Path) -> None:
    rows = []
    for name in ("a", "b", "c"):
        make_repo(tmp_path / name)
        rows.append({"instance_id": name, "repo": name, "task": "crash" if name == "c" else "fix"})
    tasks = write_tasks(tmp_path / "tasks.jsonl", rows)
    options = BatchOptions(out=tmp_path / "out", retries=0, solve_target=STANDIN, progress=False)
    run_batch(tasks, Settings(), options)
    again = run_batch(tasks, Settings(), options)
    assert (again.skipped, again.ran) == (3, 0)
    retried = run_batch(tasks, Settings(), BatchOptions(**{**options.__dict__, "retry_errors": True}))
    assert (retried.skipped, retried.ran) == (2, 1)
    redo = run_batch(tasks, Settings(), BatchOptions(**{**options.__dict__, "redo": True, "pattern": "^a$"}))
    assert (redo.selected, redo.ran) == (1, 1)
    for name in ("preds.jsonl", "results.jsonl"):
        ids = [r["instance_id"] for r in read_jsonl(tmp_path / "out" / name)]
        assert sorted(ids) == ["a", "b", "c"], name
    assert int((tmp_path / "a" / ".attempts").read_text()) == 2


def test_swebench_slug_is_cloned_from_repos_dir_at_base_commit(tmp_path: Path) -> None:
    mirror = tmp_path / "mirrors" / "acme__calc"
    base = make_repo(mirror)
    (mirror / "calc.py").write_text("def add(a, b):\n    return a * b\n")
    from tests.agent.test_batch_support import git

    git(mirror, "commit", "-qam", "later change")
    rows = [
        {
            "instance_id": "acme__calc-1",
            "repo": "acme/calc",
            "base_commit": base,
            "problem_statement": "fix add",
            "FAIL_TO_PASS": '["test_calc.py::test_add"]',
            "PASS_TO_PASS": "[]",
        },
        {"instance_id": "acme__other-1", "repo": "acme/other", "problem_statement": "x"},
    ]
    tasks = write_tasks(tmp_path / "tasks.jsonl", rows)
    options = BatchOptions(
        out=tmp_path / "out", retries=0, repos_dir=tmp_path / "mirrors", solve_target=STANDIN, progress=False
    )
    run_batch(tasks, Settings(), options)
    results = {r["instance_id"]: r for r in read_jsonl(tmp_path / "out" / "results.jsonl")}
    assert results["acme__calc-1"]["status"] == "resolved"
    clone = tmp_path / "out" / "runs" / "acme__calc-1" / "repo"
    assert "a - b" in (clone / "calc.py").read_text(), "the clone must be at base_commit"
    assert "a * b" in (mirror / "calc.py").read_text(), "the mirror is never touched"
    assert results["acme__other-1"]["status"] == "error"
    assert "give --repos-dir with a local mirror or --repo-url" in results["acme__other-1"]["error"]
