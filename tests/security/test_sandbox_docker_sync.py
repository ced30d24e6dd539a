"""Finding 6: what a command does inside the Docker container comes back to the host copy the patch is made from,
and a SIGINT that mendloop's handler cleans up after ends the run.

Before: deletions made inside the container never reached the patch (a shell ``rm`` of a test file was neither seen
nor undone), a symlink replaced by a directory ended the run with an internal error, and with SIGINT ignored the
container was removed but the run went on and failed.

Real parts: the Docker daemon and the offline base image (``MENDLOOP_TEST_IMAGE``), real git workspaces, and the CLI
as a subprocess against the scripted model server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxes.base import Limits, SandboxSpec
from sandboxes.docker import DockerSandbox
from tests.security.robust_support import start_cli
from tests.support.example import make_repo
from tests.support.fake_server import ScriptedServer
from tools.workspace import Workspace

pytestmark = pytest.mark.docker
IMAGE = os.environ.get("MENDLOOP_TEST_IMAGE", "mendloop-base:bookworm")


def git_repo(path: Path, files: dict[str, str], links: dict[str, str]) -> Path:
    path.mkdir()
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    for rel, target in links.items():
        os.symlink(target, path / rel)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "i"]):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


@pytest.fixture
def box_on(tmp_path: Path) -> Iterator[Any]:
    opened: list[DockerSandbox] = []
    tag = uuid.uuid4().hex

    def opener(root: Path, **limits: int) -> DockerSandbox:
        spec = SandboxSpec(kind="docker", image=IMAGE, limits=Limits(**limits))
        box = DockerSandbox(root, spec, labels={"mendloop.test": tag})
        opened.append(box)
        return box

    yield opener
    for box in opened:
        box.close()


def test_deletions_and_symlink_changes_inside_reach_the_patch(tmp_path: Path, box_on: Any) -> None:
    repo = git_repo(
        tmp_path / "repo",
        {"a.py": "A = 1\n", "b.py": "B = 2\n", "tests/test_a.py": "def test_a():\n    pass\n", "d/x.txt": "x\n"},
        {"link": "d", "alias": "a.py"},
    )
    ws = Workspace.create(repo, tmp_path / "ws")
    box = box_on(ws.root)
    done = box.run(
        "rm tests/test_a.py"  # a test file removed by a shell command
        " && rm link && mkdir link && echo inside > link/f.txt"  # a symlink replaced by a directory
        " && ln -sfn b.py alias"  # a symlink pointed elsewhere
        " && ln -s a.py new_link"  # a new symlink
        " && rm -r d"  # a directory removed
    )
    assert done.exit_code == 0, done.output
    root = ws.root
    assert not (root / "tests" / "test_a.py").exists()
    assert (root / "link").is_dir() and not (root / "link").is_symlink()
    assert (root / "link" / "f.txt").read_text() == "inside\n"
    assert os.readlink(root / "alias") == "b.py" and os.readlink(root / "new_link") == "a.py"
    assert not (root / "d").exists()
    patch = ws.diff()
    assert "deleted file mode 100644\n" in patch and "a/tests/test_a.py" in patch  # the rm reached the patch
    assert "a/d/x.txt" in patch and "b/link/f.txt" in patch and "b/new_link" in patch
    assert "-a.py\n\\ No newline at end of file\n+b.py" in patch  # the symlink's new target
    # and the next command sees the same tree the host has (nothing is shipped back and forth)
    assert box.run("ls -1 && cat link/f.txt").output.split() == [
        "a.py", "alias", "b.py", "link", "new_link", "tests", "inside",
    ]  # fmt: skip


def test_a_file_turned_into_a_directory_and_back(tmp_path: Path, box_on: Any) -> None:
    repo = git_repo(tmp_path / "repo", {"thing": "a file\n", "keep.txt": "k\n"}, {})
    ws = Workspace.create(repo, tmp_path / "ws")
    box = box_on(ws.root)
    assert box.run("rm thing && mkdir thing && echo x > thing/inner.txt").ok
    assert (ws.root / "thing" / "inner.txt").read_text() == "x\n"
    assert box.run("rm -r thing && echo again > thing").ok
    assert (ws.root / "thing").read_text() == "again\n"
    assert box.run("cat keep.txt").output == "k\n"


def test_a_host_symlink_to_outside_is_never_followed_by_a_pull(tmp_path: Path, box_on: Any) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = git_repo(tmp_path / "repo", {"a.py": "A = 1\n"}, {"escape": str(outside)})
    ws = Workspace.create(repo, tmp_path / "ws")
    box = box_on(ws.root)
    # inside, "escape" is a dangling link; the command makes it a directory with a file
    assert box.run("rm escape && mkdir escape && echo planted > escape/evil.txt").ok
    assert list(outside.iterdir()) == []  # nothing was written through the host's symlink
    assert (ws.root / "escape").is_dir() and not (ws.root / "escape").is_symlink()


def test_sigint_ends_the_run_and_removes_its_container_even_when_ignored(tmp_path: Path) -> None:
    import docker

    repo = make_repo(tmp_path / "repo")
    marker = f"marker-{uuid.uuid4().hex}.txt"
    (repo / marker).write_text("this run\n")
    subprocess.run(["git", "add", marker], cwd=repo, check=True)
    client = docker.from_env()
    slow = ScriptedServer({"write": ["nothing\n</think>\nnothing"]}, latency=120).start()
    args = ["solve", "--repo", str(repo), "--task", "median is wrong", "--no-reproduce", "--out", str(tmp_path / "run")]
    proc = start_cli(
        [*args, "--sandbox", "docker", "--image", IMAGE, "--base-url", slow.url],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # started the way `cmd &` starts it
    )
    try:
        deadline = time.monotonic() + 180
        while not slow.nodes():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run never asked the model"
            time.sleep(0.2)
        ours = [
            c
            for c in client.containers.list(filters={"label": "mendloop"})
            if c.exec_run(["test", "-f", f"/workspace/{marker}"]).exit_code == 0
        ]
        assert len(ours) == 1, "the run's container is up while it waits for the model"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        slow.stop()
    assert proc.returncode == 130, stderr[-3000:]  # the run ended: it did not go on to fail on a missing container
    assert "interrupted" in stderr and "error" not in stderr.lower()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and ours[0].id in {c.id for c in client.containers.list(all=True)}:
        time.sleep(0.2)
    assert ours[0].id not in {c.id for c in client.containers.list(all=True)}
    client.close()
