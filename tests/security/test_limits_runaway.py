"""Findings 4 and 9 (storage): a runaway is stopped by a limit, and the limit hit is an observation to the model,
never the end of the run.

Before: a command wrote 2.6 GB into the workspace in 15 s, then ``git diff`` ran out of memory (exit 2, no report);
there was no file-size limit and no disk quota; a 1 GB file pushed mendloop to 2.1 GB of memory; three 10 MB answers
made a 60 MB trajectory and a 150 MB checkpoint and were sent again every turn.

Everything here is real: the sandboxes (local, bwrap, Docker) write real files, the CLI runs as a subprocess against
the scripted HTTP model server, and mendloop's memory is read from /proc while it runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sandboxes.base import Limits, Sandbox, SandboxSpec, sandbox_class
from tests.security.robust_support import PeakMemory, error_lines, start_cli
from tests.support.example import CWM_FIX, assert_patch_repairs, make_repo
from tests.support.fake_server import ScriptedServer

IMAGE = os.environ.get("MENDLOOP_TEST_IMAGE", "mendloop-base:bookworm")
MiB = 1024 * 1024

BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("bwrap", marks=pytest.mark.bwrap, id="bwrap"),
    pytest.param("docker", marks=pytest.mark.docker, id="docker"),
]

Opener = Callable[..., Sandbox]


@pytest.fixture
def open_box(tmp_path: Path) -> Opener:
    opened: list[Sandbox] = []
    root = tmp_path / "ws"
    root.mkdir()
    (root / "hello.txt").write_text("hello\n")

    def opener(kind: str, **limits: int) -> Sandbox:
        box: Sandbox = sandbox_class(kind)(root, SandboxSpec(kind=kind, image=IMAGE, limits=Limits(**limits)))
        opened.append(box)
        return box

    yield opener  # type: ignore[misc]
    for box in opened:
        box.close()


def workspace_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_file_over_the_size_limit_stops_its_writer_and_is_removed(kind: str, open_box: Opener) -> None:
    box = open_box(kind, max_file_bytes=8 * MiB)
    result = box.run("head -c 2600M /dev/zero > big.bin; echo wrote=$?")
    assert not (box.root / "big.bin").exists()
    assert "wrote=153" in result.output or "File too large" in result.output  # stopped at 8 MiB, not at 2.6 GB
    assert result.limits and "removed big.bin" in result.limits[0] and "max_file_size" in result.limits[0]
    assert result.output.rstrip().endswith(result.limits[-1].rstrip())  # the model reads it at the end
    assert not result.timed_out and not result.oom
    python = box.run("python3 -c \"open('p.bin', 'wb').write(bytes(20 * 1024 * 1024))\"")
    assert "File too large" in python.output and not (box.root / "p.bin").exists()
    assert box.run("cat hello.txt").output.startswith("hello")  # the sandbox goes on


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_command_that_keeps_writing_is_stopped_at_the_growth_limit(kind: str, open_box: Opener) -> None:
    box = open_box(kind, max_file_bytes=8 * MiB, max_growth_bytes=24 * MiB)
    result = box.run("i=0; while :; do i=$((i+1)); head -c 4M /dev/urandom > junk$i.bin; done", timeout=120)
    assert not result.timed_out, "stopped by the limit, long before the timeout"
    assert result.duration < 60
    assert any("was stopped" in note and "max_workspace_growth" in note for note in result.limits), result.limits
    assert any(note.startswith("removed junk") for note in result.limits), result.limits
    assert workspace_bytes(box.root) <= 24 * MiB + 8 * MiB
    assert box.run("echo still-here").output.startswith("still-here")


@pytest.mark.parametrize("kind", BACKENDS)
def test_growth_over_several_commands_adds_up(kind: str, open_box: Opener) -> None:
    box = open_box(kind, max_file_bytes=8 * MiB, max_growth_bytes=20 * MiB)
    notes = []
    for i in range(8):
        notes += box.run(f"head -c 6M /dev/urandom > chunk{i}.bin").limits
    assert any("max_workspace_growth" in note for note in notes), notes
    assert workspace_bytes(box.root) <= 20 * MiB + 6 * MiB


def test_files_the_repository_already_holds_are_never_removed(tmp_path: Path, open_box: Opener) -> None:
    # written before the sandbox opened, with an old mtime as a copy of the repository keeps it: the repository's own
    big = tmp_path / "ws" / "fixture.dat"
    big.write_bytes(os.urandom(3 * MiB))
    os.utime(big, (1_000_000_000, 1_000_000_000))
    box = open_box("local", max_file_bytes=1 * MiB, max_growth_bytes=2 * MiB)
    result = box.run("head -c 3M /dev/urandom > new.bin; ls")
    assert big.is_file() and big.stat().st_size == 3 * MiB
    assert not (box.root / "new.bin").exists() and result.limits


@pytest.mark.slow
@pytest.mark.bwrap
def test_the_default_limit_stops_a_2_6_gb_write_at_1_gib(open_box: Opener) -> None:
    box = open_box("bwrap")  # default limits: 1 GiB per file, 4 GiB in all
    result = box.run("head -c 2600M /dev/zero > big.bin; echo wrote=$?", timeout=300)
    assert "wrote=153" in result.output
    assert not (box.root / "big.bin").exists()
    assert result.limits and "1.0 GiB" in result.limits[0]


# --- through the CLI: the observation, the run going on, the memory, the records ----------------------------------

BASH = "I will look first.\n</think>\n<tool: bash>\n{}\n</tool>"


def solve(repo: Path, out: Path, url: str, *extra: str) -> tuple[int, str, int]:
    """Run ``mendloop solve`` on the example; returns its exit code, stderr and peak resident memory in bytes."""
    proc = start_cli(
        [
            "solve", "--repo", str(repo), "--task", "median is wrong for even-sized lists", "--no-reproduce",
            "--out", str(out), "--base-url", url, *extra,
        ]
    )  # fmt: skip
    peak = PeakMemory(proc.pid)
    _, stderr = proc.communicate(timeout=600)
    return proc.returncode, stderr, peak.stop()


@pytest.mark.bwrap
def test_a_2_6_gb_write_is_an_observation_and_the_run_resolves(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    script = {"write": [BASH.format("head -c 2600M /dev/zero > big.bin; ls -la big.bin"), CWM_FIX]}
    with ScriptedServer(script) as server:
        code, stderr, _ = solve(repo, tmp_path / "run", server.url, "--sandbox", "bwrap", "--max-file-size", "20MB")
        second = server.requests[-1].body["messages"]
    assert code == 0, stderr[-3000:]
    told = "\n".join(str(m.get("content")) for m in second)
    assert "[mendloop] removed big.bin" in told and "max_file_size" in told  # the model was told
    patch = (tmp_path / "run" / "patch.diff").read_text()
    assert "big.bin" not in patch and "stats/core.py" in patch
    assert_patch_repairs(tmp_path / "run" / "patch.diff", tmp_path)
    assert not (tmp_path / "run" / "workspace" / "big.bin").exists()


@pytest.mark.slow
def test_a_1_gb_file_does_not_take_mendloop_to_gbs_of_memory(tmp_path: Path) -> None:
    """The per-file limit is set above 1 GB, so the file stays: only the diff's own guard keeps it out of memory."""
    repo = make_repo(tmp_path / "repo")
    write = "head -c 1G /dev/urandom > data.bin; ls -la data.bin"
    with ScriptedServer({"write": [BASH.format(write), CWM_FIX]}) as server:
        code, stderr, peak = solve(repo, tmp_path / "run", server.url, "--sandbox", "local", "--max-file-size", "2GiB")
    assert code == 0, stderr[-3000:]
    assert (tmp_path / "run" / "workspace" / "data.bin").stat().st_size == 1 << 30
    assert peak < 400 * MiB, f"mendloop peaked at {peak / MiB:.0f} MiB with a 1 GB file in the workspace"
    assert "data.bin" not in (tmp_path / "run" / "patch.diff").read_text()
    assert (tmp_path / "run" / "checkpoints.sqlite").stat().st_size < 20 * MiB


def test_huge_answers_are_cut_before_they_are_stored_or_sent_again(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    huge = "I keep thinking. " * (10 * MiB // 17)  # 10 MB of answer, three times
    with ScriptedServer({"write": [huge + "\n</think>\nStill thinking."]}) as server:
        code, stderr, _ = solve(repo, tmp_path / "run", server.url, "--sandbox", "local", "--max-iterations", "1")
        sent = [len(json.dumps(r.body)) for r in server.requests if r.path.endswith("/chat/completions")]
    assert code == 1, stderr[-3000:]  # unresolved: the answers changed nothing, and the run ended normally
    assert not error_lines(stderr)
    assert len(sent) == 3 and max(sent) < 2 * MiB, sent  # the history sent again holds cut answers
    run = tmp_path / "run"
    assert (run / "trajectory.jsonl").stat().st_size < 6 * MiB
    assert (run / "checkpoints.sqlite").stat().st_size < 20 * MiB
    records = [json.loads(line) for line in (run / "trajectory.jsonl").read_text().splitlines()]
    answer = records[0]["response"]["content"]
    assert len(answer) < 250_000 and "characters of this answer were cut (max_answer_chars)" in answer
