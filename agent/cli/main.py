"""The ``mendloop`` command: solve | fix | batch | trace | doctor | sandbox prune | demo.

Why ``main(argv) -> int`` around typer: like pre-commit, the whole program has one edge where a ``FatalError`` becomes
``mendloop: error: <one line>`` and an exit code (2), usage errors become exit 2, and Ctrl-C / SIGTERM leave a
resumable run behind. Tests call ``main([...])`` or run ``python -m agent.cli.main`` as a subprocess.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from agent.cli import shared as opt
from agent.config import Settings, env_config, load_settings
from agent.runner import default_run_dir, load_run, solve
from agent.task import RunResult, Task
from tools.errors import FatalError
from tools.workspace import apply_patch

app = typer.Typer(
    name="mendloop",
    help="A self-repair coding agent: write, test, read the failure, patch, run again.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(help="Manage sandboxes.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")

console = Console(stderr=True, highlight=False, soft_wrap=True)


class Interrupted(Exception):
    """SIGTERM, turned into an exception so that ``finally`` blocks close sandboxes before the process ends."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise Interrupted()


def progress(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


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


def run_task(task: Task, settings: Settings, out: Path | None, *, resume: bool = False) -> RunResult:
    """Solve with progress on stderr; the run directory is printed first so an interrupted run can be resumed."""
    run_dir = out or default_run_dir(task.instance_id)
    console.print(f"[bold]mendloop[/bold] run directory: {run_dir}")
    try:
        result = solve(task, settings, run_dir, resume=resume, progress=progress)
    except (KeyboardInterrupt, Interrupted):
        console.print(f"interrupted; continue with: mendloop solve --resume {run_dir}")
        raise
    print_summary(result)
    return result


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


@app.command("solve")
def solve_command(
    repo: Annotated[Path | None, typer.Option("--repo", help="The repository to repair (a local path).")] = None,
    task: Annotated[str | None, typer.Option("--task", help="What is wrong, in words.")] = None,
    issue_file: Annotated[Path | None, typer.Option("--issue-file", help="A file holding the task text.")] = None,
    issue: Annotated[
        str | None, typer.Option("--issue", help="A GitHub issue: URL, OWNER/REPO#N, or #N with --repo.")
    ] = None,
    base: Annotated[str | None, typer.Option("--base", help="Commit to start from (with --issue).")] = None,
    branch: Annotated[
        str | None, typer.Option("--branch", help="Create this branch and commit the fix (with --issue).")
    ] = None,
    open_pr: Annotated[bool, typer.Option("--open-pr", help="Push the branch and open a pull request.")] = False,
    draft: Annotated[bool, typer.Option("--draft", help="Open the pull request as a draft.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be done with --issue.")] = False,
    clone_url: Annotated[
        str | None, typer.Option("--clone-url", help="Clone from this URL instead of the API's (with --issue).")
    ] = None,
    github_api_url: Annotated[
        str | None, typer.Option("--github-api-url", help="GitHub API base (env MENDLOOP_GITHUB_API_URL).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default under ~/.local/state).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue an interrupted run.")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Apply the resolved patch to --repo.")] = False,
    test_cmd: opt.TestCmd = None,
    max_iterations: opt.MaxIterations = None,
    max_calls: opt.MaxCalls = None,
    max_tokens: opt.MaxTokens = None,
    max_time: opt.MaxTime = None,
    max_cost: opt.MaxCost = None,
    price_prompt: opt.PricePrompt = None,
    price_completion: opt.PriceCompletion = None,
    candidates: opt.Candidates = None,
    traces: opt.Traces = None,
    reproduce: opt.Reproduce = None,
    keep_tests: opt.KeepTests = None,
    sandbox: opt.SandboxKind = None,
    image: opt.Image = None,
    network: opt.Network = None,
    command_timeout: opt.CommandTimeout = None,
    base_url: opt.BaseUrl = None,
    model: opt.ModelName = None,
    dialect: opt.Dialect = None,
    temperature: opt.Temperature = None,
) -> int:
    """Repair a repository: a tested patch in the run directory, applied only with --apply."""
    flags = opt.collect_flags(
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
        reproduce=reproduce,
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
    if resume is not None:
        prior_task, public = load_run(resume)
        merged: dict[str, Any] = {**public, **env_config(os.environ)}
        merged.update({k: v for k, v in flags.items() if v is not None})
        settings = load_settings(None, merged, environ={})
        result = run_task(prior_task, settings, resume, resume=True)
        return _finish(result, prior_task, apply)
    if issue is not None:
        from agent.cli.solve import solve_issue_command

        settings = load_settings(repo, flags)
        return solve_issue_command(
            issue=issue,
            repo=repo,
            base=base,
            apply=apply,
            branch=branch,
            open_pr=open_pr,
            draft=draft,
            dry_run=dry_run,
            github_api_url=github_api_url,
            out=out,
            settings=settings,
            clone_url=clone_url,
        )
    if repo is None:
        raise FatalError("say which repository to repair with --repo PATH (or give --issue)")
    text = _read_task(task, issue_file)
    settings = load_settings(repo, flags)
    title = text.strip().splitlines()[0][:72] if text.strip() else ""
    the_task = Task(repo=repo.resolve(), text=text, instance_id=repo.resolve().name, title=title)
    result = run_task(the_task, settings, out)
    return _finish(result, the_task, apply)


def _finish(result: RunResult, task: Task, apply: bool) -> int:
    if apply:
        if result.resolved and result.patch.strip():
            apply_patch(task.repo, result.patch)
            console.print(f"applied the patch to {task.repo}")
        else:
            console.print("[yellow]not applied[/yellow]: the run did not resolve the task")
    return 0 if result.resolved else 1


@app.command("trace")
def trace_command(
    test_id: Annotated[str, typer.Argument(help="A pytest test id, e.g. tests/test_x.py::test_y.")],
    repo: Annotated[Path, typer.Option("--repo", help="The repository (default: here).")] = Path("."),
    fmt: Annotated[str, typer.Option("--format", help="readable or cwm.")] = "readable",
    sandbox: opt.SandboxKind = None,
    image: opt.Image = None,
    max_frames: Annotated[int, typer.Option("--max-frames")] = 200,
) -> int:
    """Print the execution trace of one test, in a readable form or in CWM's own format."""
    from sandboxes.select import open_sandbox
    from tools.tracing import render_cwm, render_readable, trace_test
    from tools.workspace import Workspace

    if fmt not in ("readable", "cwm"):
        raise FatalError(f"unknown --format {fmt!r}: choose readable or cwm")
    settings = load_settings(repo, {"sandbox": sandbox, "image": image})
    with tempfile.TemporaryDirectory(prefix="mendloop-trace-") as tmp:
        workspace = Workspace.create(repo, Path(tmp) / "ws")
        box = open_sandbox(settings.sandbox_spec(), workspace.root)
        try:
            trace = trace_test(box, test_id, max_frames=max_frames, timeout=settings.command_timeout)
        finally:
            box.close()
    if trace is None:
        raise FatalError(f"nothing to trace for {test_id}: it does not fail in project code, or was not collected")
    sys.stdout.write(render_cwm(trace) if fmt == "cwm" else render_readable(trace))
    sys.stdout.write("\n")
    return 0


@app.command("doctor")
def doctor_command(
    repo: Annotated[Path | None, typer.Option("--repo")] = None,
    sandbox: opt.SandboxKind = None,
    image: opt.Image = None,
    base_url: opt.BaseUrl = None,
    model: opt.ModelName = None,
) -> int:
    """Check the endpoint, Docker, bubblewrap and the image; say what is missing and how to fix it."""
    from agent.doors.doctor import render_doctor, run_doctor

    settings = load_settings(repo, {"sandbox": sandbox, "image": image, "base_url": base_url, "model": model})
    text, code = render_doctor(run_doctor(settings))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return code


@sandbox_app.command("prune")
def prune_command() -> int:
    """Remove containers and derived images that mendloop left behind."""
    from sandboxes.docker import prune

    removed = prune()
    for item in removed:
        sys.stdout.write(f"removed {item}\n")
    sys.stdout.write(f"{len(removed)} removed\n")
    return 0


def _register_optional() -> None:
    """Front doors that live in their own modules register here."""
    from agent.cli import batch as cli_batch, fix as cli_fix, local as cli_local

    app.command("batch")(cli_batch.batch)
    app.command("fix")(cli_fix.fix)
    app.command("demo")(cli_local.demo)
    app.command("serve-local")(cli_local.serve_local)


_register_optional()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map every outcome to an exit code: 0 resolved, 1 not resolved, 2 error, 130 interrupted."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = app(args=argv if argv is not None else sys.argv[1:], standalone_mode=False)
    except FatalError as exc:
        console.print(f"mendloop: error: {exc.message}", markup=False)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # typer's vendored click: usage errors, bad parameters
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        return 2
    except (KeyboardInterrupt, Interrupted, typer.Abort):
        console.print("mendloop: interrupted")
        return 130
    except Exception as exc:  # a bug of ours: still one line and exit 2, the traceback only on request
        if os.environ.get("MENDLOOP_DEBUG"):
            raise
        console.print(
            f"mendloop: internal error: {type(exc).__name__}: {exc} (set MENDLOOP_DEBUG=1 for the traceback)",
            markup=False,
        )
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
