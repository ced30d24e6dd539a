"""Streamed chat completions: the answer reaches a listener piece by piece and the caller still gets one response.

Why a module of its own: :class:`agent.model.ModelClient` keeps one code path for answers (retries, budgets, the
trajectory record) and calls :func:`stream_chat` through one hook when someone watches (the live terminal view), so
a streamed answer is recorded, counted and parsed exactly like a plain one. Only single-answer requests are
streamed; ``n > 1`` samples are not shown as they are written.

Tokens: the request asks for usage in the stream (``stream_options.include_usage``; llama.cpp, vLLM and OpenAI send
it as a last chunk). A server that sends none is counted here: servers that stream send one token per chunk, so each
streamed piece counts as one token, and a piece longer than any token (a server that sends the whole answer at once)
as one token per four characters - the estimate :class:`~agent.model.ModelClient` uses for unstreamed answers with
no usage. The prompt side then gets that same estimate. Budgets are checked on the counts either way.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import openai
from openai.types.chat import ChatCompletion
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_message import ChatCompletionMessage
from openai.types.chat.chat_completion_message_tool_call import ChatCompletionMessageToolCall, Function
from openai.types.completion_usage import CompletionUsage

from tools.secrets import StreamScrubber

__all__ = ["Listener", "StreamEvent", "count_piece", "stream_chat"]

EventKind = Literal["start", "content", "reasoning", "tool", "end"]

LONGEST_TOKEN = 16
"""Characters: a streamed piece up to this long is one token (no common code tokenizer has longer tokens)."""


@dataclass(frozen=True)
class StreamEvent:
    """What a watcher is told: a stream started, a piece of it arrived, or it ended.

    ``stream`` tells apart requests that overlap (candidates written in parallel threads); a request that is retried
    after a broken stream starts a new stream. ``tokens`` is the completion tokens counted so far in this stream (on
    ``end``: the count the server reported, else ours).
    """

    node: str
    kind: EventKind
    stream: int
    text: str = ""
    tokens: int = 0


Listener = Callable[[StreamEvent], None]

_ids = itertools.count(1)


def count_piece(text: str) -> int:
    """Completion tokens in one streamed piece (see the module docstring)."""
    if not text:
        return 0
    return 1 if len(text) <= LONGEST_TOKEN else (len(text) + 3) // 4


@dataclass
class _ToolSlot:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Answer:
    """The pieces of one streamed answer, gathered into what a plain request would have returned."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tools: dict[int, _ToolSlot] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: CompletionUsage | None = None
    counted: int = 0
    model: str = ""
    id: str = ""

    def response(self, messages: Any) -> ChatCompletion:
        calls = [
            ChatCompletionMessageToolCall(
                id=slot.id or f"call_{i}", type="function", function=Function(name=slot.name, arguments=slot.arguments)
            )
            for i, slot in sorted(self.tools.items())
            if slot.name
        ]
        message = ChatCompletionMessage.model_construct(
            role="assistant",
            content="".join(self.content),
            tool_calls=calls or None,
            reasoning_content="".join(self.reasoning) or None,
        )
        finish = self.finish_reason or ("tool_calls" if calls else "stop")
        choice = Choice.model_construct(index=0, message=message, finish_reason=finish, logprobs=None)
        usage = self.usage or CompletionUsage(
            prompt_tokens=(len(json.dumps(messages)) + 3) // 4,
            completion_tokens=self.counted,
            total_tokens=(len(json.dumps(messages)) + 3) // 4 + self.counted,
        )
        return ChatCompletion.model_construct(
            id=self.id or "stream",
            object="chat.completion",
            created=int(time.time()),
            model=self.model,
            choices=[choice],
            usage=usage,
        )


