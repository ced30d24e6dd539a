"""Where batch tasks run: a local pool or a Ray cluster, both around the same per-task process.

Why both executors share ``run_job``: the hard parts (a process per task, killing it at ``--task-timeout``,
bounded retries of infrastructure errors) live in one function, whether a local thread or a Ray task calls it.
A local "pool" is then just N threads that each wait on a child process; Ray adds scheduling across machines
and a CPU resource hint per task. Either way results stream back to the caller's ``on_done`` in the parent
process, which alone writes the output files."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.doors.batch.worker import LOG_FILE, OUTCOME_FILE, child_main
from tools.errors import FatalError

__all__ = [
    "Executor",
    "LocalExecutor",
    "OnDone",
    "RayExecutor",
    "RunPolicy",
    "kill_all",
    "make_executor",
    "run_job",
]

Job = dict[str, Any]
Outcome = dict[str, Any]
OnDone = Callable[[Job, Outcome], None]

_RETRYABLE = ("fatal", "crash")

# Live worker process groups, so an interrupted batch can end them all (local executor and Ray workers alike).
_LIVE: set[int] = set()
_LIVE_LOCK = threading.Lock()
# Set when the batch is being interrupted: no new attempt starts, no retry is made.
_STOP = threading.Event()


def kill_all() -> None:
    """SIGKILL every worker process group this process started and that is still running."""
    with _LIVE_LOCK:
        groups = list(_LIVE)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def _context() -> Any:
    """A forkserver that has imported the repair loop once: every task still gets a fresh process of its own,
    but forks in milliseconds instead of paying seconds of imports (langgraph, openai) per task."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["agent.doors.batch.worker", "agent.runner"])
    return ctx


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _attempt(job: Job, timeout: float | None) -> Outcome:
    """Run the task once in a new process; at ``timeout`` its whole process group is killed."""
    run_dir = Path(job["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / OUTCOME_FILE).unlink(missing_ok=True)
    log_path = run_dir / LOG_FILE
    if _STOP.is_set():
        return {"kind": "cancelled", "result": None, "error": "the batch was interrupted"}
    job = {**job, "batch_pid": os.getpid()}  # the worker watches this process: when it dies, the worker dies too
    proc = _context().Process(target=child_main, args=(job, str(log_path)), daemon=False)
    proc.start()
    pid = int(proc.pid or 0)
    with _LIVE_LOCK:
        _LIVE.add(pid)
    try:
        if _STOP.is_set():  # interrupted while this one was starting
            _kill_group(pid)
            proc.kill()
        proc.join(timeout)
        if proc.exitcode is None:
            _kill_group(pid)
            proc.kill()  # in case it had not yet made its own group
            proc.join()
            return {"kind": "timeout", "result": None, "error": f"task timed out after {timeout:g}s, killed"}
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(pid)
        _kill_group(pid)  # the task may have left children behind (a test it ran): end the group
    try:
        outcome: Outcome = json.loads((run_dir / OUTCOME_FILE).read_text(encoding="utf-8"))
        return outcome
    except (OSError, json.JSONDecodeError):
        tail = _tail(log_path)
        return {"kind": "crash", "result": None, "error": f"worker exited {proc.exitcode} without a result: {tail}"}


def run_job(job: Job, timeout: float | None = None, retries: int = 2, backoff: float = 1.0) -> Outcome:
    """Run one task to an outcome; infrastructure errors and crashes are retried up to ``retries`` times.

    Timeouts are not retried (the task would hang again), nor are plain exceptions (a bug repeats).
    """
    started = time.monotonic()
    started_at = time.time()
    attempts = 0
    while True:
        attempts += 1
        outcome = _attempt(job, timeout)
        if outcome["kind"] not in _RETRYABLE or attempts > retries or _STOP.is_set():
            break
        _STOP.wait(min(backoff * 2 ** (attempts - 1), 30.0))
    outcome["attempts"] = attempts
    outcome["wall"] = time.monotonic() - started
    outcome["started_at"] = started_at
    outcome["finished_at"] = time.time()
    return outcome


class Executor(Protocol):
    """Runs jobs, at most ``workers`` at a time, calling ``on_done`` in the caller's thread as each ends."""

    def run(self, jobs: Sequence[Job], on_done: OnDone) -> None: ...


@dataclass(frozen=True)
class RunPolicy:
    """How long a task may run and how often an infrastructure failure is retried."""

    timeout: float | None = 3600.0
    retries: int = 2
    backoff: float = 1.0


class LocalExecutor:
    """N threads, each waiting on one worker process at a time."""

    def __init__(self, workers: int, policy: RunPolicy) -> None:
        self.workers = max(1, workers)
        self.policy = policy

    def run(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        p = self.policy
        _STOP.clear()
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="batch")
        try:
            pending = {pool.submit(run_job, job, p.timeout, p.retries, p.backoff): job for job in jobs}
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    on_done(pending.pop(future), future.result())
        except BaseException:  # Ctrl-C, SIGTERM: stop retrying and starting, then kill what runs
            _STOP.set()
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            kill_all()


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FatalError("--executor ray needs Ray: pip install 'mendloop[ray]'") from None
    return ray


class RayExecutor:
    """Each task is a Ray task (with a CPU hint) that runs the same worker process as the local executor.

    On a multi-node cluster the output directory must be on a filesystem every node sees, and mendloop must be
    installed on the nodes; the outcome itself travels back through Ray, so preds/results are always complete.
    An already initialised Ray (``ray.init`` by the caller) is used as it is.
    """

    def __init__(self, workers: int, policy: RunPolicy, address: str | None = None, cpus: float = 1.0) -> None:
        self.workers = max(1, workers)
        self.policy = policy
        self.address = address
        self.cpus = cpus

    def _init(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError... for a bad cluster
                raise FatalError(f"cannot start or reach Ray ({self.address or 'local'}): {exc}") from None
        return ray

    def run(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        ray = self._init()
        p = self.policy
        remote = ray.remote(run_job).options(num_cpus=self.cpus, max_retries=0)
        queue = list(jobs)
        inflight: dict[Any, Job] = {}
        try:
            while queue or inflight:
                while queue and len(inflight) < self.workers:
                    job = queue.pop(0)
                    inflight[remote.remote(job, p.timeout, p.retries, p.backoff)] = job
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
                for ref in ready:
                    job = inflight.pop(ref)
                    try:
                        outcome: Outcome = ray.get(ref)
                    except Exception as exc:  # the Ray worker itself died (node lost, OOM killer)
                        outcome = {"kind": "crash", "result": None, "error": f"Ray task failed: {exc}"}
                    on_done(job, outcome)
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)


def make_executor(
    kind: str, workers: int, policy: RunPolicy, *, address: str | None = None, cpus: float = 1.0
) -> Executor:
    if kind == "local":
        return LocalExecutor(workers, policy)
    if kind == "ray":
        return RayExecutor(workers, policy, address=address, cpus=cpus)
    raise FatalError(f"unknown executor {kind!r}; choose local or ray")
