"""Running the ``mendloop`` CLI as a subprocess, and stopping it at a chosen point of a run.

Why a helper: the resume and cleanup tests all need "start a run, wait until the model server has been asked by a
given node, then signal it"; one definition keeps the waiting honest (a dead process fails at once, not at timeout).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping

from tests.support.example import ROOT
from tests.support.fake_server import ScriptedServer


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra or {})}
    for name in ("MENDLOOP_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        if not extra or name not in extra:
            env.pop(name, None)
    return env


def start_until(
    args: list[str],
    server: ScriptedServer,
    *,
    node: str,
    count: int = 1,
    env: Mapping[str, str] | None = None,
    timeout: float = 180,
) -> subprocess.Popen[str]:
    """Start ``mendloop ARGS`` and return once ``server`` has received ``count`` requests from ``node``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
        cwd=ROOT,
    )
    deadline = time.monotonic() + timeout
    while server.nodes().count(node) < count:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before reaching {node}: {proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the run did not reach {node} within {timeout:.0f}s")
        time.sleep(0.2)
    return proc
