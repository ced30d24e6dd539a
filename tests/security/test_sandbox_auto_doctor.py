"""Findings 5 and 8 (sandbox choice): ``--sandbox auto`` falls back to bwrap, saying why, when Docker cannot provide
the image; ``mendloop doctor`` runs a real command in each available sandbox and fails when it cannot.

Before: ``auto`` on a host whose Docker lacked the image stopped the run; ``doctor`` only asked whether the backends
existed, so it said all was well while no command could run.

Real parts: the Docker daemon (an image that does not exist, an image built for the test without Python), bubblewrap,
and the CLI as a subprocess.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.robust_support import error_lines, run_cli
from tests.support.example import CWM_FIX, assert_patch_repairs, make_repo
from tests.support.fake_server import ScriptedServer

IMAGE = os.environ.get("MENDLOOP_TEST_IMAGE", "mendloop-base:bookworm")
pytestmark = [pytest.mark.docker, pytest.mark.bwrap]


def test_auto_falls_back_to_bwrap_when_docker_lacks_the_image(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    missing = f"mendloop-no-such-image:{uuid.uuid4().hex[:12]}"
    with ScriptedServer({"write": [CWM_FIX]}) as server:
        done = run_cli(
            "solve", "--repo", str(repo), "--task", "median is wrong for even-sized lists", "--no-reproduce",
            "--sandbox", "auto", "--image", missing, "--out", str(tmp_path / "run"), "--base-url", server.url,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if "sandbox auto:" in line]
    assert len(said) == 1 and f"Docker cannot provide the image '{missing}'" in said[0] and "bubblewrap" in said[0]
    assert_patch_repairs(tmp_path / "run" / "patch.diff", tmp_path)


def test_an_explicit_docker_sandbox_does_not_fall_back(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    missing = f"mendloop-no-such-image:{uuid.uuid4().hex[:12]}"
    with ScriptedServer({"write": [CWM_FIX]}) as server:
        done = run_cli(
            "solve", "--repo", str(repo), "--task", "median is wrong", "--no-reproduce", "--sandbox", "docker",
            "--image", missing, "--out", str(tmp_path / "run"), "--base-url", server.url,
        )  # fmt: skip
        asked = server.nodes()
    assert done.returncode == 2
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and missing in lines[0]
    assert asked == []


@pytest.fixture(scope="module")
def image_without_python() -> Iterator[str]:
    """The base image with Python removed, built offline from it for this module."""
    import docker

    client = docker.from_env()
    tag = f"mendloop-test-nopython:{uuid.uuid4().hex[:12]}"
    dockerfile = f"FROM {IMAGE}\nRUN rm -f /usr/bin/python /usr/bin/python3* /usr/local/bin/python*\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, network_mode="none", rm=True, pull=False)
    try:
        yield tag
    finally:
        client.images.remove(tag, force=True)
        client.close()


def test_doctor_fails_when_a_command_cannot_run_in_the_sandbox(image_without_python: str) -> None:
    with ScriptedServer({}) as server:
        done = run_cli("doctor", "--sandbox", "docker", "--image", image_without_python, "--base-url", server.url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[ok  ] docker image" in done.stdout  # the image is there: only running something shows the problem
    failed = [line for line in done.stdout.splitlines() if line.startswith("[FAIL] docker runs a command")]
    assert len(failed) == 1 and "exit code 127" in failed[0] and "not found" in failed[0], done.stdout
    assert "failed: docker runs a command" in done.stdout


def test_doctor_runs_python_in_every_available_sandbox() -> None:
    with ScriptedServer({}) as server:
        done = run_cli("doctor", "--sandbox", "docker", "--image", IMAGE, "--base-url", server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ok  ] docker runs a command: ran python 3." in done.stdout
    assert "[ok  ] bwrap runs a command: ran python 3." in done.stdout
