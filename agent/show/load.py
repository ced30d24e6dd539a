"""Reading a run directory or a batch output directory back, for ``mendloop show`` and the report pages.

Why a reader of its own: a run leaves its story in three files written for other purposes - ``run.json`` (the task
and settings), ``checkpoints.sqlite`` (the graph state after every node: the rounds, the test results, what the model
was told next) and ``trajectory.jsonl`` (every request and answer) - and any of them may be missing or cut short (a run
killed mid-write, a batch task that crashed). Everything here reads what is there, says what is not, and never
writes: the checkpoint database is read from a copy.

Which model exchange belongs to which round is read from time: a round ends with the checkpoint written after its
``verify`` (``iteration`` becomes N), so a ``write`` exchange recorded before that moment belongs to round N or
earlier.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.budget import Budget, Usage
from agent.rounds import Round
from tools.errors import FatalError

__all__ = [
    "BatchData",
    "Exchange",
    "NotARunError",
    "RoundDetail",
    "RunData",
    "Trajectory",
    "kind_of",
    "load_batch",
    "load_rounds",
    "load_run",
    "read_trajectory",
]

RUN_MARKERS = ("run.json", "trajectory.jsonl", "checkpoints.sqlite")
BATCH_MARKER = "results.jsonl"
THREAD = {"configurable": {"thread_id": "repair"}}
MESSAGE_CHARS = 20_000  # of one message on a page; the rest stays in trajectory.jsonl


class NotARunError(FatalError):
    """The directory is neither a run nor a batch (exit 2, naming what was expected)."""


# --- trajectory.jsonl -----------------------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One model request and its answer, from one line of trajectory.jsonl."""

    line: int
    node: str
    time: float | None
    duration: float
    messages: list[dict[str, str]]
    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    error: str = ""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def gist(self) -> str:
        """The answer's first line of substance (after any reasoning), for one-line listings."""
        if self.error:
            return f"error: {self.error}"
        answer = self.content.rsplit("</think>", 1)[-1]
        for line in answer.splitlines():
            if line.strip():
                return line.strip()[:120]
        if self.tool_calls:
            return "tool calls: " + ", ".join(c.get("name", "?") for c in self.tool_calls)
        return "(empty answer)"


@dataclass
class Trajectory:
    exchanges: list[Exchange]
    cut: str | None = None  # where and why the file stops early
    skipped: list[str] = field(default_factory=list)  # unreadable lines in the middle


def _text(value: Any, limit: int = MESSAGE_CHARS) -> str:
    if isinstance(value, list):  # content parts
        value = "\n".join(str(p.get("text", "")) if isinstance(p, Mapping) else str(p) for p in value)
    text = "" if value is None else str(value)
    if len(text) > limit:
        return text[:limit] + f"\n… ({len(text) - limit:,} more characters in trajectory.jsonl)"
    return text


def _exchange(line: int, record: Mapping[str, Any]) -> Exchange:
    response = _mapping(record.get("response"))
    usage = _mapping(record.get("usage"))
    messages = []
    for message in record.get("messages") or []:
        if isinstance(message, Mapping):
            body = _text(message.get("content"))
            calls = message.get("tool_calls")
            if calls:
                body += ("\n" if body else "") + _text(json.dumps(calls, ensure_ascii=False, indent=1))
            messages.append({"role": str(message.get("role", "?")), "content": body})
    calls = [
        {"name": str(c.get("name", "")), "arguments": _text(c.get("arguments"))}
        for c in response.get("tool_calls") or []
        if isinstance(c, Mapping)
    ]
    when = record.get("time")
    return Exchange(
        line=line,
        node=str(record.get("node", "?")),
        time=float(when) if isinstance(when, int | float) else None,
        duration=float(record.get("duration") or 0.0),
        messages=messages,
        content=_text(response.get("content")),
        reasoning=_text(response.get("reasoning")),
        tool_calls=calls,
        finish_reason=str(response.get("finish_reason") or ""),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        attempts=int(record.get("attempts") or 0),
        error=str(record.get("error") or ""),
    )


