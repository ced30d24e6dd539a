"""``mendloop batch``: repair every task of a JSONL file into one resumable output directory.

The batch's own options are table rows keyed by ``BatchOptions`` fields, the model, sandbox and budget options the
shared ones (every one ``solve`` takes; they become each task's defaults). Exit codes: 0 when the batch ran, whatever
the task outcomes; 2 for bad input or infrastructure; 130 when interrupted (Ctrl-C or SIGTERM: finished tasks are
kept, and running the same command again resumes). ``python -m agent.cli.batch`` runs the command on its own.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.shared import VIEW_OPTIONS, Flags, Opt, options, run
from agent.config import load_settings
from agent.doors.batch.run import BatchOptions, run_batch
from agent.live import is_terminal, plain_console

__all__ = ["BATCH_OPTIONS", "batch"]

_PANEL = "Batch"

BATCH_OPTIONS: tuple[Opt, ...] = (
    Opt("workers", "--workers", "Tasks run at once.", _PANEL, int, 1, min=1),
    Opt("executor", "--executor", "local (a process per task) or ray.", _PANEL, str, "local"),
    Opt("ray_address", "--ray-address", "Existing Ray cluster (default: start one locally).", _PANEL, str),
    Opt("cpus_per_task", "--cpus-per-task", "Ray CPU resource per task.", _PANEL, float, 1.0),
    Opt("pattern", "--filter", "Only instance_ids matching this regex.", _PANEL, str),
    Opt("limit", "--limit", "Run at most N tasks.", _PANEL, int, min=0),
    Opt("shuffle", "--shuffle", "Shuffle before --limit (seeded, so reruns pick the same tasks).", _PANEL, bool, False),
    Opt("seed", "--seed", "Seed for --shuffle.", _PANEL, int, 0),
    Opt("redo", "--redo", "Run tasks again even if already finished.", _PANEL, bool, False),
    Opt("retry_errors", "--retry-errors", "Run tasks again whose result was error.", _PANEL, bool, False),
    Opt(
        "task_timeout",
        "--task-timeout",
        "Seconds before a task is killed and recorded as error (0 = no limit).",
        _PANEL,
        float,
        3600.0,
    ),
    Opt("retries", "--retries", "Retries of a task after an infrastructure error or crash.", _PANEL, int, 2, min=0),
    Opt(
        "repos_dir",
        "--repos-dir",
        "Local mirrors for SWE-bench owner/name repos (DIR/owner__name, DIR/owner/name or DIR/name).",
        _PANEL,
        Path,
    ),
    Opt("repo_url", "--repo-url", "URL template for owner/name repos, e.g. https://github.com/{repo}.git", _PANEL, str),
)
"""``BatchOptions`` fields set from the command line (``--out`` and ``--no-progress`` are the command's own)."""


@options()
@options(BATCH_OPTIONS, into="batch_options")
@options(VIEW_OPTIONS, into="view")
def batch(
    tasks_file: Annotated[Path, typer.Argument(help="JSONL tasks: SWE-bench instances or mendloop's own form.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output directory (preds.jsonl, results.jsonl, runs/, report.md); "
            "rerunning with the same one resumes.",
            rich_help_panel=_PANEL,
        ),
    ],
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No live table or final table.", rich_help_panel=_PANEL)
    ] = False,
    *,
    view: Flags,
    batch_options: Flags,
    flags: Flags,
) -> None:
    """Repair every task of a JSONL file; writes preds.jsonl (SWE-bench), results.jsonl, report.md."""
    console = plain_console(stderr=True)
    settings = load_settings(None, flags)
    live = not no_progress and not view["quiet"] and is_terminal(sys.stderr)
    chosen = BatchOptions(out=out, progress=not no_progress, live=live, **batch_options)
    chosen.task_timeout = chosen.task_timeout or None
    try:
        summary = run_batch(tasks_file, settings, chosen, console=console)
    except KeyboardInterrupt:
        console.print("interrupted: finished tasks are saved; run the same command again to resume")
        raise
    console.print(f"ran {summary.ran}, skipped {summary.skipped} finished; {summary.overall.line()}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    """The command on its own, with the same error edge as ``mendloop``."""
    app = typer.Typer(add_completion=False)
    app.command()(batch)
    return run(app, argv)


if __name__ == "__main__":
    raise SystemExit(main())
