"""Fixtures shared by the whole suite.

Why a real server fixture: every test that talks to a model goes through real HTTP on 127.0.0.1, so the model
layer's retries, headers and errors are exercised exactly as in production.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_server import ScriptedServer
from tools import secrets


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A started ``ScriptedServer`` with an empty script (fill it with ``.add(node, ...)``), then stopped."""
    server = ScriptedServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_secrets_from_earlier_tests() -> Iterator[None]:
    """The scrubber's secrets are process-wide (a real run keeps them for its life); a test starts with none, so what
    an earlier test remembered cannot mask or hold back text in the next one."""
    secrets.forget_all()
    yield
    secrets.forget_all()
