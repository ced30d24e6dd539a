"""solve(): one repair, from a task to a run directory with a tested patch - the call every front door makes.

Why the runner owns the run directory: it is the unit of resumption. ``run.json`` holds the task and the public
settings, ``checkpoints.sqlite`` holds the graph state after every finished node, ``workspace/`` the scratch tree.
``--resume`` rebuilds the live resources, restores the workspace to the last checkpoint's patch, and continues
without repeating a finished node.

Why the runner also guards the records: run.json and report.md are replaced atomically, and a full disk anywhere
in the run (a trajectory line, a checkpoint, a git call on the workspace) ends it with one line
(:class:`~agent.records.DiskFull`) that says how to continue, never with a torn record or an internal error.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver

from agent.budget import Budget, Usage
from agent.config import Settings, tuned
from agent.context import Observer, Progress, RunContext, scrub_checkpoints
from agent.graph import build_graph
from agent.model import probe_server
from agent.records import DiskFull, is_disk_full, write_atomic
from agent.report import link_notes, render_report
from agent.state import RepairState
from agent.task import RunResult, Task
from tools.errors import FatalError
from tools.git import Git
from tools.secrets import remember_settings, scrub_obj
from tools.testing import TestReport
from tools.workspace import COPY_SKIP, Workspace, validate_repo

RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints.sqlite"
THREAD: RunnableConfig = {"configurable": {"thread_id": "repair"}, "recursion_limit": 10_000}


def default_run_dir(slug: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where a run goes without ``--out``: ``$MENDLOOP_RUNS_DIR`` or ``~/.local/state/mendloop/runs``, never the repo.

    Why outside the repository: a run directory inside the target would be copied into the next run's workspace and
    show up in ``git status``.
    """
    env = os.environ if environ is None else environ
    base = Path(env.get("MENDLOOP_RUNS_DIR") or Path.home() / ".local" / "state" / "mendloop" / "runs")
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", slug).strip("-")[:40] or "run"
    return base / f"{time.strftime('%Y%m%d-%H%M%S')}-{clean}"


def load_run(run_dir: Path) -> tuple[Task, dict[str, Any]]:
    """The task and public settings a run was started with (for ``--resume``)."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise FatalError(f"{run_dir} is not a mendloop run directory (no {RUN_FILE})")
    data = json.loads(path.read_text(encoding="utf-8"))
    return Task.from_dict(data["task"]), data["settings"]


def _usage_so_far(run_dir: Path, settings: Settings) -> Usage:
    """Usage rebuilt from ``trajectory.jsonl``: every call made, including those of a node that was interrupted.

    Why not the checkpointed usage: a checkpoint is written when a node finishes, so the calls of the node that
    was killed would be forgotten and the budget would quietly grow on every resume.
    """
    usage = Usage()
    budget = Budget.from_settings(settings)
    path = run_dir / "trajectory.jsonl"
    if not path.is_file():
        return usage
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by the kill
            continue
        if isinstance(record, dict) and isinstance(record.get("usage"), dict):
            p, c = int(record["usage"].get("prompt_tokens", 0)), int(record["usage"].get("completion_tokens", 0))
            usage.add(str(record.get("node", "?")), p, c, budget.cost_of(p, c))
    return usage


def _save_elapsed(run_dir: Path, elapsed: float) -> None:
    """Keep the run's working time in run.json so that a resumed run's wall-time budget goes on counting."""
    path = run_dir / RUN_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data["elapsed"] = round(elapsed, 3)
    write_atomic(path, json.dumps(data, indent=2))


def _has_files(repo: Path) -> bool:
    """Whether ``repo`` holds anything a workspace would copy (what ``Workspace.create`` copies: a git work tree's
    tracked and unignored files, else every file outside the skipped directories)."""
    git = Git(repo)
    if git.is_work_tree():
        listed = git.run("ls-files", "-z", "-c", "-o", "--exclude-standard", "--", ".", check=False).stdout
        return any(name and not name.endswith("/") for name in listed.split("\0"))
    for _dirpath, dirnames, filenames in os.walk(repo):
        if filenames:
            return True
        dirnames[:] = [d for d in dirnames if d not in COPY_SKIP]
    return False


@contextmanager
def _disk_full_is_one_line(run_dir: Path) -> Iterator[None]:
    """A full disk anywhere inside becomes :class:`DiskFull`, naming the run directory and how to continue."""
    try:
        yield
    except DiskFull:
        raise
    except (OSError, sqlite3.OperationalError, FatalError) as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFull(
            f"the disk is full (writing the run in {run_dir}); free some space, then continue with: "
            f"mendloop solve --resume {run_dir}"
        ) from None


def _check_task(task: Task, settings: Settings, *, resume: bool = False) -> None:
    validate_repo(task.repo)
    if not resume and not _has_files(task.repo):
        raise FatalError(f"repository {task.repo} is empty: there is no file to repair")
    if not task.text.strip():
        raise FatalError("the task is empty: say what is wrong with --task TEXT or --issue-file FILE")
    if not settings.base_url:
        raise FatalError(
            "no model endpoint configured: pass --base-url URL or set MENDLOOP_BASE_URL "
            "(or run `mendloop serve-local` for a local model)"
        )


def _result(state: RepairState, run_dir: Path, usage: Usage, duration: float) -> RunResult:
    report = TestReport.from_dict(state["last_report"]) if state.get("last_report") else None
    return RunResult(
        status="resolved" if state.get("status") == "resolved" else "unresolved",
        patch=state.get("final_patch", ""),
        run_dir=run_dir,
        reason=state.get("reason", ""),
        iterations=state.get("iteration", 0),
        model_calls=usage.calls,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost=usage.cost,
        tests_passed=len(report.passed) if report else 0,
        tests_failed=len(report.failed) if report else 0,
        duration=duration,
        still_failing=report.failed if report else [],
        traced_rounds=sum(1 for r in state.get("rounds", []) if r.get("traced")),
    )


def _tuned(settings: Settings, progress: Progress) -> Settings:
    """The settings with ``tuning = "auto"`` applied for the endpoint (a small local model gets its profile)."""
    if settings.tuning != "auto" or not settings.base_url:
        return settings
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    info = probe_server(settings.base_url, settings.model, key)
    out = tuned(settings, llama_cpp=info.llama_cpp, params=info.params, served=info.name)
    if out is not settings:
        diff = [k for k in sorted(Settings.model_fields) if getattr(out, k) != getattr(settings, k)]
        changed = ", ".join(f"{k}={getattr(out, k)}" for k in diff)
        progress(f"a small local model: tuned for it ({changed})")
    return out


def _run_graph(app: Any, value: Any, ctx: RunContext, observer: Observer | None) -> None:
    """Run the graph to its end; an observer is shown every node's update as the node finishes."""
    if observer is None:
        app.invoke(value, THREAD, context=ctx)
        return
    for chunk in app.stream(value, THREAD, context=ctx, stream_mode="updates"):
        for node, update in chunk.items():
            if isinstance(update, Mapping):
                observer.update(node, update)