def read_trajectory(path: Path) -> Trajectory:
    """Every complete record of ``trajectory.jsonl``; a last line without its end (a run killed while writing it)
    is reported in ``cut``, with where it starts."""
    if not path.is_file():
        return Trajectory([], None)
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = data.endswith(b"\n") or not data
    if complete:
        lines = lines[:-1]
    out: list[Exchange] = []
    skipped: list[str] = []
    cut: str | None = None
    offset = 0
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines)
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            record = None
        if isinstance(record, Mapping):
            out.append(_exchange(number, record))
            continue
        if last and not complete:
            cut = (
                f"trajectory.jsonl is cut short: record {number} (from byte {start:,} of {len(data):,}) was still "
                f"being written when the run stopped; the {len(out)} complete record(s) before it are shown"
            )
        else:
            skipped.append(f"line {number} of trajectory.jsonl is not a JSON record; skipped")
    return Trajectory(out, cut, skipped)


def usage_of(exchanges: list[Exchange], budget: Budget) -> Usage:
    """Calls and tokens as the trajectory records them (the same count a resumed run starts from)."""
    usage = Usage()
    for e in exchanges:
        if not e.error:
            usage.add(
                e.node, e.prompt_tokens, e.completion_tokens, budget.cost_of(e.prompt_tokens, e.completion_tokens)
            )
    return usage


# --- checkpoints.sqlite -----------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """The graph state at one checkpoint, and when it was written."""

    time: float
    values: dict[str, Any]


def _snapshots(path: Path) -> tuple[list[Snapshot], str | None]:
    """Every checkpoint of the run, oldest first, read from a copy (the reader writes its own tables)."""
    if not path.is_file():
        return [], None
    from langgraph.checkpoint.sqlite import SqliteSaver

    with tempfile.TemporaryDirectory(prefix="mendloop-show-") as tmp:
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.is_file():
                shutil.copyfile(source, Path(tmp) / (path.name + suffix))
        conn = sqlite3.connect(str(Path(tmp) / path.name), check_same_thread=False)
        try:
            saver = SqliteSaver(conn)
            found = []
            for item in saver.list(THREAD):  # type: ignore[arg-type]
                checkpoint = item.checkpoint
                values = dict(checkpoint.get("channel_values") or {})
                found.append(Snapshot(_epoch(str(checkpoint.get("ts", ""))), values))
        except (sqlite3.Error, ValueError, TypeError) as exc:
            return [], f"checkpoints.sqlite could not be read ({type(exc).__name__}: {exc})"
        finally:
            conn.close()
    found.sort(key=lambda s: s.time)
    return found, None


def _epoch(ts: str) -> float:
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return 0.0


# --- a run -------------------------------------------------------------------------------------------------------


@dataclass
class TestLine:
    id: str
    outcome: str
    message: str = ""


@dataclass
class RoundDetail:
    """A round with what the views show around it: its tests, what the model was told next, its exchanges."""

    round: Round
    tests: list[TestLine] = field(default_factory=list)
    test_command: str = ""
    told: str = ""  # the feedback or evidence (with the execution trace) the next request carried
    trace: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    verified: bool = True  # False: the run stopped before this round's tests ran


@dataclass
class RunData:
    """What one run directory holds, as far as it could be read."""

    dir: Path
    title: str
    instance_id: str
    task_text: str
    model: str
    status: str
    reason: str
    settings: dict[str, Any]
    budget: Budget
    usage: Usage
    elapsed: float | None
    rounds: list[RoundDetail]
    before: list[Exchange]  # exchanges outside the rounds (reproduction test, ...)
    patch: str
    baseline: str = ""
    test_cmd: str = ""
    repro_notes: list[str] = field(default_factory=list)
    trajectory_cut: str | None = None
    notes: list[str] = field(default_factory=list)  # what could not be read

    @property
    def winner_patch(self) -> str:
        return self.patch


def kind_of(path: Path) -> str:
    """``run`` or ``batch``; raises :class:`NotARunError` naming what a run or a batch directory holds."""
    if not path.is_dir():
        raise NotARunError(f"{path} is not a directory: expected a mendloop run or batch output directory")
    if (path / BATCH_MARKER).is_file():
        return "batch"
    if any((path / name).exists() for name in RUN_MARKERS):
        return "run"
    raise NotARunError(
        f"{path} is neither a mendloop run directory (expected run.json, trajectory.jsonl or checkpoints.sqlite) "
        f"nor a batch output directory (expected {BATCH_MARKER})"
    )


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _summary(report: Mapping[str, Any]) -> str:
    cases = [c for c in report.get("cases") or [] if isinstance(c, Mapping)]
    passed = sum(1 for c in cases if c.get("outcome") == "passed")
    failed = sum(1 for c in cases if c.get("outcome") in ("failed", "error"))
    return f"{report.get('status', '?')} ({passed} passed, {failed} failed)"


