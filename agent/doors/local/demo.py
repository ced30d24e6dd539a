"""``mendloop demo``: repair the bundled example project, with a local model when no endpoint is configured.

Why a local fallback: the README's run command must work on a fresh machine. With ``MENDLOOP_BASE_URL`` (or
``--base-url``) set, the demo uses that endpoint as it is; otherwise it builds/fetches llama.cpp's server and a small
code model on the first run (showing progress), starts it for the duration of the repair, and stops it after. The
repair itself is the product's ordinary one: ``agent.runner.solve`` on a scratch copy of the example.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.config import Settings, load_settings
from agent.doors.local.server import LocalServer, local_settings, start_local, watching
from agent.task import RunResult, Task
from tools.errors import FatalError

Progress = Callable[[str], None]
Runner = Callable[[Task, Settings, Path | None], RunResult]


def example_project() -> Path:
    """The example shipped next to the package (``examples/buggy_project`` in a checkout or an editable install)."""
    path = Path(__file__).resolve().parents[3] / "examples" / "buggy_project"  # agent/doors/local/demo.py
    if not (path / "ISSUE.md").is_file():
        raise FatalError(f"the example project is not at {path}: run the demo from a mendloop checkout")
    return path


def demo_task(repo: Path) -> Task:
    text = (repo / "ISSUE.md").read_text(encoding="utf-8")
    title = text.strip().splitlines()[0][:72]
    return Task(repo=repo, text=text, instance_id="demo-" + repo.name, title=title)


def _demo_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    """Without a sandbox named, prefer bubblewrap: Docker's default image cannot be pulled on an offline machine."""
    out = dict(flags)
    if out.get("sandbox") is None:
        from sandboxes.select import bwrap_works

        if bwrap_works():
            out["sandbox"] = "bwrap"
    return out


def run_demo(
    flags: Mapping[str, Any],
    run: Runner,
    *,
    out: Path | None = None,
    repo: Path | None = None,
    local_model: str | None = None,
    threads: int | None = None,
    progress: Progress = lambda _m: None,
) -> RunResult:
    """Repair the example with the configured endpoint, or with a local server started (and stopped) here."""
    target = repo or example_project()
    task = demo_task(target)
    settings = load_settings(target, _demo_flags(flags))
    if settings.base_url:
        progress(f"using the configured endpoint {settings.base_url}")
        return run(task, settings, out)
    progress("no model endpoint configured: starting a local model (`mendloop serve-local` runs one on its own)")
    server: LocalServer
    with start_local(local_model, threads=threads, progress=progress) as server, watching(server):
        return run(task, local_settings(settings, server), out)
