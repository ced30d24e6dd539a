"""``ModelClient``: the one seam through which mendloop talks to a model.

Why an own retry loop on top of the ``openai`` SDK (which is built with ``max_retries=0``): budgets must be
checked before every call, ``Retry-After`` must be honoured but capped, and when retries run out the user
needs ONE line that says what is wrong (endpoint down, bad key, unknown model - with the models the endpoint
offers). The API key never appears in any message, log or exchange record.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai

from agent.budget import Budget, Usage
from agent.config import Settings
from tools.errors import FatalError

__all__ = ["NODE_HEADER", "Completion", "EndpointError", "ModelClient", "ToolCall"]

NODE_HEADER = "X-Mendloop-Node"


class EndpointError(FatalError):
    """The model endpoint cannot be used (unreachable, refused the key, no such model, kept failing)."""


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
    ) -> None:
        if not settings.base_url:
            raise EndpointError("no model endpoint configured: pass --base-url or set MENDLOOP_BASE_URL")
        self.settings = settings
        self.usage = usage if usage is not None else Usage()
        self.budget = Budget.from_settings(settings)
        self.started_at = time.time() if started_at is None else started_at
        self.url = _redact_url(settings.base_url)
        self._on_exchange = on_exchange
        self._key = settings.api_key.get_secret_value() if settings.api_key else ""
        self._lock = threading.Lock()
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
    ) -> Completion:
        """One answer for ``messages``. Raises ``BudgetExceeded`` before sending when a limit is spent."""
        with self._lock:
            self.budget.check(self.usage, self.started_at)
        params = self._params(tools, temperature)
        started = time.monotonic()
        try:
            completion, attempts = self._with_retries(messages, node, params)
        except EndpointError as exc:
            self._record(node, messages, params, started, error=exc.message)
            raise
        with self._lock:
            cost = self.budget.cost_of(completion.prompt_tokens, completion.completion_tokens)
            self.usage.add(node, completion.prompt_tokens, completion.completion_tokens, cost)
        self._record(node, messages, params, started, completion=completion, attempts=attempts)
        return completion

    def list_models(self) -> list[str]:
        """The model ids the endpoint offers (``GET /models``)."""
        return [m.id for m in self._client.models.list()]

    def close(self) -> None:
        self._client.close()

    # --- the retry loop ------------------------------------------------------------------------------------
    def _params(self, tools: list[dict[str, Any]] | None, temperature: float | None) -> dict[str, Any]:
        s = self.settings
        params: dict[str, Any] = {
            "temperature": s.temperature if temperature is None else temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_completion_tokens,  # the name llama.cpp, vLLM and Fastgen understand
        }
        if tools:
            params["tools"] = tools
            params["tool_choice"] = "auto"
        return params

    def _with_retries(
        self, messages: list[dict[str, Any]], node: str, params: dict[str, Any]
    ) -> tuple[Completion, int]:
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._attempt(messages, node, params), attempts
            except _Retryable as failure:
                if attempts > self.settings.max_retries:
                    raise EndpointError(self._scrub(self._exhausted(failure, attempts))) from None
                self._sleep(self._delay(attempts, failure.retry_after))

    def _attempt(self, messages: list[dict[str, Any]], node: str, params: dict[str, Any]) -> Completion:
        body = {k: v for k, v in params.items() if k not in ("temperature", "top_p", "tools", "tool_choice")}
        body.update(self.settings.extra_body)
        extra: dict[str, Any] = {k: params[k] for k in ("tools", "tool_choice") if k in params}
        try:
            response = self._client.chat.completions.create(
                model=self.settings.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=params["temperature"],
                top_p=params["top_p"],
                extra_headers={NODE_HEADER: node},
                extra_body=body,
                **extra,
            )
        except openai.APITimeoutError:
            raise _Retryable(f"timed out after {self.settings.request_timeout:g} s") from None
        except openai.APIConnectionError as exc:
            raise _Retryable(_connection_reason(exc), unreachable=True) from None
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        return self._to_completion(response, messages)

    def _status_error(self, exc: openai.APIStatusError) -> Exception:
        status = exc.status_code
        detail = _one_line(_error_message(exc))
        if status == 429 or status >= 500:
            return _Retryable(f"HTTP {status}: {detail}", _retry_after(exc.response.headers))
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
    def _to_completion(self, response: Any, messages: list[dict[str, Any]]) -> Completion:
        choice = response.choices[0] if response.choices else None
        message = choice.message if choice is not None else None
        content = (message.content if message is not None else None) or ""
        calls = [
            ToolCall(id=c.id or f"call_{i}", name=c.function.name, arguments=c.function.arguments or "")
            for i, c in enumerate((message.tool_calls if message is not None else None) or [])
            if getattr(c, "function", None) is not None
        ]
        reasoning = getattr(message, "reasoning_content", None) if message is not None else None
        usage = response.usage
        if usage is not None:
            prompt, completion = int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
        else:  # some servers omit usage; an estimate keeps token budgets meaningful
            prompt = _estimate_tokens(json.dumps(messages))
            completion = _estimate_tokens(content + "".join(c.arguments for c in calls))
        return Completion(
            content=content,
            tool_calls=calls,
            finish_reason=choice.finish_reason if choice is not None else None,
            prompt_tokens=prompt,
            completion_tokens=completion,
            reasoning=reasoning if isinstance(reasoning, str) else "",
        )

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
            "params": {**params, "extra_body": self.settings.extra_body},
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
        return text.replace(self._key, "***") if len(self._key) >= 8 else text

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
