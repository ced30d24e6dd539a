"""Finding 9 (workers): batch workers die with their batch.

Before: after a kill -9 of the batch its workers went on for about 15 s (4 wasted model calls), and the commands
they ran in their sandboxes (each in a session of its own) outlived them.

Real parts: ``mendloop batch`` as a subprocess with two workers, each stuck in its baseline test run (a real
``sleep`` in the local sandbox), killed with SIGKILL; the processes are read from /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.security.robust_support import alive, cli_env, descendants
from tests.support.example import ROOT, make_repo
from tests.support.fake_server import ScriptedServer


def test_a_killed_batch_takes_its_workers_and_their_commands_along(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    rows = []
    for name in ("a", "b"):
        repo = make_repo(tmp_path / f"repo-{name}")
        rows.append(
            {
                "instance_id": name,
                "repo": str(repo),
                "task": "median is wrong",
                "test_cmd": f"sh -c 'echo $$ > {pids}/{name}; exec sleep 600'",
            }
        )
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with ScriptedServer({"*": ["nothing\n</think>\nnothing"]}) as server:
        args = ["batch", str(tasks), "--out", str(tmp_path / "out"), "--workers", "2", "--base-url", server.url]
        batch = subprocess.Popen(
            [sys.executable, "-m", "agent.cli.main", *args, "--sandbox", "local", "--no-progress"],
            env=cli_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 180
            while len(list(pids.iterdir())) < 2:
                assert batch.poll() is None, batch.stderr.read() if batch.stderr else ""
                assert time.monotonic() < deadline, "the two tasks never reached their test command"
                time.sleep(0.2)
            sleepers = {int((pids / name).read_text()) for name in ("a", "b")}
            family = descendants(batch.pid)
            assert sleepers <= family and len(family) >= 4  # forkserver, two workers, their commands
            batch.send_signal(signal.SIGKILL)
            batch.wait(10)
            killed_at = time.monotonic()
            while alive(family) and time.monotonic() - killed_at < 10:
                time.sleep(0.05)
            took = time.monotonic() - killed_at
            assert not alive(family), f"still running 10 s after the batch was killed: {sorted(alive(family))}"
            assert took < 2.5, f"the workers outlived their batch by {took:.1f} s"
            assert server.nodes() == []  # and no worker asked the model anything after its batch died
        finally:
            if batch.poll() is None:
                batch.kill()
            for pid in alive(descendants(batch.pid)):
                os.kill(pid, signal.SIGKILL)
