"""``mendloop fix [FILES...]``: the pre-commit hook's command.

Exit codes follow pre-commit: 0 all checks pass, 1 files were modified (or still fail), 2 infrastructure or usage
error (0 with ``--fail-open``). The logic lives in :mod:`agent.doors.precommit`; this module turns flags into
settings and prints the rounds (as report.md and ``mendloop show`` tell them), the diff and the verdict. Under
pre-commit the output is captured, not a terminal: plain text, one progress line per step.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agent import runner
from agent.cli.shared import VIEW_OPTIONS, Flags, console, options, progress, watching
from agent.config import Settings, load_settings
from agent.doors.precommit import Unavailable, git_root, repo_relative, run_fix
from agent.live import plain_console
from agent.rounds import rich_diff, rich_round
from agent.show.load import load_rounds
from agent.task import RunResult, Task

__all__ = ["fix"]


@options()
@options(VIEW_OPTIONS, into="view")
def fix(
    files: Annotated[
        list[str] | None, typer.Argument(help="The files being committed: the ones the fix may edit.")
    ] = None,
    repo: Annotated[Path, typer.Option("--repo", help="Inside the repository to check (default: here).")] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Run directly: edit files even if they have unstaged changes.")
    ] = False,
    fail_open: Annotated[
        bool, typer.Option("--fail-open", help="No endpoint, network or sandbox: warn and exit 0 instead of 2.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default under ~/.local/state).")] = None,
    *,
    view: Flags,
    flags: Flags,
) -> int:
    """Run the checks; if they fail, repair the staged files in place and print the diff (pre-commit hook)."""
    root = git_root(repo.resolve())
    # The failing checks already reproduce the problem: a generated reproduction test is opt-in here.
    settings = load_settings(root, {**flags, "reproduce": bool(flags["reproduce"])})
    rel = repo_relative(root, files or [], Path.cwd())
    run_dir = out or runner.default_run_dir(f"fix-{root.name}")

    def solver(task: Task, the_settings: Settings, where: Path) -> RunResult:
        console.print(f"[bold]mendloop[/bold] repairing; run directory: {where}")
        with watching(bool(view["quiet"])) as (shown, observer):
            result = runner.solve(task, the_settings, where, progress=shown, observer=observer)
        if observer is None:  # the live view showed each round as it ended
            for r in load_rounds(where):
                console.print(rich_round(r))
        return result

    try:
        outcome = run_fix(root, rel, settings, run_dir=run_dir, solver=solver, force=force, progress=progress)
    except Unavailable as exc:
        if exc.failures:
            console.print("checks failing:\n" + exc.failures, markup=False)
        if not fail_open:
            raise
        console.print(f"mendloop: warning: {exc.message} (--fail-open: not blocking)", markup=False)
        return 0
    if outcome.diff:
        _print_diff(outcome.diff)
    sys.stdout.write(outcome.message + "\n")
    sys.stdout.flush()
    return outcome.exit_code


def _print_diff(diff: str) -> None:
    """Coloured on a terminal; plain under pre-commit (which captures the output) so it can be copied or applied."""
    if sys.stdout.isatty():
        plain_console().print(rich_diff(diff))
    else:
        sys.stdout.write(diff if diff.endswith("\n") else diff + "\n")
