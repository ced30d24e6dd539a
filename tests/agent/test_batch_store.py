"""The output files: appends never tear, a torn tail is cut, and a crash between the two appends heals."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from agent.doors.batch.store import BatchStore, append_line, read_jsonl, repair_tail


def _hammer(path: str, worker: int) -> None:
    for i in range(200):
        append_line(Path(path), {"worker": worker, "i": i, "pad": "x" * (1000 + 37 * worker)})


def test_concurrent_appends_from_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    lines = path.read_text().splitlines()
    assert len(lines) == 600
    rows = [json.loads(line) for line in lines]  # raises on any torn or interleaved line
    assert sorted((r["worker"], r["i"]) for r in rows) == sorted((w, i) for w in range(3) for i in range(200))


def test_torn_tail_is_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    append_line(path, {"a": 1})
    with open(path, "ab") as handle:
        handle.write(b'{"a": 2, "tor')
    assert repair_tail(path) is True
    append_line(path, {"a": 3})
    assert [r["a"] for r in read_jsonl(path)] == [1, 3]
    assert repair_tail(path) is False


def test_store_rebuilds_a_missing_prediction_and_forgets_on_redo(tmp_path: Path) -> None:
    store = BatchStore(tmp_path / "out")
    run_dir = store.runs / "x"
    run_dir.mkdir()
    (run_dir / "patch.diff").write_text("diff --git a/f b/f\n")
    row = {"instance_id": "x", "status": "resolved", "model_name_or_path": "m", "run_dir": str(run_dir)}
    append_line(store.results_path, row)  # the crash fell between the results and the preds append
    store = BatchStore(tmp_path / "out")
    assert read_jsonl(store.preds_path) == [
        {"instance_id": "x", "model_name_or_path": "m", "model_patch": "diff --git a/f b/f\n"}
    ]
    store.record({"instance_id": "y", "status": "error", "model_name_or_path": "m", "model_patch": "", "run_dir": ""})
    assert store.finished() == {"x", "y"} and store.finished(include_errors=False) == {"x"}
    assert "model_patch" not in read_jsonl(store.results_path)[-1]
    BatchStore(tmp_path / "out")  # reopening does not duplicate anything
    assert [r["instance_id"] for r in read_jsonl(store.preds_path)] == ["x", "y"]
    store.forget({"x"})
    assert [r["instance_id"] for r in read_jsonl(store.preds_path)] == ["y"]
    assert [r["instance_id"] for r in read_jsonl(store.results_path)] == ["y"]
