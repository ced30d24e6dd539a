"""``mendloop batch`` end to end: the real repair loop, the scripted model server, real git repos, the CLI as a
subprocess that is killed halfway and run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agent.test_batch_support import FIX_REPLY, make_repo, read_jsonl, worker_env, write_tasks
from tests.support.fake_server import ScriptedServer

SCRIPT_TEST = "from calc import add\n\nassert add(2, 3) == 5, 'add is wrong'\n"
HANGING_SCRIPT = "import time\n\ntime.sleep(600)\n"


def make_tasks(tmp: Path, n: int, *, hanging: int | None = None) -> Path:
    """``n`` tiny repos with the same bug (one scripted reply fixes all); task ``hanging`` has tests that hang."""
    rows = []
    for i in range(n):
        test = HANGING_SCRIPT if i == hanging else SCRIPT_TEST
        make_repo(tmp / "repos" / f"r{i:02d}", {"calc.py": "def add(a, b):\n    return a - b\n", "check.py": test})
        rows.append(
            {
                "instance_id": f"calc-{i:02d}",
                "repo": f"repos/r{i:02d}",
                "task": "add() subtracts",
                "test_cmd": "python check.py",
            }
        )
    return write_tasks(tmp / "tasks.jsonl", rows)


def cli(tasks: Path, out: Path, url: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agent.cli.batch",
        str(tasks),
        "--out",
        str(out),
        "--workers",
        "2",
        "--base-url",
        url,
        "--sandbox",
        "local",
        "--no-reproduce",
        "--max-iterations",
        "2",
        "--command-timeout",
        "4",
        "--no-progress",
        *extra,
    ]


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc), zombies excluded."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.add(pid)
        except OSError:
            pass
    return out


@pytest.fixture
def server() -> ScriptedServer:
    srv = ScriptedServer({"write": [FIX_REPLY]}).start()
    yield srv  # type: ignore[misc]
    srv.stop()


@pytest.mark.slow
def test_killed_batch_resumes_and_lists_every_task_once(tmp_path: Path, server: ScriptedServer) -> None:
    tasks = make_tasks(tmp_path, 20, hanging=7)
    out = tmp_path / "out"
    env = {**worker_env(), "MENDLOOP_API_KEY": "sk-test-key-123"}
    first = subprocess.Popen(cli(tasks, out, server.url), env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        if (out / "results.jsonl").exists() and len((out / "results.jsonl").read_text().splitlines()) >= 4:
            break
        time.sleep(0.2)
    assert first.poll() is None, (
        f"the batch ended before it could be killed: {first.stderr.read() if first.stderr else ''}"
    )
    family = descendants(first.pid)
    assert family, "tasks run in processes of their own"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    deadline = time.monotonic() + 10
    while alive(family) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(family), "a killed batch leaves no task running"
    done_before = len(read_jsonl(out / "results.jsonl"))
    assert 4 <= done_before < 20

    rerun = subprocess.run(cli(tasks, out, server.url), env=env, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipping {done_before} finished task(s)" in rerun.stderr
    preds = read_jsonl(out / "preds.jsonl")
    ids = [p["instance_id"] for p in preds]
    assert sorted(ids) == [f"calc-{i:02d}" for i in range(20)], "every instance_id exactly once"
    results = {r["instance_id"]: r for r in read_jsonl(out / "results.jsonl")}
    assert len(results) == 20
    assert results["calc-07"]["status"] in ("unresolved", "error")
    assert all(r["status"] == "resolved" for k, r in results.items() if k != "calc-07"), results
    fixed = next(p for p in preds if p["instance_id"] == "calc-03")
    assert "+    return a + b" in fixed["model_patch"] and fixed["model_name_or_path"] == "facebook/cwm"
    for i in range(20):  # the user's repos are never touched
        assert "a - b" in (tmp_path / "repos" / f"r{i:02d}" / "calc.py").read_text()
    assert (out / "runs" / "calc-03" / "trajectory.jsonl").is_file()
    report = (out / "report.md").read_text()
    assert "tasks: 20 (resolved 19" in report
    assert "ran " in rerun.stderr and "resolved 19" in rerun.stderr


def test_malformed_line_is_reported_before_any_task_runs(tmp_path: Path, server: ScriptedServer) -> None:
    tasks = make_tasks(tmp_path, 3)
    lines = tasks.read_text().splitlines()
    lines.insert(2, '{"instance_id": "broken", "repo": "repos/r00", "task": ')
    tasks.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        cli(tasks, tmp_path / "out", server.url), env=worker_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert f"{tasks}:3: not valid JSON" in done.stderr
    assert "nothing was run" in done.stderr
    assert not (tmp_path / "out").exists() and server.requests == []


def test_sigterm_stops_the_batch_and_its_tasks(tmp_path: Path) -> None:
    slow = ScriptedServer({"write": [FIX_REPLY]}, latency=60).start()
    try:
        tasks = make_tasks(tmp_path, 3)
        out = tmp_path / "out"
        proc = subprocess.Popen(cli(tasks, out, slow.url), env=worker_env(), stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(slow.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(slow.requests) >= 2, "two tasks are waiting on the model"
        family = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.returncode == 130
        assert proc.stderr is not None and "run the same command again to resume" in proc.stderr.read()
        deadline = time.monotonic() + 10
        while alive(family) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(family)
        assert read_jsonl(out / "results.jsonl") == [] if (out / "results.jsonl").exists() else True
    finally:
        slow.stop()


def test_help_lists_batch_and_shared_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli.batch", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
    )
    assert done.returncode == 0
    for flag in (
        "--workers",
        "--executor",
        "--ray-address",
        "--filter",
        "--limit",
        "--shuffle",
        "--redo",
        "--task-timeout",
        "--base-url",
        "--model",
        "--dialect",
        "--sandbox",
        "--image",
        "--max-iterations",
    ):
        assert flag in done.stdout, flag
