"""Read and check a batch input file: one JSON task per line, SWE-bench instances or mendloop's own form.

Why validate the whole file first: a batch may run for hours; a typo on line 812 must be reported (with its
line number and the reason) before line 1 spends a single token, not discovered halfway through the night.

Two shapes are understood, and may be mixed:

- SWE-bench: ``instance_id``, ``repo`` ("owner/name"), ``base_commit``, ``problem_statement``,
  ``FAIL_TO_PASS``, ``PASS_TO_PASS`` (JSON lists or JSON-encoded strings, as the dataset ships them),
  ``image_name``.
- mendloop: ``instance_id``, ``repo`` (a local path, relative to the tasks file, or a git URL), ``task``,
  ``test_cmd``, ``setup`` (a string or a list of commands), ``image``, optionally ``base_commit``.

Unknown keys are ignored, so a raw SWE-bench export (with ``patch``, ``hints_text``, ...) is accepted as is.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tools.errors import FatalError

__all__ = ["BatchInputError", "BatchTask", "parse_line", "read_tasks", "run_dir_name", "select_tasks"]

RepoKind = Literal["path", "url", "slug"]

_URL_PREFIXES = ("http://", "https://", "git://", "ssh://", "file://", "git@")
_SLUG_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_MAX_REPORTED = 20


class BatchInputError(FatalError):
    """The tasks file is unusable: the message lists every bad line as ``FILE:LINE: reason``."""


@dataclass
class BatchTask:
    """One line of the tasks file, checked and normalised; the worker turns it into an ``agent.task.Task``."""

    instance_id: str
    repo: str  # absolute local path, git URL, or "owner/name"
    repo_kind: RepoKind
    text: str
    line: int = 0
    base_commit: str | None = None
    test_cmd: str | None = None
    setup: list[str] | None = None
    image: str | None = None
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchTask:
        return cls(**data)


class _Bad(ValueError):
    """A reason a line is rejected (internal: collected into one BatchInputError)."""


def _string(obj: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise _Bad(f"missing {key!r}")
        return None
    if not isinstance(value, str):
        raise _Bad(f"{key!r} must be a string, not {type(value).__name__}")
    return value


def _string_list(obj: dict[str, Any], key: str) -> list[str] | None:
    """A list of strings, given as a JSON list or (SWE-bench style) a JSON-encoded string of one."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise _Bad(f"{key!r} is a string but not a JSON-encoded list") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Bad(f"{key!r} must be a list of strings")
    return list(value)


def _looks_like_path(value: str) -> bool:
    """``./x``, ``../x``, ``/x``, ``~/x``, ``a/b/c``: never an owner/name (GitHub names start with neither ``.`` nor
    ``~`` and have one slash), so such a value is a path, and a typo in it must not pass as a repository slug."""
    return value.startswith((".", "/", "~")) or value.count("/") > 1 or "\\" in value


def _repo(value: str, base_dir: Path) -> tuple[str, RepoKind]:
    """Classify ``repo``; a local path must exist now, so a typo fails before the batch starts."""
    if value.startswith(_URL_PREFIXES) or (value.endswith(".git") and "://" in value):
        return value, "url"
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if path.is_dir():
        return str(path.resolve()), "path"
    if _looks_like_path(value):
        what = "is not a directory" if path.exists() else "does not exist"
        raise _Bad(f"repo {value!r} looks like a path, and {path} {what}")
    if _SLUG_RE.match(value):
        return value, "slug"
    raise _Bad(f"repo {value!r} is neither an existing directory, a git URL, nor owner/name")


def parse_line(text: str, *, line: int = 0, base_dir: Path = Path(".")) -> BatchTask:
    """Parse one line; raises ``ValueError`` with the reason when the line is unusable."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Bad(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise _Bad(f"expected a JSON object, got {type(obj).__name__}")
    instance_id = _string(obj, "instance_id", required=True)
    assert instance_id is not None
    if instance_id != instance_id.strip() or "\n" in instance_id:
        raise _Bad("'instance_id' has surrounding whitespace or a newline")
    statement = _string(obj, "problem_statement")
    task_text = _string(obj, "task")
    text_value = statement or task_text
    if not text_value:
        raise _Bad("missing 'problem_statement' (SWE-bench) or 'task' (mendloop)")
    repo_value = _string(obj, "repo", required=True)
    assert repo_value is not None
    repo, kind = _repo(repo_value, base_dir)
    setup_value = obj.get("setup")
    setup = [setup_value] if isinstance(setup_value, str) and setup_value else _string_list(obj, "setup")
    return BatchTask(
        instance_id=instance_id,
        repo=repo,
        repo_kind=kind,
        text=text_value,
        line=line,
        base_commit=_string(obj, "base_commit"),
        test_cmd=_string(obj, "test_cmd"),
        setup=setup,
        image=_string(obj, "image") or _string(obj, "image_name"),
        fail_to_pass=_string_list(obj, "FAIL_TO_PASS") or _string_list(obj, "fail_to_pass") or [],
        pass_to_pass=_string_list(obj, "PASS_TO_PASS") or _string_list(obj, "pass_to_pass") or [],
    )


def read_tasks(path: Path) -> list[BatchTask]:
    """Read and check every line of ``path``; one ``BatchInputError`` lists all bad lines (first 20)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"cannot read tasks file {path}: {exc}") from None
    tasks: list[BatchTask] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, text in enumerate(raw.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            task = parse_line(text, line=number, base_dir=path.parent)
        except _Bad as exc:
            problems.append(f"{path}:{number}: {exc}")
            continue
        if task.instance_id in seen:
            problems.append(
                f"{path}:{number}: duplicate instance_id {task.instance_id!r} (first on line {seen[task.instance_id]})"
            )
            continue
        seen[task.instance_id] = number
        tasks.append(task)
    if problems:
        more = f"\n... and {len(problems) - _MAX_REPORTED} more" if len(problems) > _MAX_REPORTED else ""
        raise BatchInputError(
            f"{len(problems)} bad line(s) in {path}, nothing was run:\n" + "\n".join(problems[:_MAX_REPORTED]) + more
        )
    if not tasks:
        raise BatchInputError(f"{path} holds no tasks")
    return tasks


def select_tasks(
    tasks: Sequence[BatchTask],
    *,
    pattern: str | None = None,
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> list[BatchTask]:
    """Filter by a regex on instance_id, shuffle with a fixed seed, then cut to ``limit``.

    Why a fixed seed: a rerun after a crash must pick the same subset, or ``--limit`` never finishes.
    """
    chosen: list[BatchTask] = list(tasks)
    if pattern:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise BatchInputError(f"--filter {pattern!r} is not a valid regular expression: {exc}") from None
        chosen = [t for t in chosen if regex.search(t.instance_id)]
    if shuffle:
        random.Random(seed).shuffle(chosen)
    if limit is not None:
        chosen = chosen[: max(limit, 0)]
    return chosen


def run_dir_name(instance_id: str) -> str:
    """A directory name for an instance id: readable, filesystem-safe, and collision-free."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", instance_id).strip("._") or "task"
    if safe == instance_id:
        return safe
    return f"{safe[:80]}-{hashlib.sha1(instance_id.encode()).hexdigest()[:8]}"


def ids(tasks: Iterable[BatchTask]) -> list[str]:
    return [t.instance_id for t in tasks]
