"""The live view of a batch: tasks done / running / left, resolved so far, each worker's task and step, tokens, cost
and an ETA; one line per finished task above it (and only those lines where the output is not a terminal).

Why files: each task runs in a process of its own (maybe on another machine, under Ray), so the board reads what the
tasks write into their run directories - ``status.json`` (the task's current step, written by the worker through
the repair's progress callback) and ``trajectory.jsonl`` (calls and tokens, read incrementally) - and never talks
to a worker. A task is running from the moment its worker writes ``status.json`` until its outcome arrives.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agent.budget import Budget, Usage
from agent.doors.batch.report import Totals

__all__ = ["STATUS_FILE", "BatchBoard", "StatusWriter", "TrajectoryTail", "finished_line", "read_status"]

STATUS_FILE = "status.json"


class StatusWriter:
    """A progress callback for a batch task: its latest step, replaced atomically in ``RUN_DIR/status.json``."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / STATUS_FILE

    def __call__(self, message: str) -> None:
        tmp = self.path.with_name(STATUS_FILE + ".tmp")
        try:
            tmp.write_text(json.dumps({"step": message, "time": time.time()}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:  # a full disk must not end the repair over a progress line
            pass


def read_status(run_dir: Path, since: float) -> dict[str, Any] | None:
    """The task's status if it was written at or after ``since`` (older ones are from an earlier batch)."""
    path = run_dir / STATUS_FILE
    try:
        if path.stat().st_mtime < since:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


class TrajectoryTail:
    """Calls and tokens of a running task, from the complete lines added to its trajectory.jsonl since last time."""

    def __init__(self, path: Path, budget: Budget) -> None:
        self.path = path
        self.budget = budget
        self.usage = Usage()
        self._offset = 0

    def poll(self) -> Usage:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return self.usage
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            usage = record.get("usage") if isinstance(record, dict) else None
            if isinstance(usage, dict):
                p, c = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                self.usage.add(str(record.get("node", "?")), p, c, self.budget.cost_of(p, c))
        return self.usage


def finished_line(done: int, total: int, row: Mapping[str, Any]) -> str:
    """The line printed for each finished task (the same with and without a terminal)."""
    note = f"  {row['error']}" if row.get("error") else ""
    return (
        f"[{done}/{total}] {row['instance_id']}: {row['status']} "
        f"({row['iterations']} it, {row['tokens']:,} tok, {float(row['duration']):.1f}s){note}"
    )


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class _Running:
    slot: int
    instance_id: str
    tail: TrajectoryTail
    since: float
    step: str = "starting"


class BatchBoard:
    """Prints a line per finished task; on a terminal (``live``) also redraws the table of running tasks."""

    def __init__(
        self, console: Console, jobs: Sequence[Mapping[str, Any]], *, workers: int, budget: Budget, live: bool
    ) -> None:
        self.console = console
        self.jobs = list(jobs)
        self.workers = workers
        self.budget = budget
        self.started = time.time()
        self.totals = Totals()  # over the finished tasks
        self._finished: set[str] = set()
        self._running: dict[str, _Running] = {}
        self._lock = threading.RLock()
        self._live = (
            Live(self, console=console, refresh_per_second=2, transient=True, redirect_stderr=False) if live else None
        )

    def __enter__(self) -> BatchBoard:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()

    def finished(self, row: Mapping[str, Any]) -> None:
        """One task is done: count it, print its line."""
        with self._lock:
            self.totals.add(dict(row))
            self._finished.add(str(row["instance_id"]))
            self._running.pop(str(row["instance_id"]), None)
            done = self.totals.total
        self.console.print(finished_line(done, len(self.jobs), row), markup=False, highlight=False)

    # --- the live table ----------------------------------------------------------------------------------------------
    def _poll(self) -> None:
        """Find tasks that started and read their steps and tokens."""
        for job in self.jobs:
            instance = str(job["task"]["instance_id"])
            if instance in self._finished:
                continue
            run_dir = Path(job["run_dir"])
            status = read_status(run_dir, self.started)
            if status is None:
                continue
            running = self._running.get(instance)
            if running is None:
                taken = {r.slot for r in self._running.values()}
                slot = next(i for i in range(1, len(self._running) + 2) if i not in taken)
                running = _Running(
                    slot, instance, TrajectoryTail(run_dir / "trajectory.jsonl", self.budget), time.time()
                )
                self._running[instance] = running
            running.step = str(status.get("step") or running.step)
            running.tail.poll()

    def __rich__(self) -> RenderableType:
        with self._lock:
            self._poll()
            t = self.totals
            running = sorted(self._running.values(), key=lambda r: r.slot)
            live_tokens = sum(r.tail.usage.total_tokens for r in running)
            live_cost = sum(r.tail.usage.cost or 0.0 for r in running)
            done = t.total
            left = len(self.jobs) - done - len(running)
            elapsed = time.time() - self.started
            eta = _clock(elapsed * (len(self.jobs) - done) / done) if done else "–"
            rate = f" ({100 * t.resolved / done:.0f}%)" if done else ""
            head = [
                f"done {done}",
                f"running {len(running)}",
                f"left {max(0, left)}",
                f"resolved {t.resolved}{rate}",
                f"{t.tokens + live_tokens:,} tok",
            ]
            if t.priced or any(r.tail.usage.cost is not None for r in running):
                head.append(f"${t.cost + live_cost:.4f}")
            head += [f"elapsed {_clock(elapsed)}", f"ETA {eta}"]
            table = Table("worker", "task", "step", "time", "tokens", box=None, pad_edge=False, expand=False)
            for r in running:
                table.add_row(
                    str(r.slot),
                    r.instance_id,
                    Text(r.step[:70], overflow="ellipsis", no_wrap=True),
                    _clock(time.time() - r.since),
                    f"{r.tail.usage.total_tokens:,}",
                )
            return Group(Text("  " + " · ".join(head), style="reverse"), table)
