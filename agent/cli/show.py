"""``mendloop show DIR...``: a run or a batch, in the terminal or as one self-contained ``report.html``.

The reading is :mod:`agent.show.load`, the terminal view :mod:`agent.show.terminal`, the page :mod:`agent.show.html`;
this module picks by what ``DIR`` is. Several batch directories are compared on one page. A directory that is neither
a run nor a batch is exit 2 with what was expected (``NotARunError``).
"""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.shared import console
from agent.live import plain_console
from agent.show.load import NotARunError, kind_of, load_batch, load_run
from tools.errors import FatalError

__all__ = ["show"]


def show(
    dirs: Annotated[
        list[Path],
        typer.Argument(help="A run directory, or batch output directories (several are compared on one page)."),
    ],
    html: Annotated[bool, typer.Option("--html", help="Write one self-contained report.html instead.")] = False,
    open_page: Annotated[bool, typer.Option("--open", help="With --html: open the page in a browser.")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="With --html: where the page goes (default DIR/report.html).")
    ] = None,
) -> int:
    """Show what a run tried and why it won or lost: rounds, diffs, tests, traces, tokens."""
    kinds = [kind_of(d) for d in dirs]
    if "run" in kinds and len(dirs) > 1:
        raise NotARunError("give one run directory, or one or more batch output directories")
    if not html:
        if open_page or out is not None:
            raise FatalError("--open and --out go with --html")
        from agent.show.terminal import print_batch, print_run

        screen = plain_console()
        for d, kind in zip(dirs, kinds, strict=True):
            if kind == "run":
                print_run(load_run(d), screen)
            else:
                print_batch(load_batch(d), screen)
        return 0
    from agent.show.html import write_batch_pages, write_run_page

    if kinds == ["run"]:
        page = write_run_page(dirs[0], out=out)
    else:
        page, failed = write_batch_pages(dirs, out)
        for problem in failed:
            console.print(f"mendloop: warning: no page for {problem}", markup=False)
    size = page.stat().st_size
    console.print(f"wrote {page} ({size / 1024:,.0f} KiB)", markup=False)
    if open_page:
        webbrowser.open(page.resolve().as_uri())
    return 0
