"""Fixtures for sandbox tests: a scratch workspace and a factory that opens real backends and always closes them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxes.base import Limits, Sandbox, SandboxSpec, sandbox_class

TEST_IMAGE = os.environ.get("MENDLOOP_TEST_IMAGE", "mendloop-base:bookworm")

# The security suite runs against every isolating backend; docker params need the daemon and the image (CI).
ISOLATING = [
    pytest.param("bwrap", marks=pytest.mark.bwrap, id="bwrap"),
    pytest.param("docker", marks=pytest.mark.docker, id="docker"),
]

OpenSandbox = Callable[..., Sandbox]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "hello.txt").write_text("hello from the workspace\n")
    return ws


@pytest.fixture
def open_sandbox(workspace: Path) -> Iterator[OpenSandbox]:
    """``open_sandbox(kind, setup=(...), **limits)`` -> a real sandbox on ``workspace``, closed after the test."""
    opened: list[Sandbox] = []

    def factory(kind: str, *, setup: tuple[str, ...] = (), **limits: Any) -> Sandbox:
        spec = SandboxSpec(kind=kind, image=TEST_IMAGE, setup=setup, limits=Limits(**limits))
        box: Sandbox = sandbox_class(kind)(workspace, spec)
        opened.append(box)
        return box

    yield factory
    for box in opened:
        box.close()
