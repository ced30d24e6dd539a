"""Command-line options shared by every front door (solve, fix, batch, demo).

Why a module of its own: each subcommand declares the same model, sandbox and budget flags; declaring them once keeps
their names, help and defaults identical, and ``collect_flags`` turns them into the top layer of ``load_settings``.
``None`` always means "not given", so the config file and the environment still apply underneath.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from agent.config import Settings, load_settings

BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="OpenAI-compatible endpoint (env MENDLOOP_BASE_URL / OPENAI_BASE_URL).",
        rich_help_panel="Model",
    ),
]
ModelName = Annotated[
    str | None, typer.Option("--model", help="Model name (default facebook/cwm).", rich_help_panel="Model")
]
Dialect = Annotated[
    str | None,
    typer.Option("--dialect", help="How the model speaks: cwm, openai or auto (default cwm).", rich_help_panel="Model"),
]
Temperature = Annotated[float | None, typer.Option("--temperature", rich_help_panel="Model")]
MaxIterations = Annotated[
    int | None, typer.Option("--max-iterations", help="Write/verify rounds (default 4).", rich_help_panel="Budget")
]
MaxCalls = Annotated[int | None, typer.Option("--max-calls", help="Most model calls.", rich_help_panel="Budget")]
MaxTokens = Annotated[
    int | None, typer.Option("--max-tokens", help="Most prompt+completion tokens.", rich_help_panel="Budget")
]
MaxTime = Annotated[float | None, typer.Option("--max-time", help="Most wall-clock seconds.", rich_help_panel="Budget")]
MaxCost = Annotated[
    float | None,
    typer.Option("--max-cost", help="Most USD; needs --price-prompt/--price-completion.", rich_help_panel="Budget"),
]
PricePrompt = Annotated[
    float | None, typer.Option("--price-prompt", help="USD per million prompt tokens.", rich_help_panel="Budget")
]
PriceCompletion = Annotated[
    float | None,
    typer.Option("--price-completion", help="USD per million completion tokens.", rich_help_panel="Budget"),
]
TestCmd = Annotated[
    str | None,
    typer.Option("--test-cmd", help="Test command (default: python -m pytest -q).", rich_help_panel="Repair"),
]
Candidates = Annotated[
    int | None, typer.Option("--candidates", help="Patch candidates per round (best-of-K).", rich_help_panel="Repair")
]
Traces = Annotated[
    bool | None,
    typer.Option(
        "--traces/--no-traces", help="Show the model execution traces of failing tests.", rich_help_panel="Repair"
    ),
]
Reproduce = Annotated[
    bool | None,
    typer.Option("--reproduce/--no-reproduce", help="Ask for a reproduction test first.", rich_help_panel="Repair"),
]
KeepTests = Annotated[
    bool | None,
    typer.Option(
        "--keep-tests/--drop-tests", help="Keep generated tests in the final patch.", rich_help_panel="Repair"
    ),
]
SandboxKind = Annotated[
    str | None,
    typer.Option("--sandbox", help="docker, bwrap, local or auto (default auto).", rich_help_panel="Sandbox"),
]
Image = Annotated[
    str | None, typer.Option("--image", help="Docker image (default python:3.12-slim).", rich_help_panel="Sandbox")
]
Network = Annotated[
    bool | None,
    typer.Option(
        "--network/--no-network", help="Let sandboxed code use the network (off by default).", rich_help_panel="Sandbox"
    ),
]
CommandTimeout = Annotated[
    float | None,
    typer.Option("--command-timeout", help="Seconds per sandboxed command (default 120).", rich_help_panel="Sandbox"),
]


def collect_flags(**flags: Any) -> dict[str, Any]:
    """Map CLI parameter names to settings fields; ``None`` values are dropped by ``load_settings``."""
    renames = {"max_calls": "max_model_calls", "max_tokens": "max_total_tokens", "max_time": "max_wall_time"}
    return {renames.get(k, k): v for k, v in flags.items()}


def settings_from_flags(repo: Path | None, **flags: Any) -> Settings:
    """Build the settings for ``repo`` with the CLI flags on top."""
    return load_settings(repo, collect_flags(**flags))
