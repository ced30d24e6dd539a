"""THE security suite: every isolating backend, through the real sandbox, against real attacks (bounded ones).

Each test states what untrusted code must not be able to do, runs code that tries, and checks the host afterwards.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandboxes.conftest import ISOLATING, OpenSandbox

pytestmark = pytest.mark.parametrize("kind", ISOLATING)

CONNECT = """
import socket, sys
s = socket.socket(); s.settimeout(2)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("CONNECTED")
except OSError as e:
    print("BLOCKED", e.errno, type(e).__name__)
"""

FORK_BOMB = """
import os, time
start, n = time.time(), 0
while n < 2000 and time.time() - start < 20:
    try:
        pid = os.fork()
    except OSError as e:
        print("blocked after", n, "forks:", e.errno, flush=True)
        break
    if pid == 0:
        os.close(1); os.close(2); time.sleep(3); os._exit(0)
    n += 1
else:
    print("NOT BLOCKED", n, flush=True)
"""


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A real TCP server on the host's 127.0.0.1; the list records every accepted connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, addr = server.accept()
            except OSError:
                continue
            accepted.append(addr)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def test_no_connection_to_host_loopback(kind: str, open_sandbox: OpenSandbox, listener: tuple[int, list[object]]):
    port, accepted = listener
    # The listener really is reachable from the host: the check below can fail.
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    deadline = time.time() + 2
    while not accepted and time.time() < deadline:
        time.sleep(0.02)
    assert len(accepted) == 1
    box = open_sandbox(kind)
    res = box.run(["python", "-c", CONNECT, "127.0.0.1", str(port)], timeout=30)
    assert "BLOCKED" in res.output, res.output
    time.sleep(0.3)
    assert len(accepted) == 1


def test_no_route_to_the_outside(kind: str, open_sandbox: OpenSandbox):
    box = open_sandbox(kind)
    res = box.run(["python", "-c", CONNECT, "10.255.255.1", "80"], timeout=30)
    # ENETUNREACH (101) right away: there is no network interface at all, not merely a slow route.
    assert "BLOCKED 101" in res.output, res.output
    assert res.duration < 10


def test_cannot_read_host_files_outside_the_workspace(kind: str, open_sandbox: OpenSandbox, tmp_path: Path):
    token = uuid.uuid4().hex
    secret = tmp_path / "secret" / "canary.txt"
    secret.parent.mkdir()
    secret.write_text(token)
    targets = [str(secret)]
    root_canary = Path("/root") / f"mendloop-canary-{token[:8]}"
    try:
        root_canary.write_text(token)
        targets.append(str(root_canary))
    except OSError:
        root_canary = None  # type: ignore[assignment]
    try:
        box = open_sandbox(kind)
        script = 'for f in "$@"; do cat "$f" || echo READFAIL; done; ls -a /root'
        res = box.run(["sh", "-c", script, "sh", *targets], timeout=30)
        assert token not in res.output
        assert res.output.count("READFAIL") == len(targets)  # the reads failed, they did not just print nothing
        # The same command can read a file that IS in the workspace.
        (box.root / "inside.txt").write_text(token)
        assert token in box.run(["cat", "inside.txt"], timeout=30).output
    finally:
        if root_canary is not None:
            root_canary.unlink()


def test_cannot_write_outside_the_workspace(kind: str, open_sandbox: OpenSandbox, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    name = f"mendloop-pwned-{uuid.uuid4().hex}"
    targets = [outside / name, Path("/tmp") / name, Path("/root") / name]
    box = open_sandbox(kind)
    script = 'for f in "$@"; do mkdir -p "$(dirname "$f")" 2>/dev/null; echo pwned > "$f"; done; echo ok > ws.txt'
    res = box.run(["sh", "-c", script, "sh", *map(str, targets)], timeout=30)
    try:
        for target in targets:
            assert not target.exists(), f"{target} was written from inside the sandbox"
        assert box.get("ws.txt") == b"ok\n", res.output  # writing inside the workspace does work
    finally:
        for target in targets:
            target.unlink(missing_ok=True)


def test_fork_bomb_is_contained(kind: str, open_sandbox: OpenSandbox):
    box = open_sandbox(kind, pids=64)
    res = box.run(["python", "-c", FORK_BOMB], timeout=60)
    assert not res.timed_out
    assert "blocked after" in res.output, res.output
    forks = int(res.output.split("blocked after")[1].split()[0])
    assert forks < 64
    start = time.monotonic()
    subprocess.run(["true"], check=True)
    assert time.monotonic() - start < 2  # the host is still responsive


def test_memory_limit_kills_and_reports_oom(kind: str, open_sandbox: OpenSandbox):
    box = open_sandbox(kind, memory_mb=256)
    res = box.run(["python", "-c", "b = b'x' * (1024 ** 3); print('allocated', len(b))"], timeout=60)
    assert "allocated" not in res.output
    assert res.oom, (res.exit_code, res.output[-500:])
    assert not res.ok
    assert box.run(["python", "-c", "b = b'x' * (16 * 1024 ** 2); print(len(b))"], timeout=60).ok


def test_infinite_loop_is_killed_and_sandbox_survives(kind: str, open_sandbox: OpenSandbox):
    box = open_sandbox(kind)
    start = time.monotonic()
    res = box.run(["python", "-c", "while True: pass"], timeout=2)
    assert res.timed_out
    assert not res.ok
    assert time.monotonic() - start < 15
    after = box.run("echo still alive", timeout=30)
    assert after.ok and "still alive" in after.output


def test_host_environment_does_not_leak(kind: str, open_sandbox: OpenSandbox, monkeypatch: pytest.MonkeyPatch):
    token = uuid.uuid4().hex
    monkeypatch.setenv("MENDLOOP_CANARY_SECRET", token)
    monkeypatch.setenv("OPENAI_API_KEY", token)
    monkeypatch.setenv("GITHUB_TOKEN", token)
    box = open_sandbox(kind, env={"PASSED_BY_NAME": "yes"})
    res = box.run(["sh", "-c", "env; cat /proc/1/environ 2>/dev/null"], env={"PER_COMMAND": "also"}, timeout=30)
    assert token not in res.output
    assert "PASSED_BY_NAME=yes" in res.output
    assert "PER_COMMAND=also" in res.output
    assert "LANG=C.UTF-8" in res.output


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_huge_output_is_truncated_while_reading(kind: str, open_sandbox: OpenSandbox):
    cap = 100_000
    box = open_sandbox(kind, output_bytes=cap)
    writer = "import sys\nchunk = 'x' * (1 << 20) + '\\n'\nfor _ in range(100): sys.stdout.write(chunk)\nprint('END')"
    baseline = _rss_kb()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kb())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        res = box.run(["python", "-c", writer], timeout=120)
    finally:
        done.set()
        sampler.join()
    assert res.truncated
    assert len(res.output) <= cap + 200
    assert res.output.rstrip().endswith("END")  # the tail is kept
    assert res.output.startswith("x")  # and the head
    assert (peak[0] - baseline) < 20 * 1024, f"RSS grew by {(peak[0] - baseline) // 1024} MB"
    total = 100 * ((1 << 20) + 1) + len("END\n")
    head, marker, tail = res.output.partition(f"\n[... {total - cap} bytes of output dropped ...]\n")
    assert marker, "the marker must count exactly the bytes that were dropped"
    assert (len(head), len(tail)) == (cap // 2, cap - cap // 2)  # every backend keeps the same head and tail