def _tests(report: Mapping[str, Any]) -> list[TestLine]:
    """Failing tests first, then the rest."""
    cases = [c for c in report.get("cases") or [] if isinstance(c, Mapping)]
    lines = [
        TestLine(str(c.get("id", "?")), str(c.get("outcome", "?")), _text(c.get("message"), 2000).strip())
        for c in cases
    ]
    return sorted(lines, key=lambda t: t.outcome == "passed")


def _pairs(snapshots: list[Snapshot]) -> Iterator[tuple[int, Snapshot, Snapshot | None]]:
    """For each round N: the first checkpoint with ``iteration == N``, and the one before it."""
    seen: set[int] = set()
    previous: Snapshot | None = None
    for snap in snapshots:
        n = snap.values.get("iteration")
        if isinstance(n, int) and n > 0 and n not in seen:
            seen.add(n)
            yield n, snap, previous
        previous = snap


def _told(snap: Snapshot, before: Snapshot | None) -> tuple[str, str]:
    """What the next request was given after a round (feedback or fresh evidence), and its execution trace."""
    old = before.values if before is not None else {}
    feedback = str(snap.values.get("feedback") or "")
    evidence = _mapping(snap.values.get("evidence"))
    old_evidence = _mapping(old.get("evidence"))
    if feedback and feedback != old.get("feedback"):
        trace = feedback.split("Execution trace", 1)
        return feedback, ("Execution trace" + trace[1]) if len(trace) > 1 else ""
    if evidence and evidence != old_evidence:
        told = "\n\n".join(str(evidence.get(k) or "") for k in ("tests", "trace") if evidence.get(k))
        return told, str(evidence.get("trace") or "")
    return "", ""


def load_run(path: Path, *, strict: bool = True) -> RunData:
    """Read a run directory (see the module docstring); raises :class:`NotARunError` for anything else.

    ``strict`` off (a batch's task directory): whatever is there, even a task that failed before its run began.
    """
    if strict and kind_of(path) != "run":
        raise NotARunError(f"{path} is a batch output directory, not a run: show it as a batch")
    meta = _read_json(path / "run.json")
    task = _mapping(meta.get("task"))
    settings = _mapping(meta.get("settings"))
    notes: list[str] = []
    if not meta:
        notes.append("run.json is missing or unreadable: the task and settings are unknown")
    try:
        budget = Budget(
            max_calls=settings.get("max_model_calls"),
            max_total_tokens=settings.get("max_total_tokens"),
            max_wall_time=settings.get("max_wall_time"),
            max_cost=settings.get("max_cost"),
            price_prompt=settings.get("price_prompt"),
            price_completion=settings.get("price_completion"),
        )
    except FatalError:
        budget = Budget()
    trajectory = read_trajectory(path / "trajectory.jsonl")
    notes.extend(trajectory.skipped)
    snapshots, problem = _snapshots(path / "checkpoints.sqlite")
    if problem:
        notes.append(problem)
    final = snapshots[-1].values if snapshots else {}
    rounds, before = _rounds(final, snapshots, trajectory.exchanges)
    patch_file = path / "patch.diff"
    patch = str(final.get("final_patch") or "")
    if not patch and patch_file.is_file():
        patch = patch_file.read_text(encoding="utf-8", errors="replace")
    outcome = _read_json(path / "outcome.json")
    status = str(final.get("status") or "")
    reason = str(final.get("reason") or "")
    if outcome.get("kind") not in (None, "ok"):
        status, reason = "error", f"{outcome.get('kind')}: {outcome.get('error', '')}"
        log = path / "worker.log"
        if log.is_file():
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
            notes.append("worker.log ends with:\n" + "\n".join(tail))
    if not status:
        status = "unfinished" if snapshots or trajectory.exchanges else "unknown"
        reason = reason or "the run stopped before its last step"
    baseline = final.get("baseline") if isinstance(final.get("baseline"), Mapping) else None
    text = str(task.get("text") or "")
    return RunData(
        dir=path,
        title=str(task.get("title") or "") or (text.strip().splitlines() or [path.name])[0][:100],
        instance_id=str(task.get("instance_id") or path.name),
        task_text=text,
        model=str(settings.get("model") or ""),
        status=status,
        reason=reason,
        settings=dict(settings),
        budget=budget,
        usage=usage_of(trajectory.exchanges, budget),
        elapsed=float(meta["elapsed"]) if isinstance(meta.get("elapsed"), int | float) else None,
        rounds=rounds,
        before=before,
        patch=patch,
        baseline=_summary(baseline) if baseline else "",
        test_cmd=str(final.get("test_cmd") or ""),
        repro_notes=[str(n) for n in final.get("repro_notes") or []],
        trajectory_cut=trajectory.cut,
        notes=notes,
    )


