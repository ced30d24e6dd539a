"""The one subprocess chokepoint for host-side commands (git, mostly: see :mod:`tools.git`).

Why one module: like pre-commit's ``cmd_output``, every host command goes through :func:`run`, so a
missing executable, a timeout or a failing command always becomes the same one-line ``FatalError``, and
tests have a single place to look. Code that runs *the user's code* never comes here: that goes through a
Sandbox.

Output is decoded as UTF-8 with ``surrogateescape``: bytes that are not UTF-8 (a latin-1 source file inside a
diff) survive a round trip back to bytes with :func:`encode` instead of being mangled.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.errors import FatalError

__all__ = ["CalledProcessError", "Completed", "decode", "encode", "run"]


@dataclass
class Completed:
    """What a finished command left behind."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


class CalledProcessError(FatalError):
    """A host command exited non-zero; the message names the command and its first line of stderr."""

    def __init__(self, completed: Completed) -> None:
        self.completed = completed
        detail = _first_line(completed.stderr) or _first_line(completed.stdout) or "no output"
        super().__init__(f"command `{_show(completed.args)}` failed (exit {completed.returncode}): {detail}")


def decode(data: bytes) -> str:
    """Bytes from a command to text without losing non-UTF-8 bytes (see the module docstring)."""
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    """The inverse of :func:`decode`."""
    return text.encode("utf-8", "surrogateescape")


def run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> Completed:
    """Run ``args`` (no shell) and capture its output; raise ``CalledProcessError`` if ``check`` and it fails.

    ``env`` is *added* to the current environment, so callers only say what differs.
    """
    argv = [str(a) for a in args]
    if not argv:
        raise ValueError("run() needs a command")
    data = encode(input) if isinstance(input, str) else input
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=full_env, input=data, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        if cwd is not None and not Path(cwd).is_dir():
            raise FatalError(f"cannot run `{argv[0]}`: directory {cwd} does not exist") from exc
        raise FatalError(f"{argv[0]} is not installed") from exc
    except PermissionError as exc:
        raise FatalError(f"cannot run `{argv[0]}`: permission denied") from exc
    except subprocess.TimeoutExpired as exc:
        raise FatalError(f"command `{_show(argv)}` timed out after {timeout:g}s") from exc
    done = Completed(argv, proc.returncode, decode(proc.stdout), decode(proc.stderr))
    if check and done.returncode != 0:
        raise CalledProcessError(done)
    return done


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _show(argv: Sequence[str]) -> str:
    """The command as a user would have typed it: ``git apply x``, without our ``-c key=value`` plumbing."""
    shown = list(argv)
    if shown and shown[0] == "git":
        while len(shown) > 2 and shown[1] == "-c":
            del shown[1:3]
    text = shlex.join(shown)
    return text if len(text) <= 200 else text[:197] + "..."
