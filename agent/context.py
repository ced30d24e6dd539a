"""The run context: live resources that nodes use but that are not state.

Why apart from the state: a sandbox or an HTTP client cannot be checkpointed. The runner builds one ``RunContext``
per process (again on ``--resume``) and hands it to the graph as LangGraph's runtime context; nodes reach the three
seams (model, sandbox, workspace) only through it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.budget import Usage
from agent.config import Settings
from agent.dialects import get_dialect
from agent.dialects.base import Dialect
from agent.model import ModelClient
from agent.records import append_line
from agent.task import Task
from sandboxes.base import Sandbox
from sandboxes.select import open_sandbox
from tools.workspace import Workspace

Progress = Callable[[str], None]


class Trajectory:
    """Appends every model exchange to ``trajectory.jsonl``: one JSON object per line, whole or not at all, fsync'd
    (:func:`agent.records.append_line`: a full disk never tears the last record)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, record: dict[str, Any]) -> None:
        line = json.dumps({"time": time.time(), **record}, ensure_ascii=False, default=str)
        with self._lock:
            append_line(self.path, line)


@dataclass
class RunContext:
    """Everything a node may touch besides its state."""

    settings: Settings
    task: Task
    run_dir: Path
    workspace: Workspace
    usage: Usage
    started_at: float
    progress: Progress = lambda _msg: None
    _model: ModelClient | None = None
    _sandbox: Sandbox | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dialect(self) -> Dialect:
        return get_dialect(self.settings.dialect, self.settings.model)

    @property
    def model(self) -> ModelClient:
        with self._lock:
            if self._model is None:
                self._model = ModelClient(
                    self.settings,
                    self.usage,
                    on_exchange=Trajectory(self.run_dir / "trajectory.jsonl"),
                    started_at=self.started_at,
                )
            return self._model

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox over the scratch workspace, opened on first use (setup runs then)."""
        with self._lock:
            if self._sandbox is None:
                self.progress(f"opening the {self.settings.sandbox} sandbox")
                self._sandbox = open_sandbox(self.settings.sandbox_spec(), self.workspace.root)
            return self._sandbox

    def sandbox_for(self, root: Path) -> Sandbox:
        """A separate sandbox over another tree (the pristine copy used to re-check the final patch)."""
        return open_sandbox(self.settings.sandbox_spec(), root)

    def close(self) -> None:
        with self._lock:
            if self._sandbox is not None:
                self._sandbox.close()
                self._sandbox = None
