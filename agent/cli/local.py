"""``mendloop serve-local`` and ``mendloop demo``: typer command functions, registered by ``agent/cli.py``.

Why a module of its own: both commands need the local-model machinery (build, download, process) that no other
front door needs. Until ``agent/cli.py`` registers them, ``python -m agent.cli.local serve-local|demo`` runs them with
the same error edge (``FatalError`` -> one line, exit 2).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.cli import shared as opt
from agent.config import Settings
from agent.task import RunResult, Task
from tools.errors import FatalError

Port = Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 = any free port).")]
Threads = Annotated[int | None, typer.Option("--threads", help="CPU threads (default: all cores).")]
LocalModel = Annotated[
    str | None,
    typer.Option(
        "--local-model",
        help="A .gguf file, or qwen2.5-coder-1.5b-instruct-q4_k_m (default) / qwen2.5-coder-0.5b-instruct-q4_k_m.",
    ),
]
CtxSize = Annotated[int, typer.Option("--ctx-size", help="Context window in tokens.")]


def _progress(message: str) -> None:
    from agent.cli.main import progress

    progress(message)


def serve_local(
    port: Port = 8080,
    threads: Threads = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A .gguf file, or a known name: qwen2.5-coder-1.5b-instruct-q4_k_m (default), "
            "qwen2.5-coder-0.5b-instruct-q4_k_m.",
        ),
    ] = None,
    ctx_size: CtxSize = 4096,
) -> int:
    """Start an OpenAI-compatible server for a small code model on the CPU; print its base URL; run until Ctrl-C."""
    from agent.doors.local.server import start_local

    with start_local(model, port=port, threads=threads, ctx_size=ctx_size, progress=_progress) as server:
        sys.stdout.write(f"{server.base_url}\n")
        sys.stdout.flush()
        _progress(f"serving {server.model_id}; use: --base-url {server.base_url} --model {server.model_id}")
        _progress("press Ctrl-C to stop")
        code = server.wait()
    raise FatalError(f"llama-server stopped by itself (exit code {code}); see {server.log_path}")


def _run(task: Task, settings: Settings, out: Path | None) -> RunResult:
    from agent.cli.main import run_task

    return run_task(task, settings, out)


def demo(
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default under ~/.local/state).")] = None,
    local_model: LocalModel = None,
    threads: Threads = None,
    sandbox: opt.SandboxKind = None,
    base_url: opt.BaseUrl = None,
    model: opt.ModelName = None,
    dialect: opt.Dialect = None,
    max_iterations: opt.MaxIterations = None,
) -> int:
    """Repair the example project (median() of even-sized lists): the configured endpoint, or a local model."""
    from agent.doors.local.demo import run_demo

    flags = opt.collect_flags(
        sandbox=sandbox, base_url=base_url, model=model, dialect=dialect, max_iterations=max_iterations
    )
    result = run_demo(flags, _run, out=out, local_model=local_model, threads=threads, progress=_progress)
    return 0 if result.resolved else 1
