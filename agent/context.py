"""The run context: live resources that nodes use but that are not state.

Why apart from the state: a sandbox or an HTTP client cannot be checkpointed. The runner builds one ``RunContext``
per process (again on ``--resume``) and hands it to the graph as LangGraph's runtime context; nodes reach the three
seams (model, sandbox, workspace) only through it.

Why the seams are wrapped here: this is where the user's secrets (the API key, the values of ``pass_env``) meet
untrusted bytes. They are learnt when the context is built (:func:`tools.secrets.remember_settings`), and every
byte that crosses a seam passes the one scrubber: what the sandbox prints or hands back (:class:`ScrubbedSandbox`),
every request to and reply from the endpoint (:class:`ScrubbingTransport`), every trajectory record
(:class:`Trajectory`) and every checkpoint (:func:`scrub_checkpoints`). A secret a test printed, a file a sandboxed
command wrote, or a key an endpoint echoed therefore reaches no record and no prompt, whichever node carried it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx
from langgraph.checkpoint.base import BaseCheckpointSaver

from agent.budget import Usage
from agent.config import Settings
from agent.dialects import get_dialect
from agent.dialects.base import Dialect
from agent.model import ModelClient
from agent.records import append_line
from agent.streaming import Listener, StreamEvent
from agent.task import Task
from sandboxes.base import ExecResult, Sandbox
from sandboxes.select import open_sandbox
from tools.secrets import remember_settings, scrub, scrub_bytes, scrub_obj
from tools.workspace import Workspace

Progress = Callable[[str], None]


class Observer(Protocol):
    """Watches a run as it happens without changing it (the live terminal view): the run context once it exists,
    every piece of a model answer as it is written, and every node's state update as the node finishes."""

    def started(self, ctx: RunContext) -> None: ...

    def delta(self, event: StreamEvent) -> None: ...

    def update(self, node: str, values: Mapping[str, Any]) -> None: ...


class Trajectory:
    """Appends every model exchange to ``trajectory.jsonl``: one JSON object per line, whole or not at all, fsync'd
    (:func:`agent.records.append_line`: a full disk never tears the last record)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, record: dict[str, Any]) -> None:
        line = json.dumps(scrub_obj({"time": time.time(), **record}), ensure_ascii=False, default=str)
        with self._lock:
            append_line(self.path, line)


class ScrubbedSandbox:
    """A sandbox whose output and files read back pass through the scrubber: a test that prints its environment
    (where the ``pass_env`` values are) hands the loop ``***`` instead."""

    def __init__(self, inner: Sandbox) -> None:
        self.inner = inner
        self.name = inner.name
        self.root = inner.root

    def run(
        self, cmd: str | Sequence[str], *, timeout: float | None = None, env: Mapping[str, str] | None = None
    ) -> ExecResult:
        result = self.inner.run(cmd, timeout=timeout, env=env)
        return replace(result, output=scrub(result.output))

    def put(self, files: Mapping[str, bytes]) -> None:
        self.inner.put(files)

    def get(self, path: str) -> bytes:
        return scrub_bytes(self.inner.get(path))

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # backend extras (Docker's sync_out, ...)
        return getattr(self.inner, name)


class ScrubbingTransport(httpx.BaseTransport):
    """HTTP to the model endpoint with every request body and every reply body scrubbed (headers are left alone:
    the ``Authorization`` header is where the key belongs).

    A streamed reply (``text/event-stream``) is scrubbed line by line as it arrives rather than read whole first: an
    event is one ``data:`` line of JSON, so each is masked like a whole body, and the live view still sees the answer
    while it is written. A secret the model spells across two pieces is masked once the answer is whole (every
    record and prompt is scrubbed again, :class:`Trajectory`)."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        clean = _scrub_body(body)
        if clean != body:
            headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
            request = httpx.Request(
                request.method, request.url, headers=headers, content=clean, extensions=request.extensions
            )
        response = self.inner.handle_request(request)
        dropped = (b"content-length", b"content-encoding", b"transfer-encoding")
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in dropped]
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return httpx.Response(
                response.status_code,
                headers=headers,
                stream=_ScrubbedLines(response),
                extensions=response.extensions,
                request=request,
            )
        data = response.read()
        cleaned = _scrub_body(data)
        if cleaned == data:
            return response
        return httpx.Response(
            response.status_code, headers=headers, content=cleaned, extensions=response.extensions, request=request
        )

    def close(self) -> None:
        self.inner.close()


class _ScrubbedLines(httpx.SyncByteStream):
    """A streamed reply, decoded and passed on a whole line at a time, each line scrubbed (``data: {json}`` as
    JSON)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        for piece in self._response.iter_bytes():
            pending += piece
            end = pending.rfind(b"\n") + 1
            if end:
                lines, pending = pending[:end], pending[end:]
                yield b"".join(_scrub_line(line) for line in lines.splitlines(keepends=True))
        if pending:
            yield _scrub_line(pending)

    def close(self) -> None:
        self._response.close()


def _scrub_line(line: bytes) -> bytes:
    """One line of an event stream: the JSON after ``data:`` scrubbed value by value, any other line as bytes."""
    if not line.startswith(b"data:"):
        return scrub_bytes(line)
    payload = line[5:]
    text = payload.strip()
    clean = _scrub_body(text)  # an empty line or ``[DONE]`` is not JSON: scrubbed as bytes, unchanged
    if clean == text:
        return line
    return b"data: " + clean + payload[len(payload.rstrip()) :]


def _scrub_body(data: bytes) -> bytes:
    """A JSON body scrubbed value by value (a secret may be escaped in the raw bytes); any other body as bytes."""
    if not data:
        return data
    try:
        document = json.loads(data)
    except ValueError:
        return scrub_bytes(data)
    clean = scrub_obj(document)
    return data if clean == document else json.dumps(clean, ensure_ascii=False).encode("utf-8")


class _ScrubbingSerde:
    """A checkpoint serializer that scrubs every value before the inner one writes it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        result: tuple[str, bytes] = self.inner.dumps_typed(scrub_obj(obj))
        return result

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        return self.inner.loads_typed(data)


def scrub_checkpoints(saver: BaseCheckpointSaver[Any]) -> BaseCheckpointSaver[Any]:
    """``saver`` writing scrubbed checkpoints (``checkpoints.sqlite`` holds every message and test output)."""
    saver.serde = _ScrubbingSerde(saver.serde)
    return saver


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
    on_delta: Listener | None = None  # set: single model answers are streamed to it as they are written
    _model: ModelClient | None = None
    _sandbox: Sandbox | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        remember_settings(self.settings)

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
                    http_client=httpx.Client(
                        transport=ScrubbingTransport(), timeout=self.settings.request_timeout, follow_redirects=True
                    ),
                    started_at=self.started_at,
                    on_delta=self.on_delta,
                )
            return self._model

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox over the scratch workspace, opened on first use (setup runs then)."""
        with self._lock:
            if self._sandbox is None:
                self.progress(f"opening the {self.settings.sandbox} sandbox")
                self._sandbox = ScrubbedSandbox(open_sandbox(self.settings.sandbox_spec(), self.workspace.root))
            return self._sandbox

    def sandbox_for(self, root: Path) -> Sandbox:
        """A separate sandbox over another tree (the pristine copy used to re-check the final patch)."""
        return ScrubbedSandbox(open_sandbox(self.settings.sandbox_spec(), root))

    def close(self) -> None:
        with self._lock:
            if self._sandbox is not None:
                self._sandbox.close()
                self._sandbox = None