def _rounds(
    final: Mapping[str, Any], snapshots: list[Snapshot], exchanges: list[Exchange]
) -> tuple[list[RoundDetail], list[Exchange]]:
    details = [RoundDetail(Round.from_entry(e)) for e in final.get("rounds") or [] if isinstance(e, Mapping)]
    by_number = {d.round.iteration: d for d in details}
    ends: list[tuple[float, int]] = []
    for n, snap, before in _pairs(snapshots):
        detail = by_number.get(n)
        if detail is None:
            continue
        ends.append((snap.time, n))
        report = snap.values.get("last_report")
        if isinstance(report, Mapping):
            detail.tests = _tests(report)
            detail.test_command = str(report.get("command") or "")
        detail.told, detail.trace = _told(snap, before)
    before_rounds: list[Exchange] = []
    unverified: RoundDetail | None = None
    for exchange in exchanges:
        if exchange.node != "write":
            before_rounds.append(exchange)
            continue
        when = exchange.time if exchange.time is not None else float("inf")
        owner = next((by_number[n] for end, n in ends if when <= end), None)
        if owner is None and not ends and details:  # no checkpoint times: put them all in the last round
            owner = details[-1]
        if owner is None:  # after the last verified round: a round the run did not finish
            if unverified is None:
                number = max([d.round.iteration for d in details], default=0) + 1
                unverified = RoundDetail(Round(iteration=number, tests="not run: the run stopped"), verified=False)
            owner = unverified
        owner.exchanges.append(exchange)
    if unverified is not None:
        details.append(unverified)
    return details, before_rounds


def load_rounds(path: Path) -> list[Round]:
    """The verified rounds of a run (for one-line listings such as ``mendloop fix``'s)."""
    snapshots, _ = _snapshots(path / "checkpoints.sqlite")
    final = snapshots[-1].values if snapshots else {}
    return [Round.from_entry(e) for e in final.get("rounds") or [] if isinstance(e, Mapping)]


# --- a batch ------------------------------------------------------------------------------------------------------


@dataclass
class BatchData:
    """One batch output directory: its result rows (the last per task) and settings."""

    dir: Path
    model: str
    rows: list[dict[str, Any]]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.dir.name} ({self.model})" if self.model else self.dir.name

    def run_dir(self, row: Mapping[str, Any]) -> Path:
        """Where a task's run is: under this directory's runs/ (it may have moved since), else as recorded."""
        from agent.doors.batch.tasks import run_dir_name

        here = self.dir / "runs" / run_dir_name(str(row.get("instance_id", "")))
        recorded = Path(str(row.get("run_dir") or here))
        return here if here.is_dir() or not recorded.is_dir() else recorded


def load_batch(path: Path) -> BatchData:
    if kind_of(path) != "batch":
        raise NotARunError(f"{path} is a run directory, not a batch output directory (expected {BATCH_MARKER})")
    latest: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    text = (path / BATCH_MARKER).read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            notes.append(f"line {number} of {BATCH_MARKER} is not a JSON record; skipped")
            continue
        if isinstance(row, dict) and "instance_id" in row:
            latest[str(row["instance_id"])] = row
    settings = _read_json(path / "settings.json")
    rows = list(latest.values())
    model = str(settings.get("model") or next((r.get("model_name_or_path") for r in rows), "") or "")
    return BatchData(path, model, rows, settings, notes)
