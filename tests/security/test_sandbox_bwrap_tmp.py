"""Finding 5: bwrap runs when mendloop's interpreter lives under /tmp, and ``mendloop doctor`` runs a real command.

Before: the sandbox's fresh /tmp was mounted after the interpreter's bind and hid it, so every command failed with
``execvp ... No such file or directory``; the run reported a test crash (exit 1 after 12 model calls) while
``mendloop doctor`` said all was well.

The interpreter here is real: a virtual environment made under /tmp with ``--copies`` (the python binary itself lives
there), running mendloop.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.security.robust_support import run_cli
from tests.support.example import CWM_FIX, assert_patch_repairs, make_repo
from tests.support.fake_server import ScriptedServer

pytestmark = pytest.mark.bwrap


@pytest.fixture(scope="module")
def tmp_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A python under /tmp that can run mendloop (its packages come from the base interpreter)."""
    venv = tmp_path_factory.mktemp("venv-under-tmp") / "venv"
    assert str(venv).startswith("/tmp/"), "the point is an interpreter under /tmp"
    subprocess.run([sys.executable, "-m", "venv", "--copies", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    assert not python.is_symlink()
    return str(python)


PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sandboxes.base import SandboxSpec
    from sandboxes.bwrap import BwrapSandbox
    box = BwrapSandbox(Path(sys.argv[1]), SandboxSpec(kind="bwrap"))
    try:
        result = box.run("python -c 'import sys; print(sys.executable)'; cat note.txt")
    finally:
        box.close()
    print(result.exit_code, result.output, sep="\\n")
    """
)


def test_bwrap_runs_commands_with_an_interpreter_under_tmp(tmp_python: str, tmp_path: Path) -> None:
    from tests.security.robust_support import cli_env

    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "note.txt").write_text("workspace seen\n")
    done = subprocess.run(
        [tmp_python, "-c", PROBE, str(workspace)], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    code, *output = done.stdout.splitlines()
    assert code == "0", done.stdout
    assert output[0] == tmp_python  # the interpreter under /tmp, inside the sandbox
    assert output[1] == "workspace seen"


def test_a_repair_in_bwrap_from_an_interpreter_under_tmp(tmp_python: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with ScriptedServer({"write": [CWM_FIX]}) as server:
        done = run_cli(
            "solve", "--repo", str(repo), "--task", "median is wrong for even-sized lists", "--no-reproduce",
            "--sandbox", "bwrap", "--out", str(tmp_path / "run"), "--base-url", server.url,
            python=tmp_python,
        )  # fmt: skip
        calls = len(server.nodes())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "execvp" not in done.stderr and calls == 1
    assert "baseline: 3 passed, 1 failed" in done.stderr  # the baseline really ran in the sandbox
    assert_patch_repairs(tmp_path / "run" / "patch.diff", tmp_path)


def test_doctor_runs_python_in_bwrap_from_an_interpreter_under_tmp(tmp_python: str) -> None:
    with ScriptedServer({}) as server:
        done = run_cli("doctor", "--sandbox", "bwrap", "--base-url", server.url, python=tmp_python, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ok  ] bwrap runs a command: ran python 3." in done.stdout
