"""``ModelClient``: the one seam through which mendloop talks to a model.

Why an own retry loop on top of the ``openai`` SDK (which is built with ``max_retries=0``): budgets must be
checked before every call, ``Retry-After`` must be honoured but capped, and when retries run out the user
needs ONE line that says what is wrong (endpoint down, bad key, unknown model - with the models the endpoint
offers). The API key never appears in any message, log or exchange record.
"""

from __future__ import annotations

import functools
import json
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai

from agent.budget import Budget, Usage
from agent.config import Settings, request_extra_body
from agent.streaming import Listener, stream_chat
from tools.errors import FatalError
from tools.secrets import scrub

__all__ = [
    "NODE_HEADER",
    "Completion",
    "ContextOverflow",
    "EndpointError",
    "ModelClient",
    "ServerInfo",
    "ToolCall",
    "probe_server",
]

NODE_HEADER = "X-Mendloop-Node"


class EndpointError(FatalError):
    """The model endpoint cannot be used (unreachable, refused the key, no such model, kept failing)."""


class ContextOverflow(Exception):
    """The endpoint refused a request as longer than its context window: the caller sends less, never gives up.

    ``limit`` is the context size the server reported in its refusal (``None`` when it named none); the client
    also remembers it, so the next request is built to fit.
    """

    def __init__(self, message: str, limit: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit


# How servers word a refusal for length: llama.cpp ("exceeds the available context size (4096 tokens)"), vLLM and
# OpenAI ("maximum context length is 4096 tokens"), others ("context length", "context window", "too long").
_OVERFLOW = re.compile(r"context (size|length|window)|maximum context|too many tokens|prompt is too long", re.I)
_LIMIT = re.compile(r"(?:context size|context length is|context window(?: of)?|max_model_len)\D{0,12}(\d{3,7})", re.I)


@dataclass(frozen=True)
class ToolCall:
    """A structured tool call; ``arguments`` is the raw JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Completion:
    """One model answer; ``reasoning`` is a server-split ``reasoning_content`` (often empty)."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Completion:
        calls = [ToolCall(**c) for c in data.get("tool_calls", [])]
        return cls(**{**data, "tool_calls": calls})


class _Retryable(Exception):
    """Internal: one failed attempt worth retrying; ``message`` is the one-line reason."""

    def __init__(self, message: str, retry_after: float | None = None, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.unreachable = unreachable


def _redact_url(url: str) -> str:
    """The URL without user:password, so it can go into messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        parts = parts._replace(
            netloc=parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else ""
        )
    return urlunsplit(parts)


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _connection_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words, from the innermost cause."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for err in chain:
        if isinstance(err, ConnectionRefusedError) or "connection refused" in str(err).lower():
            return "connection refused"
    for err in chain:
        if "name or service not known" in str(err).lower() or "nodename nor servname" in str(err).lower():
            return "unknown host"
    return _one_line(str(chain[-1]) or type(chain[-1]).__name__, 120)


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return exc.message


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from model servers, fall back to our own backoff


def _estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _first_bytes(body: bytes, limit: int = 80) -> str:
    """What came back, for a message: the first bytes with anything unprintable escaped, and the length."""
    shown = repr(body[:limit])[2:-1]
    return f"{len(body)} bytes: '{shown}{'...' if len(body) > limit else ''}'"


def _shape_problem(data: Any) -> str | None:
    """Why a parsed JSON reply is not a chat completion (``None`` when it is one)."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        error = data.get("error")
        detail = error.get("message", error) if isinstance(error, dict) else error
        return f"an error object: {_one_line(str(detail), 160)}" if error else "no choices"
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            return "a choice without a message"
        if not isinstance(message.get("content"), str | None) or not isinstance(message.get("tool_calls"), list | None):
            return "a message whose content or tool_calls has the wrong type"
    return None


def _clip(text: str, limit: int) -> str:
    """An answer cut to ``limit`` characters (the rest is said, not kept): what is stored and sent again is bounded."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} characters of this answer were cut (max_answer_chars)]"


class ModelClient:
    """Chat completions with retries, budgets, usage and node tagging. Thread-safe for fan-out branches."""

    backoff_base: float = 0.5  # seconds before the first retry; doubles each time, with jitter
    backoff_cap: float = 20.0
    retry_after_cap: float = 60.0  # a server asking for longer is asked again after this

    def __init__(
        self,
        settings: Settings,
        usage: Usage | None = None,
        *,
        on_exchange: Callable[[dict[str, Any]], None] | None = None,
        http_client: httpx.Client | None = None,
        started_at: float | None = None,
        on_delta: Listener | None = None,
    ) -> None:
        if not settings.base_url:
            raise EndpointError("no model endpoint configured: pass --base-url or set MENDLOOP_BASE_URL")
        self.settings = settings
        self.usage = usage if usage is not None else Usage()
        self.budget = Budget.from_settings(settings)
        self.started_at = time.time() if started_at is None else started_at
        self.url = _redact_url(settings.base_url)
        self._on_exchange = on_exchange
        self._on_delta = on_delta  # someone watches answers as they are written: single answers are streamed
        self._key = settings.api_key.get_secret_value() if settings.api_key else ""
        self._lock = threading.Lock()
        self._n_supported: bool | None = None  # does the endpoint answer ``n > 1`` with that many choices?
        self._n_limit: int | None = None  # the most choices it takes in one request, once it refused more
        self._context: int | None = None
        self._context_probed = False
        self._server: ServerInfo | None = None
        self._client = openai.OpenAI(
            base_url=settings.base_url,
            api_key=self._key or "not-needed",
            max_retries=0,
            timeout=settings.request_timeout,
            http_client=cast(Any, http_client),  # the SDK takes httpx or httpx2 clients
        )

    # --- public --------------------------------------------------------------------------------------------
    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        node: str,
        tools: list[dict[str, Any]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """One answer for ``messages``. Raises ``BudgetExceeded`` before sending when a limit is spent, and
        ``ContextOverflow`` when the endpoint says the request does not fit its context."""
        return self.sample(messages, node=node, n=1, tools=tools, temperature=temperature, max_tokens=max_tokens)[0]

    def sample(
        self,
        messages: list[dict[str, Any]],
        *,
        node: str,
        n: int,
        tools: list[dict[str, Any]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> list[Completion]:
        """``n`` independent answers to the same ``messages``.

        Why one request with ``n`` first: a CPU server spends most of a request reading the prompt, and one request
        reads it once for all ``n`` answers (llama-server, vLLM); separate requests on separate slots would read it
        ``n`` times. A server that returns fewer choices is asked again, one request at a time, for the rest: the
        repeated prompt then comes from its prefix cache, and a single-slot server just queues them. A server that
        refuses an ``n`` above its slots (llama-server: "Value must be between 1 <= value <= 4") is asked for as
        many as it takes, as often as needed: more samples than slots queue, never fail.
        """
        out: list[Completion] = []
        while len(out) < n:
            with self._lock:
                self.budget.check(self.usage, self.started_at)
            params = self._params(tools, temperature, max_tokens)
            if n - len(out) > 1 and self._n_supported is not False:
                params["n"] = min(n - len(out), self._n_limit or n)
            started = time.monotonic()
            try:
                answers, attempts = self._with_retries(messages, node, params)
            except EndpointError as exc:
                limit = _n_refused(exc.message) if params.get("n", 1) > 1 else None
                self._record(node, messages, params, started, error=exc.message)
                if limit is None:
                    raise
                self._n_limit = limit
                if limit <= 1:
                    self._n_supported = False
                continue
            except ContextOverflow as exc:
                self._record(node, messages, params, started, error=exc.message)
                raise
            if "n" in params:
                self._n_supported = len(answers) > 1
            answers = answers[: n - len(out)]
            with self._lock:
                prompt = answers[0].prompt_tokens
                completion = sum(a.completion_tokens for a in answers)
                self.usage.add(node, prompt, completion, self.budget.cost_of(prompt, completion))
            for answer in answers:
                self._record(node, messages, params, started, completion=answer, attempts=attempts)
            out.extend(answers)
        return out

    def context_size(self) -> int | None:
        """The endpoint's context window in tokens: the setting, else what the server reports, else what a refusal
        said, else ``None`` (unknown: requests are sent as they are and a refusal teaches the size).

        llama-server reports its per-slot ``n_ctx`` at ``/props``; vLLM reports ``max_model_len`` in ``/v1/models``.
        """
        if self.settings.context_tokens:
            return self.settings.context_tokens
        if self._context is None and not self._context_probed:
            self._context_probed = True
            self._context = self.server_info().context
        return self._context

    def server_info(self) -> ServerInfo:
        """What the endpoint says about itself (asked once)."""
        if self._server is None:
            self._server = probe_server(self.settings.base_url or "", self.settings.model, self._key)
        return self._server

    def list_models(self) -> list[str]:
        """The model ids the endpoint offers (``GET /models``)."""
        return [m.id for m in self._client.models.list()]

    def close(self) -> None:
        self._client.close()

    # --- the retry loop ------------------------------------------------------------------------------------
    def _params(
        self, tools: list[dict[str, Any]] | None, temperature: float | None, max_tokens: int | None = None
    ) -> dict[str, Any]:
        s = self.settings
        params: dict[str, Any] = {
            "temperature": s.temperature if temperature is None else temperature,
            "top_p": s.top_p,
            # the name llama.cpp, vLLM and Fastgen understand
            "max_tokens": min(s.max_completion_tokens, max_tokens or s.max_completion_tokens),
        }
        if tools:
            params["tools"] = tools
            params["tool_choice"] = "auto"
        return params

    def _with_retries(
        self, messages: list[dict[str, Any]], node: str, params: dict[str, Any]
    ) -> tuple[list[Completion], int]:
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._attempt(messages, node, params), attempts
            except _Retryable as failure:
                if attempts > self.settings.max_retries:
                    raise EndpointError(self._scrub(self._exhausted(failure, attempts))) from None
                delay = self._delay(attempts, failure.retry_after)
                left = self._time_left()
                self._sleep(delay if left is None else max(0.0, min(delay, left)))
                with self._lock:  # a hung endpoint is bounded by --max-time: BudgetExceeded, not another wait
                    self.budget.check(self.usage, self.started_at)

    def _time_left(self) -> float | None:
        """Seconds left of ``max_wall_time`` (``None`` without one)."""
        if self.settings.max_wall_time is None:
            return None
        return self.settings.max_wall_time - (time.time() - self.started_at)

    def _timeout(self) -> float:
        """How long one request may take: ``request_timeout``, and never past the end of ``max_wall_time``."""
        left = self._time_left()
        return self.settings.request_timeout if left is None else max(1.0, min(self.settings.request_timeout, left))

    def _attempt(self, messages: list[dict[str, Any]], node: str, params: dict[str, Any]) -> list[Completion]:
        body = {k: v for k, v in params.items() if k not in ("temperature", "top_p", "tools", "tool_choice")}
        body.update(request_extra_body(self.settings))  # the user's extra_body, and the dialect's reasoning switch
        extra: dict[str, Any] = {k: params[k] for k in ("tools", "tool_choice") if k in params}
        timeout = self._timeout()
        listener = self._on_delta if "n" not in params else None
        streamed = listener is not None
        create: Callable[..., Any] = self._client.chat.completions.with_raw_response.create
        if listener is not None:  # the live view: the answer arrives piece by piece, then is checked like any reply
            create = functools.partial(stream_chat, self._client.with_options(timeout=timeout), node, listener)
        try:
            raw = create(
                model=self.settings.model,
                messages=messages,
                temperature=params["temperature"],
                top_p=params["top_p"],
                extra_headers={NODE_HEADER: node},
                extra_body=body,
                timeout=timeout,
                **extra,
            )
        except openai.APITimeoutError:
            raise _Retryable(f"timed out after {timeout:g} s") from None
        except openai.APIConnectionError as exc:
            raise _Retryable(_connection_reason(exc), unreachable=True) from None
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        if streamed:
            problem = _shape_problem(raw.model_dump())
            if problem:
                raise _Retryable(f"the streamed reply is not a chat completion: {problem}")
            return self._to_completion(raw, messages)
        return self._to_completion(self._chat_completion(raw), messages)

    def _chat_completion(self, raw: Any) -> Any:
        """The parsed reply, once it is known to be a chat completion; anything else (not JSON, not UTF-8, the wrong
        shape) is a failed attempt, retried like a 5xx: a proxy's error page or a half-started server says so."""
        body: bytes = raw.http_response.content
        try:
            data = json.loads(body)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            raise _Retryable(f"the reply is not JSON ({_first_bytes(body)})") from None
        problem = _shape_problem(data)
        if problem:
            raise _Retryable(f"the reply is not a chat completion: {problem} ({_first_bytes(body)})")
        try:
            return raw.parse()
        except Exception as exc:  # the SDK's own reading of it; its message says what is wrong
            raise _Retryable(f"the reply is not a chat completion: {_one_line(str(exc), 160)}") from None

    def _status_error(self, exc: openai.APIStatusError) -> Exception:
        status = exc.status_code
        detail = _one_line(_error_message(exc))
        if status == 429 or status >= 500:
            return _Retryable(f"HTTP {status}: {detail}", _retry_after(exc.response.headers))
        if status in (400, 413) and _OVERFLOW.search(detail):
            limit = _LIMIT.search(detail)
            if limit:
                self._context = int(limit.group(1))
            return ContextOverflow(
                self._scrub(f"the request does not fit the model's context: {detail}"),
                int(limit.group(1)) if limit else None,
            )
        if status in (401, 403):
            what = "rejected the API key" if status == 401 else "refused access"
            hint = "set MENDLOOP_API_KEY" if not self._key else "check MENDLOOP_API_KEY"
            return EndpointError(
                self._scrub(f"the model endpoint at {self.url} {what} (HTTP {status}: {detail}); {hint}")
            )
        if status == 404:
            return EndpointError(self._scrub(self._not_found(detail)))
        return EndpointError(
            self._scrub(f"the model endpoint at {self.url} refused the request: HTTP {status}: {detail}")
        )

    def _not_found(self, detail: str) -> str:
        model = self.settings.model
        try:
            offered = self.list_models()
        except openai.OpenAIError:
            return f"model '{model}' not found at {self.url} (HTTP 404: {detail}); it does not list its models"
        if model in offered:
            return f"the model endpoint at {self.url} answered HTTP 404: {detail} (base URL without /v1?)"
        return f"model '{model}' not found at {self.url}; the endpoint offers: {', '.join(offered) or 'nothing'}"

    def _exhausted(self, failure: _Retryable, attempts: int) -> str:
        if failure.unreachable:
            return f"cannot reach the model endpoint at {self.url}: {failure.message} ({attempts} attempts)"
        return f"the model endpoint at {self.url} kept failing: {failure.message} ({attempts} attempts)"

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    # --- results and records -------------------------------------------------------------------------------
    def _to_completion(self, response: Any, messages: list[dict[str, Any]]) -> list[Completion]:
        """Every choice of a response; usage is the response's (all choices together), put on the first."""
        choices = list(response.choices or []) or [None]
        out: list[Completion] = []
        cap = self.settings.max_answer_chars
        for choice in choices:
            message = choice.message if choice is not None else None
            content = (message.content if message is not None else None) or ""
            calls = [
                ToolCall(id=c.id or f"call_{i}", name=c.function.name, arguments=_clip(c.function.arguments or "", cap))
                for i, c in enumerate((message.tool_calls if message is not None else None) or [])
                if getattr(c, "function", None) is not None
            ]
            reasoning = getattr(message, "reasoning_content", None) if message is not None else None
            finish = choice.finish_reason if choice is not None else None
            out.append(
                Completion(
                    content=_clip(content, cap),
                    tool_calls=calls,
                    finish_reason="length" if len(content) > cap else finish,
                    completion_tokens=_estimate_tokens(content + "".join(c.arguments for c in calls)),
                    reasoning=_clip(reasoning, cap) if isinstance(reasoning, str) else "",
                )
            )
        usage = response.usage
        prompt = int(usage.prompt_tokens or 0) if usage is not None else _estimate_tokens(json.dumps(messages))
        if usage is not None and len(out) == 1:
            out[0] = replace(out[0], completion_tokens=int(usage.completion_tokens or 0))
        elif usage is not None and usage.completion_tokens:  # shared out by the length of each answer
            total = int(usage.completion_tokens)
            estimated = sum(c.completion_tokens for c in out) or 1
            out = [replace(c, completion_tokens=round(total * c.completion_tokens / estimated)) for c in out]
        return [replace(c, prompt_tokens=prompt) for c in out]

    def _record(
        self,
        node: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        started: float,
        *,
        completion: Completion | None = None,
        attempts: int = 0,
        error: str | None = None,
    ) -> None:
        if self._on_exchange is None:
            return
        record: dict[str, Any] = {
            "node": node,
            "model": self.settings.model,
            "messages": [dict(m) for m in messages],  # a snapshot: callers keep appending
            "params": {**params, "extra_body": request_extra_body(self.settings)},
            "duration": round(time.monotonic() - started, 3),
        }
        if completion is not None:
            record["response"] = {
                "content": completion.content,
                "reasoning": completion.reasoning,
                "tool_calls": [asdict(c) for c in completion.tool_calls],
                "finish_reason": completion.finish_reason,
            }
            record["usage"] = {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
            }
            record["attempts"] = attempts
        if error is not None:
            record["error"] = error
        self._on_exchange(self._scrub_obj(record))

    def _scrub(self, text: str) -> str:
        # Why the length floor: the key is never written on purpose; this guards against servers that echo it. A
        # placeholder such as "x" or "none" (local servers) is no secret, and replacing it would garble the record.
        return scrub(text.replace(self._key, "***") if len(self._key) >= 8 else text)

    def _scrub_obj(self, value: Any) -> Any:
        if not self._key:
            return value
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, Mapping):
            return {k: self._scrub_obj(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub_obj(v) for v in value]
        return value


_N_REFUSED = re.compile(r"""(?:['"`]n['"`]|\bn\b)[^.]*?(?:<=|at most|maximum|less than or equal to)\s*(\d+)""", re.I)


def _n_refused(message: str) -> int | None:
    """The most choices per request a refusal names ("Field 'n': Value must be between 1 <= value <= 4" -> 4)."""
    match = _N_REFUSED.search(message)
    if match:
        return max(1, int(match.group(1)))
    return 1 if re.search(r"""['"`]n['"`]""", message) else None


@dataclass(frozen=True)
class ServerInfo:
    """What an endpoint says about itself: its context window, its slots, and the size of its model (llama-server
    reports all three; vLLM its context). ``None`` where it does not say."""

    context: int | None = None
    slots: int | None = None
    params: int | None = None
    llama_cpp: bool = False
    name: str = ""  # the model the server serves (llama-server ignores the name a request gives)


def probe_server(base_url: str, model: str, key: str) -> ServerInfo:
    """Ask the server about itself (llama-server ``/props`` and ``/v1/models``; vLLM ``/v1/models``).

    Best effort and quick: a server that answers neither is used without knowing.
    """
    root = base_url.rstrip("/")
    server = root.removesuffix("/v1")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    context = slots = params = None
    llama_cpp = False
    name = ""
    try:
        with httpx.Client(timeout=5.0, headers=headers) as http:
            reply = http.get(f"{server}/props")
            if reply.status_code == 200:
                props = reply.json()
                n_ctx = props.get("default_generation_settings", {}).get("n_ctx")
                context = n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None
                slots = props.get("total_slots") if isinstance(props.get("total_slots"), int) else None
                llama_cpp = "default_generation_settings" in props
                name = str(props.get("model_path") or "")
            reply = http.get(f"{root}/models")
            if reply.status_code == 200:
                entries = [e for e in reply.json().get("data", []) if isinstance(e, dict)]
                named = [e for e in entries if e.get("id") == model] or entries[:1]
                entry = named[0] if named else {}
                meta: dict[str, Any] = entry["meta"] if isinstance(entry.get("meta"), dict) else {}
                size = entry.get("max_model_len")
                if context is None and isinstance(size, int) and size > 0:
                    context = size
                if isinstance(meta.get("n_params"), int):
                    params = meta["n_params"]
                name = name or str(entry.get("id") or "")
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    return ServerInfo(context, slots, params, llama_cpp, name)
