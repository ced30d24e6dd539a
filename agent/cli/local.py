"""``mendloop serve-local`` and ``mendloop demo``: the commands that run a small code model on this machine.

They are the only front doors that need the local-model machinery (llama.cpp build, model download, server process:
:mod:`agent.doors.local`), which is imported only when one of them runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.shared import Flags, options, progress, settings_rows
from agent.cli.solve import run_task
from tools.errors import FatalError

__all__ = ["demo", "serve_local"]

Threads = Annotated[int | None, typer.Option("--threads", help="CPU threads (default: all cores).")]


def serve_local(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 = any free port).")] = 8080,
    threads: Threads = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A .gguf file, or a known name: qwen2.5-coder-1.5b-instruct-q4_k_m (default), "
            "qwen2.5-coder-0.5b-instruct-q4_k_m.",
        ),
    ] = None,
    ctx_size: Annotated[int, typer.Option("--ctx-size", help="Context window per request, in tokens.")] = 4096,
    parallel: Annotated[
        int,
        typer.Option(
            "--parallel", min=1, help="Slots: samples decoded side by side (--candidates K wants K); more queue."
        ),
    ] = 4,
) -> int:
    """Start an OpenAI-compatible server for a small code model on the CPU; print its base URL; run until Ctrl-C."""
    from agent.doors.local.server import start_local

    with start_local(
        model, port=port, threads=threads, ctx_size=ctx_size, parallel=parallel, progress=progress
    ) as server:
        sys.stdout.write(f"{server.base_url}\n")
        sys.stdout.flush()
        progress(f"serving {server.model_id}; use: --base-url {server.base_url} --model {server.model_id}")
        progress("press Ctrl-C to stop")
        code = server.wait()
    raise FatalError(f"llama-server stopped by itself (exit code {code}); see {server.log_path}")


@options(settings_rows("base_url", "model", "dialect", "max_iterations", "sandbox"))
def demo(
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default under ~/.local/state).")] = None,
    local_model: Annotated[
        str | None,
        typer.Option(
            "--local-model",
            help="A .gguf file, or qwen2.5-coder-1.5b-instruct-q4_k_m (default) / qwen2.5-coder-0.5b-instruct-q4_k_m.",
        ),
    ] = None,
    threads: Threads = None,
    *,
    flags: Flags,
) -> int:
    """Repair the example project (median() of even-sized lists): the configured endpoint, or a local model."""
    from agent.doors.local.demo import run_demo

    result = run_demo(flags, run_task, out=out, local_model=local_model, threads=threads, progress=progress)
    return 0 if result.resolved else 1
