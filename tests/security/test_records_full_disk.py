"""Finding 9 (records): a full disk ends the run with one line and leaves every record whole, and the run resumes
once there is room again.

Before: a full disk tore the trajectory's last record (a buffered append cut short), run.json was rewritten in place,
and the run ended with whatever exception the write raised.

The disk is a real one: a 1 MB tmpfs mounted for the test (root, or CAP_SYS_ADMIN, is needed; skipped otherwise).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.doors.batch.store import BatchStore
from agent.records import append_line, write_atomic
from tests.security.robust_support import error_lines, run_cli
from tests.support.example import CWM_FIX, assert_patch_repairs, make_repo
from tests.support.fake_server import ScriptedServer


def _mount(path: Path, size: str) -> bool:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of 1 MB at ``tmp_path/disk`` (unmounted afterwards)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount(disk, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def grow(disk: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)


def whole_jsonl(path: Path) -> list[dict[str, object]]:
    """Every line of ``path`` parses and the file ends with a newline: no torn record."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"{path} ends in half a line"
    return [json.loads(line) for line in data.decode().splitlines()]


def test_a_full_disk_ends_the_run_with_one_line_and_the_run_resumes(tmp_path: Path, small_disk: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    run = small_disk / "run"
    thinking = "Thinking it over. " * (120_000 // 18)  # answers that fill 1 MB within a few calls
    with ScriptedServer({"write": [thinking + "\n</think>\nNo change yet."]}) as server:
        done = run_cli(
            "solve", "--repo", str(repo), "--task", "median is wrong for even-sized lists", "--no-reproduce",
            "--sandbox", "local", "--out", str(run), "--base-url", server.url,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "the disk is full" in lines[0] and f"--resume {run}" in lines[0], done.stderr[-3000:]
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    records = whole_jsonl(run / "trajectory.jsonl")
    assert records, "the calls made before the disk filled are on record"
    json.loads((run / "run.json").read_text())  # whole
    assert not list(run.glob(".*.tmp"))  # no temporary file left behind

    grow(small_disk, "64m")
    with ScriptedServer({"write": [CWM_FIX]}) as server:
        resumed = run_cli("solve", "--resume", str(run), "--base-url", server.url)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(whole_jsonl(run / "trajectory.jsonl")) == len(records) + 1
    assert_patch_repairs(run / "patch.diff", tmp_path)


def fill(disk: Path) -> None:
    """Fill the filesystem to the last byte."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_an_append_on_a_full_disk_leaves_the_file_as_it_was(small_disk: Path) -> None:
    path = small_disk / "trajectory.jsonl"
    append_line(path, json.dumps({"n": 1}))
    fill(small_disk)
    before = path.read_bytes()
    with pytest.raises(OSError) as err:
        append_line(path, json.dumps({"n": 2, "text": "x" * 100_000}))
    assert err.value.errno == errno.ENOSPC
    assert path.read_bytes() == before  # not one byte of the half-written line stays


def test_a_rewrite_on_a_full_disk_keeps_the_old_file(small_disk: Path) -> None:
    path = small_disk / "run.json"
    write_atomic(path, json.dumps({"elapsed": 1.0}))
    fill(small_disk)
    with pytest.raises(OSError):
        write_atomic(path, json.dumps({"elapsed": 2.0, "pad": "x" * 100_000}))
    assert json.loads(path.read_text()) == {"elapsed": 1.0}
    assert {p.name for p in small_disk.iterdir()} == {"run.json", "filler"}  # no temporary file left behind


def test_batch_results_stay_whole_on_a_full_disk(small_disk: Path) -> None:
    out = small_disk / "out"
    store = BatchStore(out)
    row = {"instance_id": "t0", "status": "resolved", "model_patch": "diff --git a/x b/x\n", "pad": ""}
    written = 0
    with pytest.raises(OSError):
        for i in range(10_000):
            store.record({**row, "instance_id": f"t{i}", "pad": "y" * 5_000})
            written += 1
    results = whole_jsonl(out / "results.jsonl")
    preds = whole_jsonl(out / "preds.jsonl")
    assert len(results) >= written and len(preds) >= written - 1
    assert BatchStore(out).finished() == {str(r["instance_id"]) for r in results}  # a rerun reads it as it is
