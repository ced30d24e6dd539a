"""One batch task in a process of its own: check the repository out, repair it, write ``outcome.json``.

Why a process per task: a task that crashes the interpreter, leaks memory or hangs in a test can then be killed
(``--task-timeout``) without touching the batch or its other tasks. :mod:`agent.doors.batch.executors` starts
:func:`child_main` from a forkserver with the job as an argument, so the API key in the settings is never written
to disk; the outcome goes to a file in the run dir (written atomically) because the repair itself may print anything
on stdout, which goes to ``worker.log``.

A watchdog thread ends the worker when the batch that started it dies, so killing the batch (even with SIGKILL) does
not leave repairs running on their own (and spending model calls): it watches the batch process itself through a
pidfd (the worker's parent is the forkserver, which may outlive the batch for a while), and takes along its own
process group and the sandboxed commands it runs, which sit in sessions of their own.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import select
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.doors.batch.tasks import BatchTask
from agent.live.batch import StatusWriter
from agent.task import RunResult, Task
from sandboxes._proc import kill_running
from tools.errors import FatalError
from tools.git import Git

__all__ = ["LOG_FILE", "OUTCOME_FILE", "CheckoutError", "checkout", "child_main", "clean_run_dir", "run_one"]

OUTCOME_FILE = "outcome.json"
LOG_FILE = "worker.log"
_GIT_TIMEOUT = 600.0


class CheckoutError(FatalError):
    """The task's repository could not be cloned or its base commit checked out."""


def _slug_source(slug: str, repos_dir: str | None, repo_url: str | None) -> str:
    """Where to clone an "owner/name" repo from: a local mirror first, then the URL template."""
    owner, _, name = slug.partition("/")
    if repos_dir:
        base = Path(repos_dir)
        for candidate in (base / f"{owner}__{name}", base / owner / name, base / name):
            if candidate.is_dir():
                return str(candidate.resolve())
    if repo_url:
        return repo_url.format(repo=slug, owner=owner, name=name)
    where = f" (not found under {repos_dir})" if repos_dir else ""
    raise CheckoutError(f"repo {slug!r} is owner/name{where}: give --repos-dir with a local mirror or --repo-url")


def checkout(task: BatchTask, run_dir: Path, *, repos_dir: str | None = None, repo_url: str | None = None) -> Path:
    """The directory to repair: the user's path when no commit is asked for, else a fresh clone in run_dir."""
    if task.repo_kind == "path" and not task.base_commit:
        return Path(task.repo)
    source = _slug_source(task.repo, repos_dir, repo_url) if task.repo_kind == "slug" else task.repo
    dest = run_dir / "repo"
    if dest.exists():
        shutil.rmtree(dest)
    try:
        Git(run_dir).run("clone", "--quiet", source, str(dest), timeout=_GIT_TIMEOUT)
        if task.base_commit:
            Git(dest).run(
                "-c", "advice.detachedHead=false", "checkout", "--quiet", task.base_commit, timeout=_GIT_TIMEOUT
            )
    except FatalError as exc:
        raise CheckoutError(exc.message) from None
    return dest


def _load(target: str) -> Callable[..., RunResult]:
    module, _, name = target.partition(":")
    fn: Callable[..., RunResult] = getattr(importlib.import_module(module), name)
    return fn


def clean_run_dir(run_dir: Path) -> None:
    """Empty ``run_dir`` but for the worker log, so every attempt is a fresh repair.

    Why not ``solve(resume=True)``: a worker killed before its first checkpoint leaves a run that resumes into an
    empty "unresolved"; starting over costs at most the tokens of the tasks that were in flight.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    for entry in run_dir.iterdir():
        if entry.name == LOG_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Check out and repair one task; infrastructure errors become an outcome, never an exception."""
    run_dir = Path(job["run_dir"])
    clean_run_dir(run_dir)
    task = BatchTask.from_dict(job["task"])
    status = StatusWriter(run_dir)  # what the batch's live board shows as this task's step
    status("checking out the repository")
    try:
        overrides: dict[str, Any] = {}
        if task.setup is not None:
            overrides["setup"] = task.setup
        if task.image:
            overrides["image"] = task.image
        settings = Settings.model_validate({**job["settings"], **overrides})
        repo = checkout(task, run_dir, repos_dir=job.get("repos_dir"), repo_url=job.get("repo_url"))
        solve = _load(job.get("solve", "agent.runner:solve"))
        status("repairing")
        shown = {"progress": status} if "progress" in inspect.signature(solve).parameters else {}
        result = solve(
            Task(
                repo=repo,
                text=task.text,
                instance_id=task.instance_id,
                test_cmd=task.test_cmd,
                fail_to_pass=task.fail_to_pass,
                pass_to_pass=task.pass_to_pass,
            ),
            settings,
            run_dir,
            **shown,
        )
        return {"kind": "ok", "result": result.to_dict(), "error": ""}
    except FatalError as exc:
        return {"kind": "fatal", "result": None, "error": exc.message}
    except Exception as exc:  # a bug in a repair must not take the batch down: record it, keep the traceback
        traceback.print_exc()
        return {"kind": "exception", "result": None, "error": f"{type(exc).__name__}: {exc}"}


def _write_outcome(run_dir: Path, outcome: dict[str, Any]) -> None:
    tmp = run_dir / (OUTCOME_FILE + ".tmp")
    tmp.write_text(json.dumps(outcome), encoding="utf-8")
    os.replace(tmp, run_dir / OUTCOME_FILE)


WATCH_EVERY = 0.2  # seconds between two looks at the parent when the batch itself cannot be waited on


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die() -> None:
    """End this worker now, with the sandboxed commands it runs and everything in its process group."""
    kill_running()
    with contextlib.suppress(OSError):
        if os.getpgid(0) == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(137)


def _watch_batch(batch: int | None, parent: int) -> None:
    """End this worker once the batch process ``batch`` (or, failing that, the parent) is gone.

    A pidfd becomes readable the moment its process exits: no polling delay, no pid reuse.
    """
    pidfd: int | None = None
    if batch:
        try:
            pidfd = os.pidfd_open(batch)
        except ProcessLookupError:
            _die()
        except (AttributeError, OSError):  # an old kernel: look now and then instead
            pidfd = None
    while True:
        if pidfd is not None:
            ready, _, _ = select.select([pidfd], [], [], 1.0)
            if ready:
                _die()
        else:
            time.sleep(WATCH_EVERY)
            if batch and not _alive(batch):
                _die()
        if os.getppid() != parent:
            _die()


def child_main(job: dict[str, Any], log_path: str) -> None:
    """Entry of a forked task process: own process group, output to the log, watchdog on, outcome to a file."""
    os.setsid()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    batch = job.get("batch_pid")
    watch = threading.Thread(target=_watch_batch, args=(batch, os.getppid()), daemon=True, name="watch-batch")
    watch.start()
    outcome = run_one(job)
    _write_outcome(Path(job["run_dir"]), outcome)
    sys.stdout.flush()
    sys.stderr.flush()
