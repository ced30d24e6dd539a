"""DockerSandbox against a real daemon and the offline base image (MENDLOOP_TEST_IMAGE).

Every sandbox a test opens carries a ``mendloop.test=<uuid>`` label, so the "no container left" checks look
only at this test's containers and stay correct while other suites use the same daemon in parallel.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxes.base import Limits, SandboxError, SandboxSpec, sandbox_class
from sandboxes.docker import DockerSandbox, docker_available, prune
from sandboxes.docker.image import derived_key

IMAGE = os.environ.get("MENDLOOP_TEST_IMAGE", "mendloop-base:bookworm")
REPO = Path(__file__).resolve().parents[2]

docker_only = pytest.mark.docker


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    import docker

    c = docker.from_env()
    yield c
    c.close()


def containers(client: Any, tag: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"mendloop.test={tag}"}))


def wait_gone(client: Any, tag: str, seconds: float = 15.0) -> list[Any]:
    deadline = time.monotonic() + seconds
    left = containers(client, tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = containers(client, tag)
    return left


Opener = Callable[..., DockerSandbox]


@pytest.fixture
def open_docker(tmp_path: Path, client: Any) -> Iterator[Opener]:
    """Open sandboxes on ``tmp_path/ws`` with this test's label; all closed (and checked gone) at the end."""
    tag = uuid.uuid4().hex
    opened: list[DockerSandbox] = []
    root = tmp_path / "ws"
    root.mkdir()

    def opener(limits: Limits | None = None, **spec: Any) -> DockerSandbox:
        box = DockerSandbox(
            root,
            SandboxSpec(kind="docker", image=IMAGE, limits=limits or Limits(), **spec),
            labels={"mendloop.test": tag},
        )
        opened.append(box)
        return box

    opener.tag = tag  # type: ignore[attr-defined]
    yield opener
    for box in opened:
        box.close()
    assert wait_gone(client, tag) == []


@docker_only
def test_docker_available_and_registry() -> None:
    assert docker_available() is True
    assert sandbox_class("docker") is DockerSandbox


@docker_only
def test_edits_and_deletions_on_the_host_reach_the_next_run(open_docker: Opener) -> None:
    box = open_docker()
    (box.root / "pkg").mkdir()
    (box.root / "pkg" / "mod.py").write_text("VALUE = 1\n")
    (box.root / "old.txt").write_text("old\n")
    (box.root / "olddir").mkdir()
    (box.root / "olddir" / "f.txt").write_text("f\n")
    # created after open: shipped by the sync before the first run
    first = box.run("python -c 'import pkg.mod as m; print(m.VALUE)'; ls")
    assert first.exit_code == 0, first.output
    assert first.output.split() == ["1", "old.txt", "olddir", "pkg"]

    (box.root / "pkg" / "mod.py").write_text("VALUE = 22\n")
    (box.root / "old.txt").unlink()
    (box.root / "olddir" / "f.txt").unlink()
    (box.root / "olddir").rmdir()
    (box.root / "new.txt").write_text("new\n")
    second = box.run("python -c 'import pkg.mod as m; print(m.VALUE)'; ls; cat new.txt")
    assert second.output.split() == ["22", "new.txt", "pkg", "new"]


@docker_only
def test_files_a_command_writes_come_back_to_the_host(open_docker: Opener) -> None:
    """The host copy is what the patch is made from: a command's edits (a model's `sed -i`) must reach it."""
    box = open_docker()
    (box.root / "mod.py").write_text("VALUE = 1\n")
    box.run("true")
    done = box.run(
        "sed -i 's/1/2/' mod.py && mkdir -p pkg && echo made > pkg/new.txt"
        " && mkdir -p .pytest_cache __pycache__ && echo c > .pytest_cache/x && echo c > __pycache__/y.pyc"
    )
    assert done.exit_code == 0, done.output
    assert (box.root / "mod.py").read_text() == "VALUE = 2\n"
    assert (box.root / "pkg" / "new.txt").read_text() == "made\n"
    assert not (box.root / ".pytest_cache").exists() and not (box.root / "__pycache__").exists()
    (box.root / "mod.py").write_text("VALUE = 3\n")  # and the host stays the source of what runs next
    assert box.run("cat mod.py").output.strip() == "VALUE = 3"


