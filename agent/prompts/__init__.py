"""Prompt templates as text files, filled with ``str.format``.

Why text files: the fixed part of every prompt (system prompt, tool description, task, repository) comes first and
stays byte-identical across rounds, so a server's prefix cache pays for it once; keeping it in files makes that visible.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def template(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")


def render(name: str, **values: object) -> str:
    return template(name).format(**values).strip() + "\n"
