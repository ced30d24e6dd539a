"""``mendloop fix [FILES...]``: the pre-commit hook's command.

Why a module of its own: ``agent/cli.py`` registers ``fix`` by itself once this module exists; the model, sandbox and
budget options are the shared ones from ``cli_options`` so they read exactly as they do for ``solve``. Exit codes
follow pre-commit: 0 all checks pass, 1 files were modified (or still fail), 2 infrastructure or usage error (0 with
``--fail-open``). The logic lives in ``agent.doors.precommit``; this only turns flags into settings and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.syntax import Syntax

from agent.cli.shared import (
    BaseUrl,
    Candidates,
    CommandTimeout,
    Dialect,
    Image,
    KeepTests,
    MaxCalls,
    MaxCost,
    MaxIterations,
    MaxTime,
    MaxTokens,
    ModelName,
    Network,
    PriceCompletion,
    PricePrompt,
    Reproduce,
    SandboxKind,
    Temperature,
    TestCmd,
    Traces,
    settings_from_flags,
)
from agent.config import Settings
from agent.doors.precommit import Unavailable, git_root, repo_relative, run_fix
from agent.runner import default_run_dir
from agent.task import RunResult, Task

__all__ = ["fix"]

err = Console(stderr=True, highlight=False, soft_wrap=True)


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
    test_cmd: TestCmd = None,
    max_iterations: MaxIterations = None,
    max_calls: MaxCalls = None,
    max_tokens: MaxTokens = None,
    max_time: MaxTime = None,
    max_cost: MaxCost = None,
    price_prompt: PricePrompt = None,
    price_completion: PriceCompletion = None,
    candidates: Candidates = None,
    traces: Traces = None,
    reproduce: Reproduce = None,
    keep_tests: KeepTests = None,
    sandbox: SandboxKind = None,
    image: Image = None,
    network: Network = None,
    command_timeout: CommandTimeout = None,
    base_url: BaseUrl = None,
    model: ModelName = None,
    dialect: Dialect = None,
    temperature: Temperature = None,
) -> int:
    """Run the checks; if they fail, repair the staged files in place and print the diff (pre-commit hook)."""
    from agent.cli.main import progress  # here: agent.cli.main imports this module while it loads

    root = git_root(repo.resolve())
    settings = settings_from_flags(
        root,
        test_cmd=test_cmd,
        max_iterations=max_iterations,
        max_calls=max_calls,
        max_tokens=max_tokens,
        max_time=max_time,
        max_cost=max_cost,
        price_prompt=price_prompt,
        price_completion=price_completion,
        candidates=candidates,
        traces=traces,
        # The failing checks already reproduce the problem: a generated reproduction test is opt-in here.
        reproduce=bool(reproduce),
        keep_tests=keep_tests,
        sandbox=sandbox,
        image=image,
        network=network,
        command_timeout=command_timeout,
        base_url=base_url,
        model=model,
        dialect=dialect,
        temperature=temperature,
    )
    rel = repo_relative(root, files or [], Path.cwd())
    run_dir = out or default_run_dir(f"fix-{root.name}")

    def solver(task: Task, the_settings: Settings, where: Path) -> RunResult:
        from agent.runner import solve

        err.print(f"[bold]mendloop[/bold] repairing; run directory: {where}")
        return solve(task, the_settings, where, progress=progress)

    try:
        outcome = run_fix(root, rel, settings, run_dir=run_dir, solver=solver, force=force, progress=progress)
    except Unavailable as exc:
        if exc.failures:
            err.print("checks failing:\n" + exc.failures, markup=False)
        if not fail_open:
            raise
        err.print(f"mendloop: warning: {exc.message} (--fail-open: not blocking)", markup=False)
        return 0
    if outcome.diff:
        _print_diff(outcome.diff)
    sys.stdout.write(outcome.message + "\n")
    sys.stdout.flush()
    return outcome.exit_code


def _print_diff(diff: str) -> None:
    """Coloured on a terminal; plain under pre-commit (which captures the output) so it can be copied or applied."""
    if sys.stdout.isatty():
        Console(highlight=False).print(Syntax(diff, "diff", background_color="default"))
    else:
        sys.stdout.write(diff if diff.endswith("\n") else diff + "\n")
