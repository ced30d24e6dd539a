"""Telling a model's reasoning from its answer while the text is still arriving.

Why incremental: CWM writes ``<think>`` ... ``</think>`` before its answer, and a streamed piece may end in the middle
of a tag (``</th``); a piece is split only once it is clear whether it holds a tag. CWM's answers start inside the
think block (its prompt opens it), so for CWM the text is reasoning until ``</think>``; other models think only
inside an explicit ``<think>``. The final verdict on a whole answer stays :func:`agent.dialects.base.split_think`'s.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Kind", "ThinkSplitter"]

Kind = Literal["thinking", "answer"]
OPEN, CLOSE = "<think>", "</think>"


def _held(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``tag`` (kept back until more arrives)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    """Feed streamed text in; get ``(kind, text)`` pieces out, tags removed."""

    def __init__(self, *, thinking_first: bool) -> None:
        self.kind: Kind = "thinking" if thinking_first else "answer"
        self._pending = ""
        self._fresh = True  # nothing shown yet: a leading <think> opens the block

    def feed(self, text: str) -> list[tuple[Kind, str]]:
        out: list[tuple[Kind, str]] = []
        buffer = self._pending + text
        self._pending = ""
        while buffer:
            if self._fresh:
                stripped = buffer.lstrip()
                if OPEN.startswith(stripped) and len(stripped) < len(OPEN):
                    self._pending = buffer  # could still become <think>
                    return out
                if stripped.startswith(OPEN):
                    self.kind = "thinking"
                    buffer = stripped[len(OPEN) :]
                self._fresh = False
                continue
            tag = CLOSE if self.kind == "thinking" else OPEN
            at = buffer.find(tag)
            if at >= 0:
                if at:
                    out.append((self.kind, buffer[:at]))
                self.kind = "answer" if self.kind == "thinking" else "thinking"
                buffer = buffer[at + len(tag) :]
                continue
            keep = _held(buffer, tag)
            if len(buffer) > keep:
                out.append((self.kind, buffer[: len(buffer) - keep]))
            self._pending = buffer[len(buffer) - keep :]
            break
        return out

    def flush(self) -> list[tuple[Kind, str]]:
        """What is still held back, at the end of the stream."""
        rest, self._pending = self._pending, ""
        return [(self.kind, rest)] if rest else []
