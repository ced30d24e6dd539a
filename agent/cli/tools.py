"""``mendloop trace``, ``mendloop doctor`` and ``mendloop sandbox prune``: the commands around a repair.

``trace`` shows a failing test's execution trace as the model would see it, ``doctor`` says what is missing for a
repair to run, ``sandbox prune`` removes what Docker runs left behind. None of them calls the model.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path
from typing import Annotated, cast, get_args

import typer

from agent.cli.shared import Flags, options, settings_rows
from agent.config import load_settings
from tools.errors import FatalError
from tools.testing import Form, TestCase, script_target

__all__ = ["doctor", "prune", "trace"]


FORMS = ("auto", *get_args(Form))


@options(settings_rows("sandbox", "image", "trust_repo_config", "test_cmd", "trace_step_into"))
def trace(
    test: Annotated[
        str,
        typer.Argument(
            help="A pytest id (tests/test_x.py::test_y), a unittest id (tests.test_x.TestK.test_y) or a command "
            "that is one Python run ('python test_gcd.py', 'python -m checks')."
        ),
    ],
    repo: Annotated[Path, typer.Option("--repo", help="The repository (default: here).")] = Path("."),
    fmt: Annotated[str, typer.Option("--format", help="readable or cwm.")] = "readable",
    form: Annotated[str, typer.Option("--form", help="What TEST is: auto, pytest, unittest or command.")] = "auto",
    max_frames: Annotated[int, typer.Option("--max-frames")] = 200,
    *,
    flags: Flags,
) -> int:
    """Print the execution trace of one test, in a readable form or as CWM reads it (the source, then the frames).

    Every test form the loop traces can be traced here, through the loop's own :func:`~tools.tracing.trace_failure`:
    the repository's test command (``--test-cmd`` or its config) says which Python runs it and where unittest names
    modules from.
    """
    from sandboxes.select import open_sandbox
    from tools.tracing import TraceOptions, render_cwm_prompt, render_readable, trace_failure
    from tools.workspace import Workspace

    if fmt not in ("readable", "cwm"):
        raise FatalError(f"unknown --format {fmt!r}: choose readable or cwm")
    if form not in FORMS:
        raise FatalError(f"unknown --form {form!r}: choose {', '.join(FORMS)}")
    case = _case_of(test) if form == "auto" else TestCase(id=test, outcome="failed", kind=cast(Form, form))
    _check(case)
    settings = load_settings(repo, flags)
    with tempfile.TemporaryDirectory(prefix="mendloop-trace-") as tmp:
        workspace = Workspace.create(repo, Path(tmp) / "ws")
        box = open_sandbox(settings.sandbox_spec(), workspace.root)
        try:
            options = TraceOptions(
                max_frames=max_frames, timeout=settings.command_timeout, step_into=settings.trace_step_into
            )
            found = trace_failure(box, case, settings.test_cmd, options=options)
        finally:
            box.close()
    if found is None:
        raise FatalError(f"nothing to trace for {case.id} ({case.kind}): not found, or it reaches no project code")
    sys.stdout.write(render_cwm_prompt(found) if fmt == "cwm" else render_readable(found))
    sys.stdout.write("\n")
    return 0


def _check(case: TestCase) -> None:
    """Refuse, before any sandbox starts, what cannot be traced, saying what would be."""
    from tools.tracing import untraceable

    if why := untraceable(case):
        raise FatalError(f"{case.id!r} {why}")


def _case_of(test: str) -> TestCase:
    """What ``test`` names, told from its text: the id in a runner's command (``pytest ID``, ``python -m pytest ID``,
    ``python -m unittest ID``); else a pytest id (it has ``::``, perhaps a parameter with spaces); a command (more
    than one word, or a path); else a dotted unittest id."""
    try:
        words = shlex.split(test)
    except ValueError:
        words = test.split()
    target = script_target(test)
    runner = target[2] if target is not None and target[1] == "module" else words[0] if words else ""
    args = target[3] if target is not None and target[1] == "module" else words[1:]
    ids = [arg for arg in args if not arg.startswith("-")]
    if runner in ("pytest", "unittest") and len(ids) == 1:
        return TestCase(id=ids[0], outcome="failed", kind=cast(Form, runner))
    if ("::" in test and target is None and runner != "pytest") or (len(words) == 1 and test.endswith(".py")):
        kind: Form = "pytest"
    elif len(words) > 1 or "/" in test:
        kind = "command"
    else:
        kind = "unittest"
    return TestCase(id=test, outcome="failed", kind=kind)


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
