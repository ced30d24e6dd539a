"""End to end through the CLI as a subprocess, against the real scripted HTTP model server.

These are the acceptance tests of the core loop: the example project is repaired in both dialects, the patch applies
to a pristine copy, faults and budgets end the run the way the user is promised, and a killed run resumes without
asking a finished node again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import start_until
from tests.support.example import (
    CWM_FIX,
    CWM_NO_EDIT,
    CWM_REPRODUCE,
    CWM_WRONG_FIX,
    ISSUE,
    OPENAI_FIX,
    OPENAI_REPRODUCE,
    ROOT,
    assert_patch_repairs,
    make_repo,
    tree_state,
)
from tests.support.fake_server import ScriptedServer

SECRET = "sk-mendloop-canary-7f3a9c"


def run_cli(
    *args: str, env_extra: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MENDLOOP_API_KEY": SECRET, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    for name in ("MENDLOOP_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


def solve_local(repo: Path, url: str, run_dir: Path | str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``mendloop solve`` on ``repo`` against ``url`` in the local sandbox, writing ``run_dir``."""
    return run_cli("solve", "--repo", str(repo), *extra, "--base-url", url, "--sandbox", "local", "--out", str(run_dir))


def assert_no_secret(run_dir: Path, *texts: str) -> None:
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    for text in texts:
        assert SECRET not in text


