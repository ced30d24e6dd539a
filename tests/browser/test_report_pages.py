"""The report pages in a real browser: Debian's chromium, driven by Playwright's Python API, with the network cut.

What is promised: the run page and the batch page load with no console error and no request leaving the page; the
winner's diff is visible; sorting the batch table by tokens reorders its rows; a task's link opens its run page; a
model answer holding ``<script>alert(1)</script>`` and a file named ``<img src=x onerror=alert(1)>.py`` show as text
and fire no dialog; a trajectory cut mid-write is named on the page.

The browser is the distribution's (``/usr/bin/chromium``; .ci/run installs it), never one Playwright downloads. CI
must run these: there a missing browser fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.cli.main import main
from agent.doors.batch.tasks import run_dir_name
from tests.support.runs import IMG_FILE, IMG_TASK, SCRIPT, SCRIPT_TASK, TWO_ROUNDS, make_batch

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI installs it (.ci/run), so this must not happen there")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium with a fresh profile; every request that is not a local file is aborted and recorded."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="mendloop-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hostile batch (tests/support/runs.py), two candidates per round, with its pages written."""
    out = make_batch(tmp_path_factory.mktemp("batch"), candidates=2)
    assert main(["show", str(out), "--html"]) == 0
    return out


@dataclass
class Watched:
    """What happened while a page was open: console errors, page errors, dialogs, requests that left."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs
        assert self.left == [], self.left


def open_page(context: Any, path: Path) -> Watched:
    page = context.new_page()
    watched = Watched(page)
    page.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: watched.errors.append(str(e)))

    def dialog(d: Any) -> None:
        watched.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)

    def route(r: Any) -> None:
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            watched.left.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("request", lambda req: None if req.url.startswith(("file:", "data:")) else watched.left.append(req.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return watched


def run_page(batch: Path, instance: str) -> Path:
    return batch / "runs" / run_dir_name(instance) / "report.html"


def test_the_run_page_shows_the_winner_and_hostile_text_as_text(browser: Any, batch: Path) -> None:
    watched = open_page(browser, run_page(batch, SCRIPT_TASK))
    page = watched.page
    assert page.locator("#final-patch").is_visible()
    assert "+    return a + b" in page.locator("#final-patch").inner_text()
    winner = page.locator("details.candidate-diff[open] pre.diff").first
    assert winner.is_visible() and "return a + b" in winner.inner_text()
    assert page.locator("#status").inner_text() == "resolved"
    page.locator("details.exchange > summary").first.click()  # open an exchange: the answer becomes visible
    page.locator("details.exchange details.reasoning > summary").first.click()
    assert page.get_by_text(f"The page must show {SCRIPT} as text.").first.is_visible()
    assert SCRIPT in (page.text_content("#task") or "")
    assert page.locator("script").count() == 0 and page.locator("img").count() == 0
    watched.assert_clean()
    page.close()


def test_a_file_named_like_markup_is_text_in_the_diff(browser: Any, batch: Path) -> None:
    watched = open_page(browser, run_page(batch, IMG_TASK))
    page = watched.page
    assert f"+++ b/{IMG_FILE}" in page.locator("#final-patch").inner_text()
    assert page.locator("img").count() == 0
    watched.assert_clean()
    page.close()


def test_the_batch_page_sorts_filters_and_links_to_run_pages(browser: Any, batch: Path) -> None:
    watched = open_page(browser, batch / "report.html")
    page = watched.page
    rows = page.locator("#tasks tbody tr")
    assert rows.count() == 3

    def tokens() -> list[int]:
        cells = page.locator("#tasks tbody tr td:nth-child(4)")
        return [int(v) for v in cells.evaluate_all("cells => cells.map(c => c.dataset.value)")]

    def tasks() -> list[str]:
        return page.locator("#tasks tbody tr td:nth-child(1)").all_inner_texts()

    header = page.locator("#tasks thead th", has_text="tokens").locator("button")
    header.click()
    ascending = tasks()
    assert tokens() == sorted(tokens()) and len(set(tokens())) == 3
    header.click()
    assert tokens() == sorted(tokens(), reverse=True)
    assert tasks() == list(reversed(ascending))  # the rows themselves moved
    assert tasks()[0] == TWO_ROUNDS  # two rounds of two candidates cost the most

    assert SCRIPT_TASK in tasks() and IMG_TASK in tasks()  # hostile ids, shown as text
    assert page.locator("svg").count() == 2 and page.locator("img").count() == 0
    assert page.locator("script").count() == 1  # the page's own

    page.fill("#filter", "two-rounds")
    assert page.locator("#tasks tbody tr:not([hidden])").count() == 1
    assert page.inner_text("#shown") == "1 of 3 tasks"
    page.fill("#filter", "")
    page.select_option("#status-filter", "resolved")
    assert page.locator("#tasks tbody tr:not([hidden])").count() == 3

    page.get_by_role("link", name=SCRIPT_TASK).click()
    page.wait_for_load_state("load")
    assert page.url == run_page(batch, SCRIPT_TASK).resolve().as_uri()
    assert page.locator("#final-patch").is_visible()
    page.locator("#back").click()
    page.wait_for_load_state("load")
    assert page.url == (batch / "report.html").resolve().as_uri()
    watched.assert_clean()
    page.close()


def test_a_run_cut_mid_write_says_where(browser: Any, batch: Path, tmp_path: Path) -> None:
    source = run_page(batch, TWO_ROUNDS).parent
    run = shutil.copytree(source, tmp_path / "run", ignore=shutil.ignore_patterns("workspace", "pristine", "repo"))
    trajectory = run / "trajectory.jsonl"
    data = trajectory.read_bytes()
    trajectory.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1 + 150])
    assert main(["show", str(run), "--html"]) == 0
    watched = open_page(browser, run / "report.html")
    page = watched.page
    assert page.locator("#cut").is_visible()
    assert "was still being written when the run stopped" in page.inner_text("#cut")
    assert page.locator("details.exchange").count() == 3  # four calls were made; three records are whole
    watched.assert_clean()
    page.close()
