"""Batch throughput: tasks per minute at ``--workers 1`` and ``2`` against a scripted model of fixed latency.

    python bench/batch_throughput.py [--tasks 8] [--latency 2.0] [--workers 1 2]

Why a scripted model with latency: a real endpoint's speed would swamp what is measured here, which is the batch
machinery itself (a process per task, the sandbox, the tests, the atomic appends) and how well it overlaps tasks
while each one waits on the model. Every task is a tiny real git repo with the same bug; the one scripted reply
fixes it, so every task is a full real repair (baseline tests, model call, edit, verify, re-check on a pristine
copy). A warm-up task runs first so the forkserver's one-time import of the repair loop is not charged to workers=1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import Settings  # noqa: E402
from agent.doors.batch.run import BatchOptions, run_batch  # noqa: E402
from tests.support.fake_server import ScriptedServer  # noqa: E402

FIX = (
    "ok\n</think>\n<tool: edit>\ncalc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n"
    ">>>>>>> REPLACE\n</tool>"
)
_GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}


def make_tasks(root: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        repo = root / "repos" / f"r{i:02d}"
        repo.mkdir(parents=True)
        (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
        (repo / "check.py").write_text("from calc import add\n\nassert add(2, 3) == 5\n")
        for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "bug"]):
            subprocess.run(["git", *args], cwd=repo, env={**os.environ, **_GIT_ENV}, check=True)
        rows.append(
            {
                "instance_id": f"calc-{i:02d}",
                "repo": str(repo),
                "task": "add() subtracts",
                "test_cmd": "python check.py",
            }
        )
    tasks = root / f"tasks-{n}.jsonl"
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tasks


def measure(tasks: Path, settings: Settings, out: Path, workers: int) -> tuple[float, int]:
    started = time.monotonic()
    summary = run_batch(tasks, settings, BatchOptions(out=out, workers=workers, progress=False, retries=0))
    return time.monotonic() - started, summary.this_run.resolved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--latency", type=float, default=2.0, help="seconds the scripted model waits per reply")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    server = ScriptedServer({"write": [FIX]}, latency=args.latency).start()
    settings = Settings(base_url=server.url, api_key="sk-bench", sandbox="local", reproduce=False, max_iterations=2)
    rates: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
            root = Path(tmp)
            measure(make_tasks(root / "warm", 1), settings, root / "out-warm", 1)
            tasks = make_tasks(root, args.tasks)
            for workers in args.workers:
                wall, resolved = measure(tasks, settings, root / f"out-{workers}", workers)
                rates[workers] = 60.0 * args.tasks / wall
                print(
                    f"workers={workers}: {args.tasks} tasks in {wall:.1f}s = {rates[workers]:.2f} tasks/min "
                    f"({resolved} resolved)"
                )
    finally:
        server.stop()
    base = rates[min(rates)]
    for workers, rate in sorted(rates.items())[1:]:
        print(f"speed-up workers={workers} vs {min(rates)}: {rate / base:.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
