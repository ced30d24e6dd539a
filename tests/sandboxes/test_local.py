"""LocalSandbox: no isolation, but the same timeout, output-cap and environment rules, through real processes."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from sandboxes._proc import CappedBuffer
from sandboxes.base import SandboxError, SandboxSpec
from sandboxes.local import LocalSandbox
from tests.sandboxes.conftest import OpenSandbox


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_timeout_kills_grandchildren(open_sandbox: OpenSandbox, workspace: Path):
    box = open_sandbox("local")
    script = "sh -c 'sleep 60 & echo $! > grandchild.pid; wait' & sleep 60"
    res = box.run(script, timeout=1)
    assert res.timed_out and res.exit_code == 137
    pid = int((workspace / "grandchild.pid").read_text())
    deadline = time.time() + 5
    while not _gone(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert _gone(pid), f"grandchild {pid} survived the timeout"


def test_background_processes_die_with_the_command(open_sandbox: OpenSandbox, workspace: Path):
    box = open_sandbox("local")
    res = box.run("sleep 60 & echo $! > bg.pid; echo started", timeout=10)
    assert res.ok and res.duration < 5 and "started" in res.output
    pid = int((workspace / "bg.pid").read_text())
    deadline = time.time() + 5
    while not _gone(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert _gone(pid)


def test_output_is_capped_head_and_tail(open_sandbox: OpenSandbox):
    box = open_sandbox("local", output_bytes=1000)
    res = box.run(["python", "-c", "print('HEAD' + 'a' * 20000 + 'TAIL')"])
    assert res.truncated
    assert res.output.startswith("HEAD") and res.output.rstrip().endswith("TAIL")
    assert len(res.output) <= 1100
    assert "bytes of output dropped" in res.output
    small = box.run("echo small")
    assert not small.truncated and small.output == "small\n"


def test_capped_buffer_counts_what_it_drops():
    buf = CappedBuffer(10)
    for chunk in (b"0123", b"456789", b"abcdef", b"XYZ"):
        buf.feed(chunk)
    assert buf.total == 19 and buf.truncated
    text = buf.text()
    assert text.startswith("01234") and text.endswith("efXYZ") and "9 bytes" in text


def test_environment_is_minimal(open_sandbox: OpenSandbox, monkeypatch: pytest.MonkeyPatch):
    token = uuid.uuid4().hex
    monkeypatch.setenv("GITHUB_TOKEN", token)
    box = open_sandbox("local", env={"FROM_LIMITS": "1"})
    res = box.run("env", env={"FROM_CALL": "2"})
    names = {line.split("=", 1)[0] for line in res.output.splitlines() if "=" in line}
    assert token not in res.output
    assert {"PATH", "HOME", "LANG", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "FROM_LIMITS", "FROM_CALL"} <= names
    assert names <= {"PATH", "HOME", "LANG", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "FROM_LIMITS"} | {
        "FROM_CALL",
        "PWD",
        "SHLVL",
        "_",
    }
    home = box.run("echo $HOME").output.strip()
    assert home != os.environ.get("HOME") and Path(home).is_dir()


def test_memory_limit_marks_oom(open_sandbox: OpenSandbox):
    box = open_sandbox("local", memory_mb=256)
    res = box.run(["python", "-c", "b = b'x' * (1024 ** 3)"])
    assert res.oom and not res.ok and res.describe() == "killed for exceeding the memory limit"
    plain = box.run(["python", "-c", "raise SystemExit(1)"])
    assert not plain.oom and plain.exit_code == 1


def test_argv_is_not_shell_interpreted(open_sandbox: OpenSandbox, workspace: Path):
    box = open_sandbox("local")
    res = box.run(["python", "-c", "import sys, os; print(sys.argv[1:], os.getcwd())", "$HOME; echo x"])
    assert "['$HOME; echo x']" in res.output
    assert str(workspace.resolve()) in res.output


def test_put_and_get_stay_inside_the_workspace(open_sandbox: OpenSandbox, workspace: Path, tmp_path: Path):
    box = open_sandbox("local")
    box.put({"pkg/new.py": b"x = 1\n"})
    assert (workspace / "pkg" / "new.py").read_bytes() == b"x = 1\n"
    assert box.get("pkg/new.py") == b"x = 1\n"
    (workspace / "link").symlink_to(tmp_path)
    for bad in ("../escape.txt", "/etc/passwd", "link/escape.txt", ""):
        with pytest.raises(SandboxError):
            box.put({bad: b"no"})
    assert not (tmp_path / "escape.txt").exists()
    with pytest.raises(SandboxError):
        box.get("../ws/../secret")
    with pytest.raises(FileNotFoundError):
        box.get("missing.txt")


def test_setup_runs_once_and_failure_raises(workspace: Path):
    box = LocalSandbox(workspace, SandboxSpec(kind="local", setup=("echo run >> setup.log",)))
    box.run("true")
    assert (workspace / "setup.log").read_text() == "run\n"
    box.close()
    box.close()  # idempotent
    with pytest.raises(SandboxError, match="closed"):
        box.run("true")
    with pytest.raises(SandboxError, match="setup failed") as err:
        LocalSandbox(workspace, SandboxSpec(kind="local", setup=("echo broken-dependency; exit 3",)))
    assert "broken-dependency" in str(err.value) and "exit code 3" in str(err.value)
