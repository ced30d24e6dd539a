"""What every mendloop command shares: the console, progress lines, the option table and the error edge.

The option table (``SETTINGS_OPTIONS``) has one row per ``Settings`` field that can be set on the command line: its
flag, help and help panel. ``options`` builds a command's signature from rows (typer reads ``inspect.signature``) and
hands the command their values as one dict keyed by field name, so ``solve``, ``fix`` and ``batch`` take the same
flags with the same help, and a new option is one row. ``None`` means "not given": the config file and the
environment still apply underneath (``load_settings``).

``VIEW_OPTIONS`` says how a run is shown (``--quiet``); :func:`watching` gives a command the live view on a terminal,
or today's one progress line per step with ``--quiet`` and wherever the output is not a terminal.

``run`` is the edge between a typer app and the process: a ``FatalError`` becomes ``mendloop: error: <one line>`` and
exit 2, a usage error exit 2, Ctrl-C or SIGTERM exit 130, so that no command prints a traceback for a user's mistake.
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType, NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from rich.console import Console

from agent.config import Settings
from agent.context import Observer, Progress
from agent.live import is_terminal, plain_console
from tools.errors import FatalError

__all__ = [
    "SETTINGS_OPTIONS",
    "VIEW_OPTIONS",
    "Flags",
    "Interrupted",
    "Opt",
    "console",
    "options",
    "progress",
    "run",
    "settings_rows",
    "watching",
]

R = TypeVar("R")
Flags = dict[str, Any]
"""Option values by field name; ``None`` for an option not given."""

console: Console = plain_console(stderr=True)


def progress(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


@dataclass(frozen=True)
class Opt:
    """One command-line option: the field it fills, its flag(s) (``--on/--off`` for a switch), help and panel.

    ``type`` defaults to the type of the ``Settings`` field of that name (a row filling another object, such as
    ``BatchOptions``, names its type); ``default`` ``None`` means "not given".
    """

    field: str
    flags: str
    help: str | None = None
    panel: str | None = None
    type: Any = None
    default: Any = None
    min: int | None = None

    def parameter(self) -> inspect.Parameter:
        kind = self.type or _settings_type(self.field)
        option = typer.Option(self.flags, help=self.help, rich_help_panel=self.panel, min=self.min)
        annotation = Annotated[kind | None if self.default is None else kind, option]  # type: ignore[valid-type]
        return inspect.Parameter(
            self.field, inspect.Parameter.KEYWORD_ONLY, default=self.default, annotation=annotation
        )


def _settings_type(field: str) -> Any:
    """The command-line type of a ``Settings`` field: ``int | None`` -> int, a ``Literal`` of strings -> str."""
    annotation = Settings.model_fields[field].annotation
    if get_origin(annotation) in (Union, UnionType):
        (annotation,) = (arg for arg in get_args(annotation) if arg is not NoneType)
    if get_origin(annotation) is Literal:
        return type(get_args(annotation)[0])
    return annotation


MODEL, BUDGET, REPAIR, SANDBOX = "Model", "Budget", "Repair", "Sandbox"

SETTINGS_OPTIONS: tuple[Opt, ...] = (
    Opt("base_url", "--base-url", "OpenAI-compatible endpoint (env MENDLOOP_BASE_URL / OPENAI_BASE_URL).", MODEL),
    Opt("model", "--model", "Model name (default facebook/cwm).", MODEL),
    Opt("dialect", "--dialect", "How the model speaks: cwm, openai or auto (default cwm).", MODEL),
    Opt("temperature", "--temperature", "Sampling temperature (default: the dialect's - cwm 1.0, openai 0.6).", MODEL),
    Opt("reasoning", "--reasoning", "Reasoning on or off, sent as chat_template_kwargs (default: on for cwm).", MODEL),
    Opt("context_tokens", "--context-tokens", "The endpoint's context window (default: asked of the server).", MODEL),
    Opt("request_timeout", "--request-timeout", "Seconds per model request (default 600; within --max-time).", MODEL),
    Opt("max_iterations", "--max-iterations", "Write/verify rounds (default 4).", BUDGET),
    Opt("max_model_calls", "--max-calls", "Most model calls.", BUDGET),
    Opt("max_turns", "--max-turns", "Most model turns in the conversation (default: rounds x 3).", BUDGET),
    Opt("max_total_tokens", "--max-tokens", "Most prompt+completion tokens.", BUDGET),
    Opt("max_wall_time", "--max-time", "Most wall-clock seconds.", BUDGET),
    Opt("max_cost", "--max-cost", "Most USD; needs --price-prompt/--price-completion.", BUDGET),
    Opt("price_prompt", "--price-prompt", "USD per million prompt tokens.", BUDGET),
    Opt("price_completion", "--price-completion", "USD per million completion tokens.", BUDGET),
    Opt("test_cmd", "--test-cmd", "Test command (default: python -m pytest -q).", REPAIR),
    Opt("candidates", "--candidates", "Patch candidates per round (best-of-K).", REPAIR),
    Opt("generated_tests", "--tests", "Reproduction tests sampled at once (with --candidates: CWM's TTS).", REPAIR),
    Opt("history", "--history", "Rounds as fresh requests or one conversation: fresh, conversation, auto.", REPAIR),
    Opt("protocol", "--protocol", "cwm conversation: strict (one tool per step, as trained) or permissive.", REPAIR),
    Opt("submit_review", "--review/--no-review", "After a submission, let the model review its patch.", REPAIR),
    Opt("traces", "--traces/--no-traces", "Show the model execution traces of failing tests.", REPAIR),
    Opt("trace_step_into", "--trace-step-into", "Step into project calls in traces, N calls deep (default 0).", REPAIR),
    Opt("reproduce", "--reproduce/--no-reproduce", "Ask for a reproduction test first.", REPAIR),
    Opt("keep_tests", "--keep-tests/--drop-tests", "Keep generated tests in the final patch.", REPAIR),
    Opt("sandbox", "--sandbox", "docker, bwrap, local or auto (default auto).", SANDBOX),
    Opt("image", "--image", "Docker image (default python:3.12-slim).", SANDBOX),
    Opt("network", "--network/--no-network", "Let sandboxed code use the network (off by default).", SANDBOX),
    Opt("command_timeout", "--command-timeout", "Seconds per sandboxed command (default 120).", SANDBOX),
    Opt(
        "trust_repo_config",
        "--trust-repo-config/--no-trust-repo-config",
        "Let the repository's own config weaken the sandbox or name the endpoint (see SECURITY.md).",
        SANDBOX,
    ),
    Opt("max_file_size", "--max-file-size", "Largest file a command may write (default 1GiB).", SANDBOX, str),
    Opt("max_workspace_growth", "--max-workspace-growth", "Most commands may add (default 4GiB).", SANDBOX, str),
)
"""Every ``Settings`` field a command line can set; ``solve``, ``fix`` and ``batch`` take them all."""


VIEW_OPTIONS: tuple[Opt, ...] = (
    Opt("quiet", "--quiet", "One progress line per step instead of the live view.", type=bool, default=False),
)
"""How a run is shown; ``solve``, ``fix`` and ``batch`` take them (into their ``view`` parameter)."""


@contextmanager
def watching(quiet: bool) -> Iterator[tuple[Progress, Observer | None]]:
    """The progress callback and observer for one repair: the live view when stderr is a terminal and not
    ``quiet``, else the plain progress lines and no observer (nothing is streamed then)."""
    if quiet or not is_terminal(sys.stderr):
        yield progress, None
        return
    from agent.live.run import LiveRun  # the graph's imports come with it; commands that never repair skip them

    with LiveRun(console) as view:
        yield view.progress, view


def settings_rows(*fields: str) -> tuple[Opt, ...]:
    """The rows of ``SETTINGS_OPTIONS`` for ``fields``, for a command that takes only some of them."""
    unknown = set(fields) - {row.field for row in SETTINGS_OPTIONS}
    if unknown:
        raise ValueError(f"no option row for {sorted(unknown)}")
    return tuple(row for row in SETTINGS_OPTIONS if row.field in fields)


def options(
    rows: Sequence[Opt] | None = None, *, into: str = "flags"
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Add the options of ``rows`` (default: all of ``SETTINGS_OPTIONS``) to a command; their values reach it as one
    ``Flags`` dict in its keyword parameter ``into``.

    The command declares ``into`` and its own options as usual; typer sees the command's own parameters followed by
    one per row. Decorators stack: each adds its rows and fills its own ``into``.
    """
    chosen = SETTINGS_OPTIONS if rows is None else tuple(rows)

    def decorate(command: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(command, eval_str=True)
        if into not in signature.parameters:
            raise TypeError(f"{command.__name__} has no parameter {into!r} to receive its options")
        own = [p for p in signature.parameters.values() if p.name != into]
        clash = {p.name for p in own} & {row.field for row in chosen}
        if clash:
            raise TypeError(f"{command.__name__} declares {sorted(clash)} itself and as table rows")

        @functools.wraps(command)
        def with_options(*args: Any, **kwargs: Any) -> R:
            values = {row.field: kwargs.pop(row.field, row.default) for row in chosen}
            return command(*args, **kwargs, **{into: values})

        parameters = [*own, *(row.parameter() for row in chosen)]
        with_options.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        annotations = {p.name: p.annotation for p in parameters if p.annotation is not p.empty}
        with_options.__annotations__ = {**annotations, "return": signature.return_annotation}
        return with_options

    return decorate


class Interrupted(Exception):
    """SIGTERM, turned into an exception so that ``finally`` blocks close sandboxes before the process ends."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise Interrupted()


def run(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run ``app`` and map every outcome to an exit code: 0 resolved, 1 not resolved, 2 error, 130 interrupted."""
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
