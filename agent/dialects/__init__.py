"""How a model speaks: ``get_dialect(name, model)`` picks CWM's text tools or OpenAI's JSON tool calls."""

from __future__ import annotations

from agent.config import ConfigError
from agent.dialects.base import Action, BashCall, Dialect, Parsed, Submit
from agent.dialects.cwm import CwmDialect
from agent.dialects.openai_tools import OpenAIDialect

__all__ = ["Action", "BashCall", "CwmDialect", "Dialect", "OpenAIDialect", "Parsed", "Submit", "get_dialect"]


def get_dialect(name: str, model: str = "") -> Dialect:
    """``"cwm"``, ``"openai"``, or ``"auto"`` (cwm when the model name contains "cwm", else openai)."""
    if name == "auto":
        name = "cwm" if "cwm" in model.lower() else "openai"
    if name == "cwm":
        return CwmDialect()
    if name == "openai":
        return OpenAIDialect()
    raise ConfigError(f"unknown dialect '{name}': choose cwm, openai or auto")
