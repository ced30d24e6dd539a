"""The core loop's end-to-end repair through the real isolating backends (bubblewrap and Docker), and cleanup.

Why separate from the local-sandbox tests: these prove that the whole loop - baseline, reproduction test, edit,
verification, traces and the pristine re-check - works when every command crosses an isolation boundary, and that a
run leaves no container behind, whether it ends normally or by Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import start_until
from tests.support.example import CWM_FIX, CWM_REPRODUCE, CWM_WRONG_FIX, ISSUE, ROOT, assert_patch_repairs, make_repo
from tests.support.fake_server import ScriptedServer

IMAGE = os.environ.get("MENDLOOP_TEST_IMAGE", "mendloop-base:bookworm")
BACKENDS = [
    pytest.param("bwrap", marks=pytest.mark.bwrap, id="bwrap"),
    pytest.param("docker", marks=pytest.mark.docker, id="docker"),
]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli.main", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def mendloop_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", "label=mendloop"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


@pytest.mark.parametrize("backend", BACKENDS)
def test_end_to_end_repair_in_sandbox(backend: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    run_dir = tmp_path / "run"
    script = {"reproduce": [CWM_REPRODUCE], "write": [CWM_WRONG_FIX, CWM_FIX]}
    with ScriptedServer(script) as server:
        proc = subprocess.run(
            cli(
                "solve",
                "--repo",
                str(repo),
                "--issue-file",
                str(ISSUE),
                "--base-url",
                server.url,
                "--sandbox",
                backend,
                "--image",
                IMAGE,
                "--out",
                str(run_dir),
            ),
            capture_output=True,
            text=True,
            env=env(),
            timeout=600,
            cwd=ROOT,
        )
        second_write = server.requests[-1].body["messages"][-1]["content"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "<|call_sep|>" in second_write  # the trace was recorded inside the sandbox
    patch = (run_dir / "patch.diff").read_text()
    assert "ordered[middle - 1]" in patch
    assert_patch_repairs(run_dir / "patch.diff", tmp_path)
    if backend == "docker":
        assert mendloop_containers() == []


@pytest.mark.docker
def test_sigint_mid_run_leaves_no_container(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    script = {"write": [{"content": CWM_FIX, "delay": 60}]}
    with ScriptedServer(script) as server:
        args = ["solve", "--repo", str(repo), "--task", "median is wrong for even counts", "--no-reproduce"]
        args += ["--base-url", server.url, "--sandbox", "docker", "--image", IMAGE, "--out", str(tmp_path / "run")]
        proc = start_until(args, server, node="write")
        assert mendloop_containers(), "the run should have a live container while it waits for the model"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    deadline = time.monotonic() + 20
    while mendloop_containers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert mendloop_containers() == []