@pytest.mark.parametrize("dialect", ["cwm", "openai"])
def test_repairs_the_example_project(dialect: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    before = tree_state(repo)
    script = {
        "reproduce": [CWM_REPRODUCE if dialect == "cwm" else OPENAI_REPRODUCE],
        "write": [CWM_FIX if dialect == "cwm" else OPENAI_FIX],
    }
    run_dir = tmp_path / "run"
    with ScriptedServer(script) as server:
        proc = run_cli(
            "solve",
            "--repo",
            str(repo),
            "--issue-file",
            str(ISSUE),
            "--base-url",
            server.url,
            "--dialect",
            dialect,
            "--sandbox",
            "local",
            "--out",
            str(run_dir),
        )
        nodes = server.nodes()
        headers = [r.headers for r in server.requests]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert nodes == ["reproduce", "write"]
    assert all("authorization" not in {k.lower() for k in h} for h in headers)
    for name in ("patch.diff", "report.md", "trajectory.jsonl"):
        assert (run_dir / name).is_file(), name
    patch = (run_dir / "patch.diff").read_text()
    assert "stats/core.py" in patch and "test_mendloop_repro" not in patch  # generated tests left out
    assert_patch_repairs(run_dir / "patch.diff", tmp_path)
    report = (run_dir / "report.md").read_text()
    assert "**Status:** resolved" in report and "tests/test_mendloop_repro.py" in report
    assert tree_state(repo) == before  # the user's tree is untouched without --apply
    assert_no_secret(run_dir, proc.stdout, proc.stderr)


def test_apply_writes_the_fix_to_the_repo(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with ScriptedServer({"write": [CWM_FIX]}) as server:
        proc = solve_local(
            repo,
            server.url,
            str(tmp_path / "run"),
            "--task",
            "median is wrong for even counts",
            "--no-reproduce",
            "--apply",
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ordered[middle - 1]" in (repo / "stats" / "core.py").read_text()


def test_feedback_round_after_a_wrong_fix(tmp_path: Path) -> None:
    """Round 1 fails; round 2 is told which test fails (with its trace) and fixes it."""
    repo = make_repo(tmp_path / "repo")
    with ScriptedServer({"write": [CWM_WRONG_FIX, CWM_FIX]}) as server:
        proc = solve_local(
            repo, server.url, str(tmp_path / "run"), "--task", "median is wrong for even counts", "--no-reproduce"
        )
        second = server.requests[-1].body["messages"][-1]["content"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test_median_even" in second
    assert "<|call_sep|>" in second  # CWM-format execution trace of the failing call
    assert "| 2 |" in (tmp_path / "run" / "report.md").read_text()


def test_answer_without_edit_is_an_observation(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with ScriptedServer({"write": [CWM_NO_EDIT, CWM_FIX]}) as server:
        proc = solve_local(
            repo, server.url, str(tmp_path / "run"), "--task", "median is wrong for even counts", "--no-reproduce"
        )
        chats = [r for r in server.requests if r.path.endswith("/chat/completions")]  # not GET /v1/models
        second = chats[1].body["messages"][-1]["content"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert second == "FormatError: No tool calls found"  # as CWM's environment said it (protocol strict)


def test_unreachable_endpoint_exits_2_with_one_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    before = tree_state(repo)
    proc = solve_local(repo, "http://127.0.0.1:9/v1", str(tmp_path / "run"), "--task", "fix median")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mendloop: error:")]
    assert len(errors) == 1 and "cannot reach" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert tree_state(repo) == before
    assert_no_secret(tmp_path / "run", proc.stderr)


def test_budget_of_two_calls_stops_after_two(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with ScriptedServer({"reproduce": [CWM_REPRODUCE], "write": [CWM_WRONG_FIX]}) as server:
        proc = solve_local(
            repo, server.url, str(tmp_path / "run"), "--task", "median is wrong for even counts", "--max-calls", "2"
        )
        calls = len(server.nodes())
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert calls == 2
    report = (tmp_path / "run" / "report.md").read_text()
    assert "**Why:** stopped early: model call budget spent: 2 of 2 calls made" in report
    assert "**Status:** unresolved" in report


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repo", "/nonexistent/mendloop-repo", "--task", "x"], "does not exist"),
        (["--repo", str(ISSUE), "--task", "x"], "not a directory"),
        (["--repo", ".", "--task", "   "], "task is empty"),
        (["--repo", ".", "--issue-file", "/nonexistent/issue.md"], "does not exist"),
        (["--task", "x"], "--repo"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = run_cli(
        "solve", *args, "--base-url", "http://127.0.0.1:9/v1", "--sandbox", "local", "--out", str(tmp_path / "run")
    )
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_missing_test_command_is_a_clear_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    before = tree_state(repo)
    with ScriptedServer({"write": [CWM_FIX]}) as server:
        proc = solve_local(
            repo, server.url, str(tmp_path / "run"), "--task", "fix median", "--test-cmd", "no-such-test-runner -q"
        )
        assert server.nodes() == []
    assert proc.returncode == 2
    assert "no-such-test-runner" in proc.stderr and "Traceback" not in proc.stderr
    assert tree_state(repo) == before


def test_non_utf8_source_file_does_not_crash(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "stats" / "legacy.py").write_bytes(b"# caf\xe9 in latin-1\nX = 1\n")
    with ScriptedServer({"write": [CWM_FIX]}) as server:
        proc = solve_local(
            repo, server.url, str(tmp_path / "run"), "--task", "median is wrong for even counts", "--no-reproduce"
        )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_sigterm_then_resume_asks_no_finished_node_again(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    run_dir = tmp_path / "run"
    script = {"reproduce": [CWM_REPRODUCE], "write": [{"content": CWM_FIX, "delay": 30}, CWM_FIX]}
    with ScriptedServer(script) as server:
        args = ["solve", "--repo", str(repo), "--task", "median is wrong for even counts"]
        args += ["--base-url", server.url, "--sandbox", "local", "--out", str(run_dir)]
        proc = start_until(args, server, node="write", env={"MENDLOOP_API_KEY": SECRET})
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-3000:]
        assert "--resume" in err
        assert not (run_dir / "patch.diff").exists()
        resumed = run_cli("solve", "--resume", str(run_dir), "--base-url", server.url)
        nodes = server.nodes()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert nodes.count("reproduce") == 1  # finished before the kill: not asked again
    assert nodes == ["reproduce", "write", "write"]  # only the interrupted write is asked again
    assert_patch_repairs(run_dir / "patch.diff", tmp_path)


def test_missing_test_runner_stops_before_any_model_call(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with ScriptedServer({"write": [CWM_FIX]}) as server:
        proc = solve_local(
            repo, server.url, str(tmp_path / "run"), "--task", "fix median", "--test-cmd", "python -m no_such_runner_x"
        )
        assert server.nodes() == []
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "cannot run in the sandbox" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_counts_calls_of_the_interrupted_node(tmp_path: Path) -> None:
    """The budget goes on counting across an interruption: answered calls of the killed node, and time worked."""
    repo = make_repo(tmp_path / "repo")
    run_dir = tmp_path / "run"
    script = {"write": [CWM_NO_EDIT, {"content": CWM_FIX, "delay": 30}, CWM_NO_EDIT, CWM_FIX]}
    with ScriptedServer(script) as server:
        args = ["solve", "--repo", str(repo), "--task", "median is wrong", "--no-reproduce"]
        args += ["--base-url", server.url, "--sandbox", "local", "--out", str(run_dir)]
        # the first write turn was answered; the second is in flight
        proc = start_until(args, server, node="write", count=2, env={"MENDLOOP_API_KEY": SECRET})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        assert json.loads((run_dir / "run.json").read_text())["elapsed"] > 0
        resumed = run_cli("solve", "--resume", str(run_dir), "--base-url", server.url)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # answered: write turn 1 before the kill, then both turns of the resumed write (the killed request never was)
    assert "**model calls:** 3" in (run_dir / "report.md").read_text()
