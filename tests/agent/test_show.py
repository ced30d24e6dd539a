"""``mendloop show``: a real run and a batch shown in the terminal and as self-contained pages, the same words for a
round everywhere (report.md, ``mendloop fix``, ``show``, the page), and bad input: a directory that is neither a run
nor a batch, and a trajectory cut short by a kill.

The page's behaviour in a real browser is tested in tests/browser/.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.doors.batch.run import BatchOptions, run_batch
from agent.rounds import Round, headline, markdown_table
from agent.show.load import kind_of, load_rounds, load_run, read_trajectory
from tests.agent.test_batch_support import STANDIN, worker_env, write_tasks
from tests.agent.test_batch_support import make_repo as make_calc
from tests.support.cli import cli_env
from tests.support.example import CWM_FIX, CWM_REPRODUCE, CWM_WRONG_FIX, ISSUE, ROOT, make_repo
from tests.support.fake_server import ScriptedServer

ESC = "\x1b"


def mendloop(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.main", *args],
        capture_output=True,
        text=True,
        env=env or cli_env(),
        cwd=ROOT,
        timeout=240,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-round run: a reproduction test, a wrong fix, then the right one."""
    tmp = tmp_path_factory.mktemp("run")
    repo = make_repo(tmp / "repo")
    script = {"reproduce": [CWM_REPRODUCE], "write": [CWM_WRONG_FIX, CWM_FIX]}
    with ScriptedServer(script) as server:
        done = mendloop(
            "solve", "--repo", str(repo), "--issue-file", str(ISSUE), "--base-url", server.url,
            "--sandbox", "local", "--out", str(tmp / "run"),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "run"


def test_the_terminal_shows_rounds_diffs_tests_and_tokens_without_control_codes(run_dir: Path) -> None:
    done = mendloop("show", str(run_dir))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert ESC not in out
    rounds = load_rounds(run_dir)
    assert [r.iteration for r in rounds] == [1, 2]
    for r in rounds:
        assert headline(r) in out
    assert "+        return (ordered[middle - 1] + ordered[middle]) / 2" in out  # the winner's diff, whole lines
    assert "failed tests/test_core.py::test_median_even" in out  # round 1's failing test
    assert "Execution trace of `median`" in out  # what round 2 was shown
    assert "reproduce" in out and "write" in out and "Tokens per node" in out


def test_every_view_tells_a_round_the_same_way(run_dir: Path, tmp_path: Path) -> None:
    rounds = load_rounds(run_dir)
    report = (run_dir / "report.md").read_text()
    assert "\n".join(markdown_table(rounds)) in report  # report.md, and so the pull request body
    assert main(["show", str(run_dir), "--html", "--out", str(tmp_path / "page.html")]) == 0
    page = html.unescape((tmp_path / "page.html").read_text())
    for r in rounds:
        assert headline(r) in page


def test_mendloop_fix_lists_its_rounds_as_report_md_does(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with ScriptedServer({"write": [CWM_FIX]}) as server:
        done = subprocess.run(
            [
                sys.executable, "-m", "agent.cli.main", "fix", "--repo", str(repo), "--force", "--sandbox", "local",
                "--no-reproduce", "--base-url", server.url, "--out", str(tmp_path / "run"),
            ],
            capture_output=True, text=True, env=cli_env(), cwd=repo, timeout=240,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]  # pre-commit's "files were modified"
    rounds = load_rounds(tmp_path / "run")
    assert rounds and all(headline(r) in done.stderr for r in rounds)
    assert ESC not in done.stdout + done.stderr


def test_the_run_page_is_one_small_self_contained_file(run_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("workspace", "pristine"))
    done = mendloop("show", str(copy), "--html")
    assert done.returncode == 0, done.stderr
    page_path = copy / "report.html"
    assert f"wrote {page_path}" in done.stderr
    page = page_path.read_text()
    assert len(page.encode()) < 300_000
    assert "Content-Security-Policy" in page and "default-src 'none'" in page and "script-src 'none'" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)  # nothing to fetch
    assert '<link rel="stylesheet"' not in page and "<script" not in page
    assert 'id="final-patch"' in page and "ordered[middle - 1] + ordered[middle]" in html.unescape(page)
    assert page.count('class="exchange"') == 3  # reproduce, and one write per round


def test_a_directory_that_is_neither_a_run_nor_a_batch_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    done = mendloop("show", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("mendloop: error:") and done.stderr.count("\n") == 1
    assert "run.json" in done.stderr and "results.jsonl" in done.stderr
    missing = mendloop("show", str(tmp_path / "nowhere"), "--html")
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    assert not (tmp_path / "report.html").exists()


def test_a_trajectory_cut_mid_write_is_shown_up_to_the_cut(run_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("workspace", "pristine"))
    path = copy / "trajectory.jsonl"
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1  # where the third (last) record starts
    path.write_bytes(data[: last + 200])  # the run was killed 200 bytes into writing it
    trajectory = read_trajectory(path)
    assert len(trajectory.exchanges) == 2
    assert trajectory.cut is not None and "record 3" in trajectory.cut and f"byte {last:,}" in trajectory.cut

    assert main(["show", str(copy), "--html"]) == 0
    page = html.unescape((copy / "report.html").read_text())
    assert trajectory.cut in page
    assert page.count('class="exchange"') == 2  # what is there is shown
    terminal = mendloop("show", str(copy))
    assert terminal.returncode == 0 and "! trajectory.jsonl is cut short: record 3" in terminal.stdout


def test_a_run_killed_before_its_first_checkpoint_still_has_a_page(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "trajectory.jsonl").write_text('{"node": "write", "time": 1.0, "response": {"content": "half')
    data = load_run(run)
    assert data.status == "unknown" and data.rounds == [] and data.trajectory_cut is not None
    assert main(["show", str(run), "--html"]) == 0
    assert "record 1" in (run / "report.html").read_text()


def test_open_hands_the_page_to_the_browser(run_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("workspace", "pristine"))
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys, pathlib\npathlib.Path({str(opened)!r}).write_text(sys.argv[1])\n")
    done = mendloop("show", str(copy), "--html", "--open", env=cli_env({"BROWSER": f"{sys.executable} {browser} %s"}))
    assert done.returncode == 0, done.stderr
    assert opened.read_text() == (copy / "report.html").resolve().as_uri()


# --- batches ----------------------------------------------------------------------------------------------------


@pytest.fixture
def standin_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Two finished batches over the same three tasks (the stand-in repair: fast, one of them errors)."""
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    rows = []
    for name, text in (("a", "fix it"), ("b", "fix it"), ("c", "boom")):
        make_calc(tmp_path / name)
        rows.append({"instance_id": name, "repo": name, "task": text})
    tasks = write_tasks(tmp_path / "tasks.jsonl", rows)
    outs = []
    from agent.config import Settings

    for model in ("model-one", "model-two"):
        out = tmp_path / f"out-{model}"
        options = BatchOptions(out=out, workers=2, solve_target=STANDIN, progress=False, retries=0)
        run_batch(tasks, Settings(model=model), options)
        outs.append(out)
    return outs


def test_a_batch_page_links_a_page_per_run_and_charts_without_scripts(standin_batches: list[Path]) -> None:
    out = standin_batches[0]
    assert kind_of(out) == "batch"
    assert main(["show", str(out), "--html"]) == 0
    page = (out / "report.html").read_text()
    for name in ("a", "b", "c"):
        assert f'href="runs/{name}/report.html"' in page
        assert (out / "runs" / name / "report.html").is_file()
    assert 'href="../../report.html"' in (out / "runs" / "a" / "report.html").read_text()
    assert "exception: RuntimeError: a bug in the repair" in (out / "runs" / "c" / "report.html").read_text()
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 2 and all("<script" not in svg for svg in svgs)
    assert page.count("<script>") == 1  # the page's own, allowed by its hash
    digest = re.search(r"script-src 'sha256-([^']+)'", page)
    assert digest is not None


def test_several_batches_are_compared_on_one_page(standin_batches: list[Path], tmp_path: Path) -> None:
    target = tmp_path / "compare.html"
    assert main(["show", *map(str, standin_batches), "--html", "--out", str(target)]) == 0
    page = html.unescape(target.read_text())
    assert "Batches compared" in page and "Resolved tasks (%) per batch" in page
    assert "out-model-one (model-one)" in page and "out-model-two (model-two)" in page
    assert page.count("<svg") == 3
    links = re.findall(r'href="([^"]+/report\.html)"', page)
    assert len(links) == 6 and all((tmp_path / link).resolve().is_file() for link in links)


def test_a_batch_in_the_terminal(standin_batches: list[Path]) -> None:
    done = mendloop("show", str(standin_batches[0]))
    assert done.returncode == 0, done.stderr
    assert "3 tasks, 66.7% resolved" in done.stdout and "RuntimeError" in done.stdout


def test_show_refuses_a_run_among_batches(run_dir: Path, standin_batches: list[Path]) -> None:
    done = mendloop("show", str(run_dir), str(standin_batches[0]))
    assert done.returncode == 2 and "one run directory" in done.stderr


def test_results_rows_keep_their_last_state(standin_batches: list[Path]) -> None:
    results = standin_batches[0] / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    rows[0]["status"] = "unresolved"
    results.write_text("".join(json.dumps(r) + "\n" for r in [*rows, {**rows[0], "status": "resolved"}]) + "{torn")
    done = mendloop("show", str(standin_batches[0]))
    assert done.returncode == 0 and "line 5 of results.jsonl is not a JSON record" in done.stdout
    assert os.path.getsize(results) > 0


def test_round_entries_missing_keys_still_read() -> None:
    r = Round.from_entry({"iteration": 3})
    assert headline(r) == "round 3: no test result · no change"
