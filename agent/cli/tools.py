"""``mendloop trace``, ``mendloop doctor`` and ``mendloop sandbox prune``: the commands around a repair.

``trace`` shows a failing test's execution trace as the model would see it, ``doctor`` says what is missing for a
repair to run, ``sandbox prune`` removes what Docker runs left behind. None of them calls the model.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.shared import Flags, options, settings_rows
from agent.config import load_settings
from tools.errors import FatalError

__all__ = ["doctor", "prune", "trace"]


@options(settings_rows("sandbox", "image", "trust_repo_config", "trace_step_into"))
def trace(
    test_id: Annotated[str, typer.Argument(help="A pytest test id, e.g. tests/test_x.py::test_y.")],
    repo: Annotated[Path, typer.Option("--repo", help="The repository (default: here).")] = Path("."),
    fmt: Annotated[str, typer.Option("--format", help="readable or cwm.")] = "readable",
    max_frames: Annotated[int, typer.Option("--max-frames")] = 200,
    *,
    flags: Flags,
) -> int:
    """Print the execution trace of one test, in a readable form or as CWM reads it (the source, then the frames)."""
    from sandboxes.select import open_sandbox
    from tools.tracing import TraceOptions, render_cwm_prompt, render_readable, trace_test
    from tools.workspace import Workspace

    if fmt not in ("readable", "cwm"):
        raise FatalError(f"unknown --format {fmt!r}: choose readable or cwm")
    settings = load_settings(repo, flags)
    with tempfile.TemporaryDirectory(prefix="mendloop-trace-") as tmp:
        workspace = Workspace.create(repo, Path(tmp) / "ws")
        box = open_sandbox(settings.sandbox_spec(), workspace.root)
        try:
            options = TraceOptions(
                max_frames=max_frames, timeout=settings.command_timeout, step_into=settings.trace_step_into
            )
            found = trace_test(box, test_id, options=options)
        finally:
            box.close()
    if found is None:
        raise FatalError(f"nothing to trace for {test_id}: it does not fail in project code, or was not collected")
    sys.stdout.write(render_cwm_prompt(found) if fmt == "cwm" else render_readable(found))
    sys.stdout.write("\n")
    return 0


@options(settings_rows("base_url", "model", "sandbox", "image", "trust_repo_config"))
def doctor(repo: Annotated[Path | None, typer.Option("--repo")] = None, *, flags: Flags) -> int:
    """Check the endpoint, Docker, bubblewrap and the image; say what is missing and how to fix it."""
    from agent.doors.doctor import render_doctor, run_doctor

    text, code = render_doctor(run_doctor(load_settings(repo, flags)))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return code


def prune() -> int:
    """Remove containers and derived images that mendloop left behind."""
    from sandboxes.docker import prune as prune_leftovers

    removed = prune_leftovers()
    for item in removed:
        sys.stdout.write(f"removed {item}\n")
    sys.stdout.write(f"{len(removed)} removed\n")
    return 0
