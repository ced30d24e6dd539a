"""What a person watches while mendloop works: the live view of one repair (:mod:`~agent.live.run`) and of a batch
(:mod:`~agent.live.batch`).

Why apart from the loop: both only observe - the model client's stream, the progress lines, state updates, the files
a batch's workers write - so turning them off (``--quiet``, or output that is not a terminal) changes nothing but
what is printed. :func:`is_terminal` is the one test for "may this output get control codes".
"""

from __future__ import annotations

import os
import sys
from typing import IO

from rich.console import Console

__all__ = ["is_terminal", "plain_console"]


def is_terminal(stream: IO[str] | None) -> bool:
    """True when ``stream`` is an interactive terminal that understands control codes (not a pipe, a file, a
    pre-commit or CI capture, nor ``TERM=dumb``)."""
    if stream is None or os.environ.get("TERM") == "dumb":
        return False
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def plain_console(stream: IO[str] | None = None, *, stderr: bool = False, soft_wrap: bool = True) -> Console:
    """A console that writes control codes only to a terminal, whatever FORCE_COLOR and the like say.

    ``stream`` ``None``: standard output (standard error with ``stderr``), looked up when written to.
    """
    tty = is_terminal(stream if stream is not None else sys.stderr if stderr else sys.stdout)
    return Console(
        file=stream, stderr=stderr, force_terminal=tty, no_color=not tty, highlight=False, soft_wrap=soft_wrap
    )
