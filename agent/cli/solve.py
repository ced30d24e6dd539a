"""``mendloop solve``: repair a repository from a task text, a GitHub issue (``--issue``), or an interrupted run.

The repair is :func:`agent.runner.solve`; this module turns the command line into a task and settings, shows progress
and a summary on stderr, and applies the patch with ``--apply``. The ``--issue`` flow (checkout, branch, pull request)
is :func:`agent.doors.issue.flow.solve_issue`: its options are table rows here, handed over as one ``IssueRequest``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agent import runner
from agent.cli.shared import VIEW_OPTIONS, Flags, Interrupted, Opt, console, options, watching
from agent.config import Settings, env_config, load_settings
from agent.doors.issue.flow import IssueOutcome, IssueRequest, Solver, solve_issue
from agent.task import RunResult, Task
from tools.errors import FatalError
from tools.workspace import apply_patch

__all__ = ["ISSUE_OPTIONS", "run_task", "solve"]

ISSUE_OPTIONS: tuple[Opt, ...] = (
    Opt("issue", "--issue", "A GitHub issue: URL, OWNER/REPO#N, or #N with --repo.", type=str),
    Opt("base", "--base", "Commit to start from (with --issue).", type=str),
    Opt("branch", "--branch", "Create this branch and commit the fix (with --issue).", type=str),
    Opt("open_pr", "--open-pr", "Push the branch and open a pull request.", type=bool, default=False),
    Opt("draft", "--draft", "Open the pull request as a draft.", type=bool, default=False),
    Opt("dry_run", "--dry-run", "Print what would be done with --issue.", type=bool, default=False),
    Opt("clone_url", "--clone-url", "Clone from this URL instead of the API's (with --issue).", type=str),
    Opt("github_api_url", "--github-api-url", "GitHub API base (env MENDLOOP_GITHUB_API_URL).", type=str),
)
"""The ``IssueRequest`` fields only ``--issue`` uses; ``repo``, ``out`` and ``apply`` are the command's own."""


def print_summary(result: RunResult) -> None:
    table = Table(show_header=False, box=None)
    style = "green" if result.resolved else "yellow"
    table.add_row("status", f"[{style}]{result.status}[/{style}]")
    table.add_row("why", result.reason)
    table.add_row("rounds", str(result.iterations))
    table.add_row("model calls", str(result.model_calls))
    table.add_row("tokens", f"{result.prompt_tokens} prompt + {result.completion_tokens} completion")
    table.add_row("tests", f"{result.tests_passed} passed, {result.tests_failed} failed")
    table.add_row("run dir", str(result.run_dir))
    console.print(table)


def run_task(
    task: Task, settings: Settings, out: Path | None, *, resume: bool = False, quiet: bool = False
) -> RunResult:
    """Solve with progress on stderr (live on a terminal unless ``quiet``); the run directory is printed first so an
    interrupted run can be resumed."""
    run_dir = out or runner.default_run_dir(task.instance_id)
    console.print(f"[bold]mendloop[/bold] run directory: {run_dir}")
    try:
        with watching(quiet) as (progress, observer):
            result = runner.solve(task, settings, run_dir, resume=resume, progress=progress, observer=observer)
    except (KeyboardInterrupt, Interrupted):
        console.print(f"interrupted; continue with: mendloop solve --resume {run_dir}")
        raise
    print_summary(result)
    return result


@options()
@options(ISSUE_OPTIONS, into="request")
@options(VIEW_OPTIONS, into="view")
def solve(
    repo: Annotated[Path | None, typer.Option("--repo", help="The repository to repair (a local path).")] = None,
    task: Annotated[str | None, typer.Option("--task", help="What is wrong, in words.")] = None,
    issue_file: Annotated[Path | None, typer.Option("--issue-file", help="A file holding the task text.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default under ~/.local/state).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue an interrupted run.")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Apply the resolved patch to --repo.")] = False,
    *,
    view: Flags,
    request: Flags,
    flags: Flags,
) -> int:
    """Repair a repository: a tested patch in the run directory, applied only with --apply."""
    quiet = bool(view["quiet"])
    if resume is not None:
        prior_task, public = runner.load_run(resume)
        merged: dict[str, Any] = {**public, **env_config(os.environ)}
        merged.update({k: v for k, v in flags.items() if v is not None})
        settings = load_settings(None, merged, environ={})
        result = run_task(prior_task, settings, resume, resume=True, quiet=quiet)
        return _finish(result, prior_task, apply)
    if request["issue"] is not None:
        asked = IssueRequest(**request, repo=repo, apply=apply, out=out)
        outcome = solve_issue(asked, load_settings(repo, flags), console=console, solver=_issue_solver(quiet))
        _show(outcome)
        return outcome.exit_code
    if repo is None:
        raise FatalError("say which repository to repair with --repo PATH (or give --issue)")
    text = _read_task(task, issue_file)
    settings = load_settings(repo, flags)
    title = text.strip().splitlines()[0][:72] if text.strip() else ""
    the_task = Task(repo=repo.resolve(), text=text, instance_id=repo.resolve().name, title=title)
    result = run_task(the_task, settings, out, quiet=quiet)
    return _finish(result, the_task, apply)


def _issue_solver(quiet: bool) -> Solver:
    """The repair of ``--issue``, shown like any other (the flow prints its own steps around it)."""

    def run(task: Task, settings: Settings, run_dir: Path) -> RunResult:
        with watching(quiet) as (progress, observer):
            return runner.solve(task, settings, run_dir, progress=progress, observer=observer)

    return run


def _read_task(task: str | None, issue_file: Path | None) -> str:
    if task and issue_file:
        raise FatalError("give either --task or --issue-file, not both")
    if issue_file is not None:
        try:
            return issue_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FatalError(f"issue file {issue_file} does not exist") from None
        except UnicodeDecodeError:
            raise FatalError(f"issue file {issue_file} is not UTF-8 text") from None
    return task or ""


def _finish(result: RunResult, task: Task, apply: bool) -> int:
    if apply:
        if result.resolved and result.patch.strip():
            apply_patch(task.repo, result.patch)
            console.print(f"applied the patch to {task.repo}")
        else:
            console.print("[yellow]not applied[/yellow]: the run did not resolve the task")
    return 0 if result.resolved else 1


def _show(outcome: IssueOutcome) -> None:
    """The outcome of ``--issue`` after the flow's own progress lines (nothing after ``--dry-run``)."""
    result = outcome.result
    if result is None:
        return
    colour = "green" if result.resolved else "red"
    console.print(f"[bold {colour}]{result.status}[/bold {colour}] {outcome.plan.ref}: {outcome.plan.issue.title}")
    console.print(f"  run directory: {outcome.plan.run_dir}")
    for note in outcome.notes:
        console.print(f"  {note}")
    if outcome.pushed_to:
        console.print(f"  pushed: {outcome.pushed_to}")
    if outcome.pr_url:
        console.print(f"  pull request: {outcome.pr_url}")
