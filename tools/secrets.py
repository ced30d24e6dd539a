"""The one scrubber: the user's secrets, masked in everything mendloop writes or sends.

Why one process-wide list and not a parameter: a secret reaches a record by many routes (a test that prints its
environment, an endpoint echoing the key, a file a sandboxed command wrote, an error message) and each route is
written by a different part of the code. The values are learnt where they enter the process - the API key and the
``pass_env`` values when a run starts (:func:`remember_settings`), the GitHub token when it is resolved - and every
writer (the trajectory, the report, the patch, the pull request, the model request, the checkpoint) passes what it
writes through :func:`scrub` / :func:`scrub_obj`. A value shorter than :data:`MIN_LENGTH` is no secret (a local
server's ``"x"`` key, ``PYTHONHASHSEED=0``) and masking it would garble every record.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

__all__ = ["MASK", "MIN_LENGTH", "forget_all", "known", "remember", "remember_settings", "scrub", "scrub_bytes"]
__all__ += ["StreamScrubber", "scrub_obj"]

MASK = "***"
MIN_LENGTH = 8

_lock = threading.Lock()
_secrets: set[str] = set()


class _HasSecrets(Protocol):
    """What :func:`remember_settings` reads (``agent.config.Settings`` has it; tools/ does not import agent/)."""

    pass_env: list[str]

    @property
    def api_key(self) -> Any: ...


def _forms(value: str) -> set[str]:
    """A secret and the encodings it travels in: git's ``x-access-token:`` basic-auth header for a token."""
    basic = base64.b64encode(f"x-access-token:{value}".encode()).decode()
    return {value, basic}


def remember(*values: str | None) -> None:
    """Add secrets to mask from now on (empty and short values are ignored)."""
    fresh = {form for value in values if value and len(value.strip()) >= MIN_LENGTH for form in _forms(value.strip())}
    if fresh:
        with _lock:
            _secrets.update(fresh)


def remember_settings(settings: _HasSecrets, environ: Mapping[str, str] | None = None) -> None:
    """The user's secrets of a run: the API key and the values of the variables named in ``pass_env``."""
    env = os.environ if environ is None else environ
    key = settings.api_key
    remember(key.get_secret_value() if key is not None else None, *(env.get(name) for name in settings.pass_env))


def known() -> frozenset[str]:
    """The secrets masked now (for tests and for a worker that must pass them on)."""
    with _lock:
        return frozenset(_secrets)


def forget_all() -> None:
    """Forget every secret (tests only: a process normally keeps them for its whole life)."""
    with _lock:
        _secrets.clear()


def _ordered(extra: Iterable[str | None]) -> list[str]:
    # Longest first: a secret that contains another is masked whole.
    with _lock:
        values = set(_secrets)
    values.update(form for value in extra if value and len(value) >= MIN_LENGTH for form in _forms(value))
    return sorted(values, key=len, reverse=True)


def scrub(text: str, extra: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret (and each of ``extra``) replaced by ``***``."""
    return _masked(text, _ordered(extra))


def _masked(text: str, values: list[str]) -> str:
    for secret in values:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub_bytes(data: bytes) -> bytes:
    """``data`` with every known secret's UTF-8 bytes replaced by ``***``."""
    for secret in _ordered(()):
        raw = secret.encode()
        if raw in data:
            data = data.replace(raw, MASK.encode())
    return data


def scrub_obj(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples, strings, bytes) with every string scrubbed, keys too;
    other objects are kept as they are."""
    if not known():
        return value
    return _scrub_any(value)


def _scrub_any(value: Any) -> Any:
    # Exact types: a subclass (a named tuple, a pydantic model) is left as it is rather than rebuilt wrongly.
    kind = type(value)
    if kind is str:
        return scrub(value)
    if kind is bytes:
        return scrub_bytes(value)
    if kind is dict:
        return {_scrub_any(k): _scrub_any(v) for k, v in value.items()}
    if kind is list:
        return [_scrub_any(v) for v in value]
    if kind is tuple:
        return tuple(_scrub_any(v) for v in value)
    return value


class StreamScrubber:
    """:func:`scrub` for text that arrives in pieces (a streamed answer shown as it is written), masking the known
    secrets and ``extra``.

    Why not scrub each piece: a secret the model spells across two pieces would pass in halves. The tail that could
    still grow into a secret is held back, unmasked, until the next piece (or :meth:`flush`) decides it; everything
    before it is passed on masked. The cut never falls inside a secret the text already holds (one secret may begin
    another: a password inside a database URL), so a view lags by at most one secret's length, and only while what it
    would show could be a secret's start.
    """

    def __init__(self, extra: Iterable[str | None] = ()) -> None:
        self._held = ""
        self._extra = [value for value in extra if value]

    def feed(self, piece: str) -> str:
        """What of the text so far can be shown now, masked; the rest is held."""
        raw = self._held + piece
        values = _ordered(self._extra)
        cut = _safe_cut(raw, values)
        self._held = raw[cut:]
        return _masked(raw[:cut], values)

    def flush(self) -> str:
        """The held tail, masked (the stream ended, so it can grow into nothing more)."""
        rest, self._held = scrub(self._held, self._extra), ""
        return rest


def _safe_cut(raw: str, values: list[str]) -> int:
    """Where ``raw`` may be cut: before any end that could still grow into a secret, and inside no secret it holds."""
    cut = len(raw) - _open_prefix(raw, values)
    moved = True
    while moved:
        moved = False
        for value in values:
            start = next((at for at in range(max(0, cut - len(value) + 1), cut) if raw.startswith(value, at)), None)
            if start is not None:
                cut, moved = start, True
    return cut


def _open_prefix(text: str, values: list[str]) -> int:
    """The length of the longest end of ``text`` that is the start (not the whole) of one of ``values``."""
    for size in range(min(len(text), max((len(v) for v in values), default=1) - 1), 0, -1):
        tail = text[-size:]
        if any(len(v) > size and v.startswith(tail) for v in values):
            return size
    return 0