def solve(
    task: Task,
    settings: Settings,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    observer: Observer | None = None,
) -> RunResult:
    """Run (or resume) one repair; infrastructure failures raise ``FatalError``, the user's repo is never touched.

    ``observer`` (the live view) watches the run: model answers as they are written, each node's update.
    """
    run_dir = run_dir.resolve()
    _check_task(task, settings, resume=resume)
    remember_settings(settings)  # before anything is written: run.json holds the task text
    with _disk_full_is_one_line(run_dir):
        return _solve(task, settings, run_dir, resume=resume, progress=progress, observer=observer)


def _solve(
    task: Task,
    settings: Settings,
    run_dir: Path,
    *,
    resume: bool,
    progress: Progress | None,
    observer: Observer | None,
) -> RunResult:
    started = time.monotonic()
    checkpoints = run_dir / CHECKPOINTS
    if resume:
        if not checkpoints.is_file():
            raise FatalError(f"nothing to resume in {run_dir}: no checkpoint was written")
        workspace = Workspace.open(run_dir / "workspace")
    else:
        if checkpoints.exists():
            raise FatalError(f"{run_dir} already holds a run: pass --resume {run_dir}, or choose another --out")
        settings = _tuned(settings, progress or (lambda _m: None))
        run_dir.mkdir(parents=True, exist_ok=True)
        record = scrub_obj({"task": task.to_dict(), "settings": settings.public_dict()})
        write_atomic(run_dir / RUN_FILE, json.dumps(record, indent=2))
        workspace = Workspace.create(task.repo, run_dir / "workspace")
    conn = sqlite3.connect(str(checkpoints), check_same_thread=False)
    try:
        app = build_graph().compile(checkpointer=scrub_checkpoints(SqliteSaver(conn)))
        values: dict[str, Any] = dict(app.get_state(THREAD).values) if resume else {}
        usage = _usage_so_far(run_dir, settings) if resume else Usage()
        before = float(json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8")).get("elapsed", 0.0))
        ctx = RunContext(
            settings=settings,
            task=task,
            run_dir=run_dir,
            workspace=workspace,
            usage=usage,
            started_at=time.time() - before,
            progress=progress or (lambda _m: None),
            on_delta=observer.delta if observer is not None else None,
        )
        if observer is not None:
            observer.started(ctx)
        finished = False
        try:
            if resume:
                workspace.reset()
                if values.get("workspace_patch", "").strip():
                    workspace.apply(values["workspace_patch"])
                if app.get_state(THREAD).next:
                    _run_graph(app, None, ctx, observer)
            else:
                _run_graph(app, RepairState(iteration=0), ctx, observer)
            finished = True
        finally:
            ctx.close()
            try:
                _save_elapsed(run_dir, before + time.monotonic() - started)
            except OSError:
                if finished:  # else the error that ended the run is the one to report; run.json is still whole
                    raise
        state = cast(RepairState, app.get_state(THREAD).values)
    finally:
        conn.close()
    duration = time.monotonic() - started
    notes = link_notes(workspace.outside_links())
    write_atomic(run_dir / "report.md", render_report(task, state, usage, duration, settings.model, notes=notes))
    if not (run_dir / "trajectory.jsonl").exists():
        (run_dir / "trajectory.jsonl").touch()
    return _result(state, run_dir, usage, duration)
