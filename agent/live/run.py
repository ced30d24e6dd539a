"""The live view of one repair on a terminal: the answer as it is written, each applied edit, each test round, and
what has been spent so far.

Why an observer and not code in the nodes: the view watches the three things a run already exposes - the model
client's stream (:mod:`agent.streaming`), the progress lines, and each node's state update (the runner streams the
graph's updates) - so the loop is the same with or without it, and ``--quiet`` or a non-terminal simply leaves it
out (today's one line per step, no control codes).

Layout: finished things are printed once, above; below them a small live area redraws the answer being written
(reasoning dimmed, only its last lines) and a status line with tokens, cost, calls and time against the budgets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from agent.budget import Budget, Usage
from agent.context import RunContext
from agent.live.think import Kind, ThinkSplitter
from agent.rounds import Round, diff_stat, rich_diff, rich_round
from agent.streaming import StreamEvent

__all__ = ["LiveRun", "only_files"]

T = TypeVar("T")

TAIL_LINES = 6  # lines of the answer being written shown in the live area
ANSWER_LINES = 60  # lines of a finished answer printed above (the rest is in trajectory.jsonl)


def only_files(patch: str, files: list[str] | tuple[str, ...]) -> str:
    """The sections of a ``git diff`` that touch ``files`` (an edit's own change, without earlier ones')."""
    keep: list[str] = []
    take = False
    wanted = set(files)
    for line in patch.splitlines(keepends=True):
        if line.startswith("diff --git "):
            path = line.rstrip("\n").rsplit(" b/", 1)[-1]
            take = path in wanted
        if take:
            keep.append(line)
    return "".join(keep)


@dataclass
class _Stream:
    node: str
    splitter: ThinkSplitter
    started: float = field(default_factory=time.monotonic)
    thinking: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    tokens: int = 0

    def add(self, kind: Kind, text: str) -> None:
        (self.thinking if kind == "thinking" else self.answer).append(text)


def _tail(text: str, lines: int) -> list[str]:
    return text.splitlines()[-lines:] if text else []


def _guarded(method: Callable[..., None]) -> Callable[..., None]:
    """A fault in the view is reported once and switches the live area off; it never ends the repair."""

    def call(self: LiveRun, *args: Any) -> None:
        if self.broken:
            return
        try:
            method(self, *args)
        except Exception as exc:
            self.broken = True
            self.console.print(f"(live view off: {type(exc).__name__}: {exc})", markup=False, style="dim")

    return call


class LiveRun:
    """An :class:`agent.context.Observer` with a ``progress`` method; use it as a context manager around the run."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.broken = False
        self._lock = threading.RLock()
        self._streams: dict[int, _Stream] = {}
        self._usage: Usage | None = None
        self._budget = Budget()
        self._started = time.time()
        self._max_iterations: int | None = None
        self._thinking_first = False
        self._live = Live(
            self, console=console, refresh_per_second=8, transient=True, redirect_stdout=True, redirect_stderr=True
        )

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def __enter__(self) -> LiveRun:
        self._live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._live.stop()

    # --- what the run tells ----------------------------------------------------------------------------------------
    def progress(self, message: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}", highlight=False)

    @_guarded
    def started(self, ctx: RunContext) -> None:
        with self._lock:
            self._usage = ctx.usage
            self._budget = Budget.from_settings(ctx.settings)
            self._started = ctx.started_at
            self._max_iterations = ctx.settings.max_iterations
            self._thinking_first = ctx.dialect.name == "cwm"

    @_guarded
    def delta(self, event: StreamEvent) -> None:
        with self._lock:
            if event.kind == "start":
                self._streams[event.stream] = _Stream(event.node, ThinkSplitter(thinking_first=self._thinking_first))
                return
            stream = self._streams.get(event.stream)
            if stream is None:
                return
            stream.tokens = event.tokens
            if event.kind == "reasoning":
                stream.add("thinking", event.text)
            elif event.kind in ("content", "tool"):
                for kind, text in stream.splitter.feed(event.text):
                    stream.add(kind, text)
            elif event.kind == "end":
                for kind, text in stream.splitter.flush():
                    stream.add(kind, text)
                del self._streams[event.stream]
                self._print_answer(stream)
        self._live.refresh()

    @_guarded
    def update(self, node: str, values: Mapping[str, Any]) -> None:
        if node == "write":
            cands = [c for c in values.get("candidates") or [] if isinstance(c, Mapping) and not c.get("reset")]
            for cand in cands:
                self._print_edit(cand, many=len(cands) > 1)
        elif node == "verify":
            for entry in values.get("rounds") or []:
                self.console.print(rich_round(Round.from_entry(entry), diff=len(entry.get("candidates") or []) > 1))
        elif node == "finish" and values.get("status"):
            style = "green" if values["status"] == "resolved" else "yellow"
            self.console.print(Text(f"{values['status']}: {values.get('reason', '')}", style=f"bold {style}"))

    # --- printing finished things ----------------------------------------------------------------------------------
    def _print_answer(self, stream: _Stream) -> None:
        thinking = "".join(stream.thinking).strip()
        answer = "".join(stream.answer).strip()
        took = time.monotonic() - stream.started
        head = Text.assemble(
            (f"▌ {stream.node}", "bold cyan"), (f" answered in {took:.1f}s, {stream.tokens:,} tokens", "dim")
        )
        self.console.print(head)
        if thinking:
            last = _tail(thinking, 1)
            gist = f": …{last[0][-100:]}" if last else ""
            words = len(thinking.split())
            self.console.print(Text(f"  ▸ reasoning folded ({words:,} words){gist}", style="dim italic"))
        if answer:
            lines = answer.splitlines()
            shown = "\n".join(lines[:ANSWER_LINES])
            self.console.print(Text(shown), markup=False)
            if len(lines) > ANSWER_LINES:
                more = len(lines) - ANSWER_LINES
                self.console.print(Text(f"  … {more} more lines in trajectory.jsonl", style="dim"))

    def _print_edit(self, cand: Mapping[str, Any], *, many: bool) -> None:
        applied = [str(f) for f in cand.get("applied") or []]
        who = f"candidate #{cand.get('index', 0)}: " if many else ""
        if cand.get("no_change") or not applied:
            self.console.print(Text(f"  {who}no edit applied", style="yellow"))
            return
        patch = only_files(str(cand.get("patch") or ""), applied)
        self.console.print(
            Text.assemble(("  ✎ ", "bold"), f"{who}edited {', '.join(applied)} ", (f"({diff_stat(patch)})", "dim"))
        )
        if patch.strip() and not many:
            self.console.print(rich_diff(patch))

    # --- the live area -----------------------------------------------------------------------------------------------
    def __rich__(self) -> RenderableType:
        with self._lock:
            parts: list[RenderableType] = []
            for stream in self._streams.values():
                parts.extend(self._stream_area(stream))
            parts.append(self._status())
            return Group(*parts)

    def _stream_area(self, stream: _Stream) -> list[RenderableType]:
        answer = "".join(stream.answer)
        thinking = "".join(stream.thinking)
        state = "writing" if answer.strip() else "thinking" if thinking.strip() else "waiting"
        out: list[RenderableType] = [
            Text.assemble((f"▌ {stream.node}", "bold cyan"), (f" {state}… {stream.tokens:,} tokens", "dim"))
        ]
        if answer.strip():
            out.extend(Text(f"  {line}") for line in _tail(answer.lstrip("\n"), TAIL_LINES))
        elif thinking.strip():
            out.extend(Text(f"  {line}", style="dim italic") for line in _tail(thinking.strip(), TAIL_LINES // 2))
        return out

    def _status(self) -> Text:
        usage = self._usage or Usage()
        budget = self._budget
        streaming = sum(s.tokens for s in self._streams.values())
        tokens = f"{usage.total_tokens:,}"
        if budget.max_total_tokens:
            tokens += f"/{budget.max_total_tokens:,}"
        parts = [
            f"{time.time() - self._started:,.0f}s" + (f"/{budget.max_wall_time:g}s" if budget.max_wall_time else ""),
            f"{usage.calls} call{'s' if usage.calls != 1 else ''}"
            + (f"/{budget.max_calls}" if budget.max_calls else ""),
            f"tokens {tokens} ({usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion)"
            + (f" +{streaming:,} arriving" if streaming else ""),
        ]
        cost = budget.cost_of(usage.prompt_tokens, usage.completion_tokens)
        if cost is not None:
            parts.append(f"${cost:.4f}" + (f"/${budget.max_cost:.2f}" if budget.max_cost else ""))
        return Text("  " + " · ".join(parts), style="reverse")
