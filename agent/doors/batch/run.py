"""Batch repair jobs: many tasks, one model endpoint, resumable output files.

Why this shape: the input is checked whole before anything runs (:mod:`~agent.doors.batch.tasks`); tasks run each in
its own process through an executor (:mod:`~agent.doors.batch.executors`), so a crash, a hang or a spent budget
stays inside one task; only this process appends to preds.jsonl / results.jsonl (:mod:`~agent.doors.batch.store`),
one atomic line per finished task, which is what makes a killed batch resumable by simply running it again."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from agent.budget import Budget
from agent.config import Settings
from agent.doors.batch.executors import RunPolicy, make_executor
from agent.doors.batch.report import Totals, render_markdown, render_table, result_row, totals
from agent.doors.batch.store import BatchStore
from agent.doors.batch.tasks import BatchTask, read_tasks, run_dir_name, select_tasks
from agent.live.batch import BatchBoard
from agent.records import DiskFull, is_disk_full, write_atomic

__all__ = ["BatchOptions", "BatchSummary", "run_batch"]

REPORT = "report.md"


@dataclass
class BatchOptions:
    """How to run a batch (the per-task model/sandbox/budget defaults live in ``Settings``)."""

    out: Path
    workers: int = 1
    executor: str = "local"  # local | ray
    ray_address: str | None = None
    cpus_per_task: float = 1.0
    pattern: str | None = None
    limit: int | None = None
    shuffle: bool = False
    seed: int = 0
    redo: bool = False
    retry_errors: bool = False
    task_timeout: float | None = 3600.0
    retries: int = 2
    retry_backoff: float = 1.0  # seconds before the first retry; doubles each time
    repos_dir: Path | None = None
    repo_url: str | None = None
    solve_target: str = "agent.runner:solve"  # the repair entry point, "module:function"
    progress: bool = True  # the table at the end (a line per finished task is always printed)
    live: bool = False  # the live board of running tasks (on a terminal only: the caller decides)


@dataclass
class BatchSummary:
    """What this invocation did, and the totals over everything in the output directory."""

    selected: int
    skipped: int
    ran: int
    this_run: Totals
    overall: Totals
    report: Path
    duration: float
    rows: list[dict[str, Any]] = field(default_factory=list)


def _job(task: BatchTask, settings: dict[str, Any], store: BatchStore, options: BatchOptions) -> dict[str, Any]:
    return {
        "task": task.to_dict(),
        "settings": settings,
        "run_dir": str(store.runs / run_dir_name(task.instance_id)),
        "solve": options.solve_target,
        "repos_dir": str(options.repos_dir) if options.repos_dir else None,
        "repo_url": options.repo_url,
    }


def _settings_for_workers(settings: Settings) -> dict[str, Any]:
    """The settings as plain data; the API key is revealed here, in memory only (it travels on a pipe)."""
    data = settings.model_dump(mode="json")
    data["api_key"] = settings.api_key.get_secret_value() if settings.api_key else None
    return data


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the batch like Ctrl-C does: workers are killed, finished lines are already on disk."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_batch(
    tasks_file: Path, settings: Settings, options: BatchOptions, *, console: Console | None = None
) -> BatchSummary:
    """Validate ``tasks_file``, run every selected unfinished task, and write the output directory.

    Raises ``BatchInputError`` (a ``FatalError``) before anything runs when the input is bad, and ``DiskFull`` (one
    line; every finished task's lines whole) when the disk fills up.
    """
    try:
        return _run_batch(tasks_file, settings, options, console=console)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFull(
            f"the disk is full (writing the batch in {options.out}); free some space, then run the same command "
            "again: finished tasks are kept"
        ) from None


def _run_batch(
    tasks_file: Path, settings: Settings, options: BatchOptions, *, console: Console | None = None
) -> BatchSummary:
    console = console or Console(stderr=True, soft_wrap=True)
    started = time.monotonic()
    tasks = select_tasks(
        read_tasks(tasks_file),
        pattern=options.pattern,
        limit=options.limit,
        shuffle=options.shuffle,
        seed=options.seed,
    )
    policy = RunPolicy(timeout=options.task_timeout, retries=options.retries, backoff=options.retry_backoff)
    executor = make_executor(
        options.executor, options.workers, policy, address=options.ray_address, cpus=options.cpus_per_task
    )
    store = BatchStore(options.out)
    write_atomic(options.out / "settings.json", json.dumps(settings.public_dict(), indent=2) + "\n")
    selected_ids = {t.instance_id for t in tasks}
    if options.redo:
        store.forget(selected_ids)
        done: set[str] = set()
    else:
        done = store.finished(include_errors=not options.retry_errors) & selected_ids
        if options.retry_errors:
            store.forget({i for i in selected_ids - done if i in store.finished()})
    todo = [t for t in tasks if t.instance_id not in done]

    worker_settings = _settings_for_workers(settings)
    jobs = [_job(t, worker_settings, store, options) for t in todo]
    this_run = Totals()
    if done:
        console.print(f"skipping {len(done)} finished task(s) in {options.out} (--redo to run them again)")
    board = BatchBoard(console, jobs, workers=options.workers, budget=Budget.from_settings(settings), live=options.live)
    with board, _sigterm_as_interrupt():

        def on_done(job: dict[str, Any], outcome: dict[str, Any]) -> None:
            instance_id = job["task"]["instance_id"]
            row = result_row(instance_id, settings.model, Path(job["run_dir"]), outcome)
            store.record(row)
            this_run.add(row)
            board.finished(row)

        executor.run(jobs, on_done)

    rows = store.results()
    report = options.out / REPORT
    write_atomic(report, render_markdown(rows, settings.model))
    if options.progress:
        console.print(render_table(rows))
        console.print(f"report: {report}")
    return BatchSummary(
        selected=len(tasks),
        skipped=len(done),
        ran=this_run.total,
        this_run=this_run,
        overall=totals(rows),
        report=report,
        duration=time.monotonic() - started,
        rows=rows,
    )
