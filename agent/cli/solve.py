"""``mendloop solve --issue``: the CLI's thin layer over :mod:`agent.doors.issue.flow`.

Why separate from ``agent/cli.py``: the lead's ``solve`` command parses the common options into ``Settings``
and hands the issue options here; this module only turns them into an :class:`~agent.doors.issue.flow.IssueRequest`
and prints the outcome (to stderr, with rich). ``FatalError`` is not caught: the CLI edge prints it and exits
2."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from agent.config import Settings
from agent.doors.issue.flow import IssueOutcome, IssueRequest, Solver, solve_issue

__all__ = ["solve_issue_command"]


def solve_issue_command(
    issue: str,
    repo: Path | None,
    base: str | None,
    apply: bool,
    branch: str | None,
    open_pr: bool,
    draft: bool,
    dry_run: bool,
    github_api_url: str | None,
    out: Path | None,
    settings: Settings,
    *,
    clone_url: str | None = None,
    solver: Solver | None = None,
    console: Console | None = None,
) -> int:
    """Solve a GitHub issue; return 0 when resolved (or after ``--dry-run``), 1 when not resolved."""
    console = console or Console(stderr=True)
    request = IssueRequest(
        issue=issue,
        repo=repo,
        base=base,
        apply=apply,
        branch=branch,
        open_pr=open_pr,
        draft=draft,
        dry_run=dry_run,
        github_api_url=github_api_url,
        clone_url=clone_url,
        out=out,
    )
    outcome = solve_issue(request, settings, solver=solver, console=console)
    _show(outcome, console)
    return outcome.exit_code


def _show(outcome: IssueOutcome, console: Console) -> None:
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