class _Safe:
    """Calls the listener; a listener that raises is dropped for the rest of the stream (a view never ends a repair).

    The pieces are masked as a stream (:class:`~tools.secrets.StreamScrubber`): the transport already masked every
    line, but a secret the model spells across two pieces is whole only once the pieces are joined. The reasoning is
    one stream and the answer another - content and tool calls together, as a view shows them - so a tail held back
    comes out before the next piece of the same text, never after it.
    """

    def __init__(self, listener: Listener, node: str) -> None:
        self.listener: Listener | None = listener
        self.node = node
        self.stream = next(_ids)
        self.masks: dict[bool, tuple[StreamScrubber, EventKind]] = {}

    def __call__(self, kind: EventKind, text: str = "", tokens: int = 0) -> None:
        if self.listener is None:
            return
        if kind == "end":
            for mask, last in self.masks.values():
                if rest := mask.flush():
                    self._tell(last, rest, tokens)
        elif kind != "start":
            thinking = kind == "reasoning"
            mask = self.masks[thinking][0] if thinking in self.masks else StreamScrubber()
            self.masks[thinking] = (mask, kind)
            text = mask.feed(text)
        self._tell(kind, text, tokens)

    def _tell(self, kind: EventKind, text: str, tokens: int) -> None:
        if self.listener is None:
            return
        try:
            self.listener(StreamEvent(self.node, kind, self.stream, text, tokens))
        except Exception:
            self.listener = None


def _chunks(stream: Any, request: Any, deadline: float) -> Iterator[Any]:
    """The stream's chunks, with transport failures turned into the SDK's errors and a total time limit.

    Why: the SDK's timeout bounds each read, not the whole answer; a server trickling tokens forever would never
    time out. Older SDKs let mid-stream socket errors out of httpx unwrapped; the caller's retries know the SDK's.
    """
    request = request if request is not None else httpx.Request("POST", "http://stream.invalid/")
    iterator = iter(stream)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except httpx.TimeoutException:
            raise openai.APITimeoutError(request=request) from None
        except httpx.TransportError as exc:
            raise openai.APIConnectionError(message=str(exc) or type(exc).__name__, request=request) from exc
        except openai.APIStatusError:
            raise
        except openai.APIError as exc:  # an error event inside the stream: worth another attempt
            raise openai.APIConnectionError(message=f"the stream broke off: {exc.message}", request=request) from exc
        yield chunk
        if time.monotonic() > deadline:
            raise openai.APITimeoutError(request=request)


def stream_chat(client: openai.OpenAI, node: str, listener: Listener, **request: Any) -> ChatCompletion:
    """``client.chat.completions.create(**request)`` streamed: every piece goes to ``listener`` as it arrives, and
    the whole answer comes back as one ``ChatCompletion`` (usage from the server, else counted here).

    Errors are the SDK's own (``APIStatusError``, ``APIConnectionError``, ``APITimeoutError``), so callers retry a
    broken stream like a failed request.
    """
    tell = _Safe(listener, node)
    timeout = client.timeout if isinstance(client.timeout, int | float) else 600.0
    deadline = time.monotonic() + float(timeout)
    tell("start")
    stream = client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True})
    answer = _Answer()
    response = getattr(stream, "response", None)
    try:
        for chunk in _chunks(stream, getattr(response, "request", None), deadline):
            answer.model = answer.model or str(getattr(chunk, "model", "") or "")
            answer.id = answer.id or str(getattr(chunk, "id", "") or "")
            if getattr(chunk, "usage", None) is not None:
                answer.usage = chunk.usage
            for choice in chunk.choices or []:
                if choice.index != 0:
                    continue
                _take(choice, answer, tell)
    finally:
        close = getattr(stream, "close", None)
        if callable(close):
            close()
    final = answer.usage.completion_tokens if answer.usage is not None else answer.counted
    tell("end", tokens=int(final or 0))
    return answer.response(request.get("messages", []))


def _take(choice: Any, answer: _Answer, tell: _Safe) -> None:
    delta = choice.delta
    if choice.finish_reason:
        answer.finish_reason = choice.finish_reason
    if delta is None:
        return
    reasoning = getattr(delta, "reasoning_content", None)
    if isinstance(reasoning, str) and reasoning:
        answer.reasoning.append(reasoning)
        answer.counted += count_piece(reasoning)
        tell("reasoning", reasoning, answer.counted)
    if delta.content:
        answer.content.append(delta.content)
        answer.counted += count_piece(delta.content)
        tell("content", delta.content, answer.counted)
    for call in delta.tool_calls or []:
        slot = answer.tools.setdefault(call.index, _ToolSlot())
        slot.id = call.id or slot.id
        function = call.function
        if function is not None:
            slot.name += function.name or ""
            piece = function.arguments or ""
            slot.arguments += piece
            answer.counted += count_piece((function.name or "") + piece)
            tell("tool", (function.name or "") + piece, answer.counted)
