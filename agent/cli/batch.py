"""``mendloop batch``: the command-line face of batch repair jobs.

Why a module of its own: the lead's ``agent/cli.py`` registers this function with one line
(``app.command("batch")(cli_batch.batch)``); the shared model/sandbox/budget options come from ``cli_options``
so they read exactly as they do for ``solve``. Exit codes: 0 when the batch ran (whatever the task outcomes),
2 for bad input or infrastructure, 130 when interrupted (Ctrl-C or SIGTERM; finished tasks are kept, rerun to
resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from agent.doors.batch.run import BatchOptions, run_batch
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
from tools.errors import FatalError

__all__ = ["batch"]

_PANEL = "Batch"


def batch(
    tasks_file: Annotated[Path, typer.Argument(help="JSONL tasks: SWE-bench instances or mendloop's own form.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output directory (preds.jsonl, results.jsonl, runs/, "
            "report.md); rerunning with the same one resumes.",
            rich_help_panel=_PANEL,
        ),
    ],
    workers: Annotated[int, typer.Option("--workers", min=1, help="Tasks run at once.", rich_help_panel=_PANEL)] = 1,
    executor: Annotated[
        str, typer.Option("--executor", help="local (a process per task) or ray.", rich_help_panel=_PANEL)
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="Existing Ray cluster (default: start one locally).", rich_help_panel=_PANEL
        ),
    ] = None,
    cpus_per_task: Annotated[
        float, typer.Option("--cpus-per-task", help="Ray CPU resource per task.", rich_help_panel=_PANEL)
    ] = 1.0,
    filter_: Annotated[
        str | None,
        typer.Option("--filter", help="Only instance_ids matching this regex.", rich_help_panel=_PANEL),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=0, help="Run at most N tasks.", rich_help_panel=_PANEL)
    ] = None,
    shuffle: Annotated[
        bool,
        typer.Option(
            "--shuffle",
            help="Shuffle before --limit (seeded, so reruns pick the same tasks).",
            rich_help_panel=_PANEL,
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --shuffle.", rich_help_panel=_PANEL)] = 0,
    redo: Annotated[
        bool, typer.Option("--redo", help="Run tasks again even if already finished.", rich_help_panel=_PANEL)
    ] = False,
    retry_errors: Annotated[
        bool,
        typer.Option("--retry-errors", help="Run tasks again whose result was error.", rich_help_panel=_PANEL),
    ] = False,
    task_timeout: Annotated[
        float,
        typer.Option(
            "--task-timeout",
            help="Seconds before a task is killed and recorded as error (0 = no limit).",
            rich_help_panel=_PANEL,
        ),
    ] = 3600.0,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            min=0,
            help="Retries of a task after an infrastructure error or crash.",
            rich_help_panel=_PANEL,
        ),
    ] = 2,
    repos_dir: Annotated[
        Path | None,
        typer.Option(
            "--repos-dir",
            help="Local mirrors for SWE-bench owner/name repos (DIR/owner__name, DIR/owner/name or DIR/name).",
            rich_help_panel=_PANEL,
        ),
    ] = None,
    repo_url: Annotated[
        str | None,
        typer.Option(
            "--repo-url",
            help="URL template for owner/name repos, e.g. https://github.com/{repo}.git",
            rich_help_panel=_PANEL,
        ),
    ] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No live bar or final table.", rich_help_panel=_PANEL)
    ] = False,
    base_url: BaseUrl = None,
    model: ModelName = None,
    dialect: Dialect = None,
    temperature: Temperature = None,
    max_iterations: MaxIterations = None,
    max_calls: MaxCalls = None,
    max_tokens: MaxTokens = None,
    max_time: MaxTime = None,
    max_cost: MaxCost = None,
    price_prompt: PricePrompt = None,
    price_completion: PriceCompletion = None,
    test_cmd: TestCmd = None,
    candidates: Candidates = None,
    traces: Traces = None,
    reproduce: Reproduce = None,
    keep_tests: KeepTests = None,
    sandbox: SandboxKind = None,
    image: Image = None,
    network: Network = None,
    command_timeout: CommandTimeout = None,
) -> None:
    """Repair every task of a JSONL file; writes preds.jsonl (SWE-bench), results.jsonl, report.md."""
    console = Console(stderr=True, soft_wrap=True)
    try:
        settings = settings_from_flags(
            None,
            base_url=base_url,
            model=model,
            dialect=dialect,
            temperature=temperature,
            max_iterations=max_iterations,
            max_calls=max_calls,
            max_tokens=max_tokens,
            max_time=max_time,
            max_cost=max_cost,
            price_prompt=price_prompt,
            price_completion=price_completion,
            test_cmd=test_cmd,
            candidates=candidates,
            traces=traces,
            reproduce=reproduce,
            keep_tests=keep_tests,
            sandbox=sandbox,
            image=image,
            network=network,
            command_timeout=command_timeout,
        )
        options = BatchOptions(
            out=out,
            workers=workers,
            executor=executor,
            ray_address=ray_address,
            cpus_per_task=cpus_per_task,
            pattern=filter_,
            limit=limit,
            shuffle=shuffle,
            seed=seed,
            redo=redo,
            retry_errors=retry_errors,
            task_timeout=task_timeout or None,
            retries=retries,
            repos_dir=repos_dir,
            repo_url=repo_url,
            progress=not no_progress,
        )
        summary = run_batch(tasks_file, settings, options, console=console)
    except FatalError as exc:
        console.print(f"[red]error:[/] {escape(exc.message)}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        console.print("interrupted: finished tasks are saved; run the same command again to resume")
        raise typer.Exit(130) from None
    console.print(f"ran {summary.ran}, skipped {summary.skipped} finished; {summary.overall.line()}", highlight=False)


def main() -> None:
    """``python -m agent.cli.batch``: the command on its own, until and besides ``mendloop batch``."""
    app = typer.Typer(add_completion=False)
    app.command()(batch)
    app()


if __name__ == "__main__":
    main()
