"""The batch's output files: atomic JSONL appends and the bookkeeping that lets a rerun resume.

Why one ``os.write`` per line with ``O_APPEND`` and ``fsync``: a line is either wholly in the file or not at
all, so a batch killed at any instant leaves no torn JSON behind; a full disk's short write is cut back at once,
and if the disk itself tore a line (power loss), the next open cuts that tail off before anything is appended.

Why results are written before preds: ``results.jsonl`` is the record of what finished. If the process dies
between the two writes, the next open rebuilds the missing prediction from the result row, so every finished
instance_id appears exactly once in ``preds.jsonl`` whatever the moment of the crash."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent import records

__all__ = ["BatchStore", "append_line", "read_jsonl", "repair_tail"]

PREDS = "preds.jsonl"
RESULTS = "results.jsonl"


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON object as one line, in a single write, then fsync; a short write (a full disk) is cut back
    at once (:func:`agent.records.append_line`), so the file never ends in half a line."""
    records.append_line(path, json.dumps(record, ensure_ascii=False))


def repair_tail(path: Path) -> bool:
    """Cut a torn last line (no trailing newline) off ``path``; returns True when something was cut."""
    if not path.exists():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as handle:
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON object line of ``path`` (unparsable lines are skipped, never fatal)."""
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = []
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _rewrite(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace ``path`` atomically (temp file + rename), for ``--redo``'s removal of old rows."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class BatchStore:
    """``preds.jsonl`` + ``results.jsonl`` + ``runs/`` under one output directory; only the parent writes."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.preds_path = out / PREDS
        self.results_path = out / RESULTS
        self.runs = out / "runs"
        out.mkdir(parents=True, exist_ok=True)
        self.runs.mkdir(exist_ok=True)
        repair_tail(self.preds_path)
        repair_tail(self.results_path)
        self._reconcile()

    def _reconcile(self) -> None:
        """Give every result row its prediction (a crash may have fallen between the two appends)."""
        have = {row.get("instance_id") for row in read_jsonl(self.preds_path)}
        for row in read_jsonl(self.results_path):
            if row.get("instance_id") not in have:
                append_line(self.preds_path, _pred_from_result(row))
                have.add(row.get("instance_id"))

    def results(self) -> list[dict[str, Any]]:
        """The last result row per instance_id, in first-seen order."""
        latest: dict[str, dict[str, Any]] = {}
        for row in read_jsonl(self.results_path):
            latest[str(row.get("instance_id"))] = row
        return list(latest.values())

    def finished(self, *, include_errors: bool = True) -> set[str]:
        """instance_ids that a rerun skips (errors too, unless ``include_errors`` is False)."""
        return {str(row["instance_id"]) for row in self.results() if include_errors or row.get("status") != "error"}

    def forget(self, instance_ids: set[str]) -> None:
        """Drop the rows of ``instance_ids`` from both files, so a redone task is not listed twice."""
        if not instance_ids:
            return
        for path in (self.results_path, self.preds_path):
            rows = read_jsonl(path)
            kept = [row for row in rows if row.get("instance_id") not in instance_ids]
            if len(kept) != len(rows):
                _rewrite(path, kept)

    def record(self, result: dict[str, Any]) -> None:
        """Append one finished task: its result row first, then its prediction."""
        append_line(self.results_path, {k: v for k, v in result.items() if k != "model_patch"})
        append_line(self.preds_path, _pred_from_result(result))


def _pred_from_result(row: dict[str, Any]) -> dict[str, Any]:
    """The SWE-bench prediction for a result row; the patch comes from the row or the run dir's patch.diff."""
    patch = row.get("model_patch")
    if patch is None:
        patch_file = Path(str(row.get("run_dir", ""))) / "patch.diff"
        patch = patch_file.read_text(encoding="utf-8", errors="replace") if patch_file.is_file() else ""
    return {
        "instance_id": row.get("instance_id"),
        "model_name_or_path": row.get("model_name_or_path", ""),
        "model_patch": patch,
    }