@docker_only
def test_files_present_at_open_and_put_and_get(open_docker: Opener) -> None:
    box = open_docker()
    box.put({"sub/data.bin": b"\x00\x01binary", "run.sh": b"echo from-put\n"})
    assert (box.root / "sub" / "data.bin").read_bytes() == b"\x00\x01binary"  # put writes the host workspace
    assert box.run("sh run.sh").output == "from-put\n"
    assert box.run("mkdir -p out && printf 'written inside' > out/result.txt").ok
    assert box.get("out/result.txt") == b"written inside"
    assert box.get("/workspace/sub/data.bin") == b"\x00\x01binary"
    assert (box.root / "out" / "result.txt").read_bytes() == b"written inside"  # a command's writes come back
    assert box.sync_out(["out/result.txt"]) == ["out/result.txt"]
    assert (box.root / "out" / "result.txt").read_bytes() == b"written inside"
    with pytest.raises(FileNotFoundError):
        box.get("missing.txt")
    with pytest.raises(IsADirectoryError):
        box.get("out")


@docker_only
def test_limits_labels_and_environment_in_the_container(
    open_docker: Opener, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MENDLOOP_HOST_CANARY", "leaked-secret")
    limits = Limits(memory_mb=300, pids=77, cpus=0.5, env={"PASSED_IN": "yes"})
    box = open_docker(limits)
    attrs = client.api.inspect_container(box.container_id)
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["Memory"] == 300 * 1024 * 1024
    assert host["MemorySwap"] == 300 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 77
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["CapDrop"] == ["ALL"]
    assert host["Init"] is True
    assert not host["Binds"] and not attrs["Mounts"]  # no host directory inside
    labels = attrs["Config"]["Labels"]
    assert labels["mendloop"] == "1" and labels["mendloop.run"] == box.run_id
    assert labels["mendloop.test"] == open_docker.tag  # type: ignore[attr-defined]

    env = box.run("env", env={"PER_RUN": "1"}).output
    names = {line.split("=", 1)[0] for line in env.splitlines() if "=" in line}
    assert {"PATH", "HOME", "LANG", "PYTHONDONTWRITEBYTECODE", "PASSED_IN", "PER_RUN"} <= names
    assert "leaked-secret" not in env and "MENDLOOP_HOST_CANARY" not in names
    assert "PER_RUN" not in box.run("env").output  # per-run env does not stick


@docker_only
def test_timeout_kills_the_whole_tree_and_the_sandbox_stays_usable(open_docker: Opener) -> None:
    box = open_docker()
    result = box.run("sleep 300 & setsid sleep 301 & echo started; sleep 302", timeout=2)
    assert result.timed_out and not result.ok
    assert "started" in result.output
    assert result.duration < 8
    after = box.run("ps -eo args")
    assert after.exit_code == 0
    assert "sleep 30" not in after.output  # setsid escapee included
    assert box.run("echo still-here").output == "still-here\n"


@docker_only
def test_background_leftovers_are_reaped_without_waiting(open_docker: Opener) -> None:
    box = open_docker()
    result = box.run("sleep 300 & echo quick")
    assert result.exit_code == 0 and result.output == "quick\n"
    assert result.duration < 1.5  # Docker would otherwise wait 2 s for the pipe the sleep holds
    assert "sleep 300" not in box.run("ps -eo args").output


@docker_only
def test_exit_codes_and_argv_commands(open_docker: Opener) -> None:
    box = open_docker()
    assert box.run("exit 3").exit_code == 3
    result = box.run(["python", "-c", "import sys; print(sys.argv[1])", "two words; $HOME"])
    assert result.output == "two words; $HOME\n"


@docker_only
def test_output_is_capped_while_streaming(open_docker: Opener) -> None:
    box = open_docker(Limits(output_bytes=20_000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = box.run("head -c 60000000 /dev/zero | tr '\\0' x; echo; echo THE-END")
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.exit_code == 0 and result.truncated
    assert len(result.output) < 21_000
    assert result.output.rstrip().endswith("THE-END")  # the tail is kept
    assert grown_kb < 30_000  # 60 MB went through without being buffered


@docker_only
def test_memory_limit_kill_is_reported_as_oom(open_docker: Opener) -> None:
    box = open_docker(Limits(memory_mb=128))
    result = box.run("python -c 'b = bytearray(1024 * 1024 * 1024); print(len(b))'", timeout=60)
    assert result.oom and not result.timed_out and not result.ok
    assert "killed for exceeding the memory limit" in result.describe()
    plain = box.run("kill -9 $$")  # a SIGKILL that is not the OOM killer's
    assert plain.exit_code == 137 and not plain.oom
    assert box.run("echo fine").ok


@docker_only
def test_derived_image_is_built_once_and_reused(tmp_path: Path, open_docker: Opener, client: Any) -> None:
    marker = f"/opt/marker-{uuid.uuid4().hex}"  # unique setup: no cache from earlier runs
    setup = (f"sleep 1.5; date +%s%N > {marker}; ls /workspace > /opt/seen",)
    root = tmp_path / "ws"
    (root / "requirements.txt").write_text("# nothing\n")
    (root / "stale.py").write_text("x = 1\n")

    started = time.monotonic()
    first = open_docker(setup=setup)
    cold = time.monotonic() - started
    stamp = first.get(marker)
    assert first.get("/opt/seen").split() == [
        b"requirements.txt",
        b"stale.py",
    ]  # workspace was there for setup
    first.close()

    (root / "stale.py").unlink()  # not a dependency file: same key, and the baked copy must not reappear
    started = time.monotonic()
    second = open_docker(setup=setup)
    warm = time.monotonic() - started
    assert second.get(marker) == stamp  # setup did not run again
    assert warm < cold - 1.0, (cold, warm)
    assert second.run("ls").output.split() == ["requirements.txt"]

    image = client.images.get(client.api.inspect_container(second.container_id)["Image"])
    key = derived_key(str(client.images.get(IMAGE).id), setup, root)
    assert f"mendloop-derived:{key}" in image.tags
    assert image.labels["mendloop"] == "1"
    second.close()
    assert prune(labels={"mendloop.hash": key}) == [f"image mendloop-derived:{key}"]
    assert client.images.list(filters={"label": f"mendloop.hash={key}"}) == []


def test_derived_key_follows_base_setup_and_dependency_files(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname='a'\n")
    (tmp_path / "main.py").write_text("print(1)\n")
    key = derived_key("sha256:base", ("pip install -e .",), tmp_path)
    (tmp_path / "main.py").write_text("print(2)\n")
    assert derived_key("sha256:base", ("pip install -e .",), tmp_path) == key  # sources do not matter
    assert derived_key("sha256:other", ("pip install -e .",), tmp_path) != key
    assert derived_key("sha256:base", ("pip install .",), tmp_path) != key
    (tmp_path / "requirements-dev.txt").write_text("pytest\n")
    assert derived_key("sha256:base", ("pip install -e .",), tmp_path) != key


@docker_only
def test_dockerfile_in_the_workspace_is_built_and_used(open_docker: Opener, client: Any, tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    dockerfile = tmp_path / "ws" / ".mendloop" / "Dockerfile"
    dockerfile.parent.mkdir()
    dockerfile.write_text(f"FROM {IMAGE}\nRUN echo {token} > /opt/built\n")
    box = open_docker()
    try:
        assert box.run("cat /opt/built").output == f"{token}\n"
    finally:
        image = client.api.inspect_container(box.container_id)["Image"]
        box.close()
        client.images.remove(image, force=True)


@docker_only
def test_missing_image_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as err:
        DockerSandbox(tmp_path, SandboxSpec(image="mendloop-no-such-image:0"))
    message = err.value.message
    assert "mendloop-no-such-image:0" in message and "base-image.sh" in message
    assert "\n" not in message


@docker_only
def test_close_and_prune_leave_no_container(open_docker: Opener, client: Any) -> None:
    tag = open_docker.tag  # type: ignore[attr-defined]
    closed = open_docker()
    assert len(containers(client, tag)) == 1
    closed.close()
    closed.close()  # idempotent
    assert wait_gone(client, tag) == []
    with pytest.raises(SandboxError):
        closed.run("true")

    pruned = open_docker()
    name = client.containers.get(pruned.container_id).name
    assert prune(labels={"mendloop.test": tag}) == [f"container {pruned.container_id[:12]} ({name})"]
    assert wait_gone(client, tag) == []
    with pytest.raises(SandboxError):
        pruned.run("true")  # the container is gone: infrastructure error, not a test failure


CHILD = """
import sys
from pathlib import Path
from sandboxes.base import SandboxSpec
from sandboxes.docker import DockerSandbox
box = DockerSandbox(Path(sys.argv[1]), SandboxSpec(image=sys.argv[2]), labels={"mendloop.test": sys.argv[3]})
print("READY", flush=True)
box.run("sleep 60")
print("FINISHED", flush=True)
"""


@docker_only
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_process_leaves_no_container(tmp_path: Path, client: Any, signum: int) -> None:
    tag = uuid.uuid4().hex
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), IMAGE, tag],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY", child.stderr.read() if child.stderr else ""
        time.sleep(0.5)  # inside run("sleep 60")
        assert len(containers(client, tag)) == 1
        child.send_signal(signum)
        child.wait(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "FINISHED" not in (child.stdout.read() if child.stdout else "")
    assert wait_gone(client, tag) == []
