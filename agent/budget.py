"""What a run has spent on the model, and the limits checked before every call.

Why here and not in the graph: loop limits belong to the state and the config, never to the recursion limit.
``Usage`` is plain data stored in the graph state (``to_dict``/``from_dict``) so ``--resume`` keeps counting;
``Budget`` is checked *before* each call, so the call that would overrun is never sent. Cost is optional:
local models have no price, and then cost is ``None`` rather than a made-up zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent.config import ConfigError, Settings

__all__ = ["Budget", "BudgetExceeded", "Usage"]


class BudgetExceeded(Exception):
    """A limit is spent. Not a ``FatalError``: the graph finishes with its best attempt, marked unresolved."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_COUNTERS = ("calls", "prompt_tokens", "completion_tokens")


@dataclass
class Usage:
    """Calls and tokens, in total and per node (``per_node[node]`` has the same three counters)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    per_node: dict[str, dict[str, int]] = field(default_factory=dict)
    cost: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, node: str, prompt_tokens: int, completion_tokens: int, cost: float | None = None) -> None:
        """Count one model call made for ``node``; ``cost`` is ``None`` when the price is unknown."""
        self.calls += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        entry = self.per_node.setdefault(node, dict.fromkeys(_COUNTERS, 0))
        entry["calls"] = entry.get("calls", 0) + 1
        entry["prompt_tokens"] = entry.get("prompt_tokens", 0) + prompt_tokens
        entry["completion_tokens"] = entry.get("completion_tokens", 0) + completion_tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def merged(self, other: Usage) -> Usage:
        """The sum of two usages (for fan-out branches that counted separately); neither is changed."""
        out = Usage.from_dict(self.to_dict())
        out.calls += other.calls
        out.prompt_tokens += other.prompt_tokens
        out.completion_tokens += other.completion_tokens
        for node, counts in other.per_node.items():
            entry = out.per_node.setdefault(node, dict.fromkeys(_COUNTERS, 0))
            for key in _COUNTERS:
                entry[key] = entry.get(key, 0) + counts.get(key, 0)
        if other.cost is not None:
            out.cost = (out.cost or 0.0) + other.cost
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "per_node": {node: dict(counts) for node, counts in self.per_node.items()},
            "cost": self.cost,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        per_node = {str(n): {k: int(v) for k, v in c.items()} for n, c in dict(data.get("per_node", {})).items()}
        cost = data.get("cost")
        return cls(
            calls=int(data.get("calls", 0)),
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            completion_tokens=int(data.get("completion_tokens", 0)),
            per_node=per_node,
            cost=None if cost is None else float(cost),
        )


@dataclass(frozen=True)
class Budget:
    """Limits on model use; ``None`` means unlimited. Prices are USD per million tokens.

    A price given on one side only counts the other side as free (a local model billed per prompt, say).
    """

    max_calls: int | None = None
    max_total_tokens: int | None = None
    max_wall_time: float | None = None
    max_cost: float | None = None
    price_prompt: float | None = None
    price_completion: float | None = None

    def __post_init__(self) -> None:
        if self.max_cost is not None and not self.priced:
            raise ConfigError(
                "max_cost needs a price: set price_prompt and/or price_completion (USD per million tokens)"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Budget:
        return cls(
            max_calls=settings.max_model_calls,
            max_total_tokens=settings.max_total_tokens,
            max_wall_time=settings.max_wall_time,
            max_cost=settings.max_cost,
            price_prompt=settings.price_prompt,
            price_completion=settings.price_completion,
        )

    @property
    def priced(self) -> bool:
        return self.price_prompt is not None or self.price_completion is not None

    def cost_of(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for these tokens, or ``None`` when the model has no known price."""
        if not self.priced:
            return None
        return (prompt_tokens * (self.price_prompt or 0.0) + completion_tokens * (self.price_completion or 0.0)) / 1e6

    def remaining_tokens(self, usage: Usage) -> int | None:
        return None if self.max_total_tokens is None else max(0, self.max_total_tokens - usage.total_tokens)

    def remaining_calls(self, usage: Usage) -> int | None:
        return None if self.max_calls is None else max(0, self.max_calls - usage.calls)

    def check(self, usage: Usage, started_at: float | None = None, *, now: float | None = None) -> None:
        """Raise ``BudgetExceeded`` if no further call is allowed; ``started_at`` is a ``time.time()``."""
        if self.max_calls is not None and usage.calls >= self.max_calls:
            raise BudgetExceeded(f"model call budget spent: {usage.calls} of {self.max_calls} calls made")
        if self.max_total_tokens is not None and usage.total_tokens >= self.max_total_tokens:
            raise BudgetExceeded(f"token budget spent: {usage.total_tokens} of {self.max_total_tokens} tokens used")
        if self.max_wall_time is not None and started_at is not None:
            elapsed = (time.time() if now is None else now) - started_at
            if elapsed >= self.max_wall_time:
                raise BudgetExceeded(f"time budget spent: {elapsed:.0f} s of {self.max_wall_time:g} s")
        if self.max_cost is not None:
            spent = self.cost_of(usage.prompt_tokens, usage.completion_tokens) or 0.0
            if spent >= self.max_cost:
                raise BudgetExceeded(f"cost budget spent: ${spent:.4f} of ${self.max_cost:.4f}")
