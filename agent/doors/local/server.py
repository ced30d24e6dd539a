"""A small instruct code model on this machine's CPU, behind llama.cpp's OpenAI-compatible ``llama-server``.

Why: the README's commands must work on a fresh machine with no endpoint configured. ``LocalServer`` owns one
``llama-server`` process: it refuses a port in use and a bad model file before starting, waits for ``/health``,
reads the model id the server reports (llama-server ignores any other name), and turns every way the process can
die - at load time or mid-run - into a one-line ``FatalError`` that points at its log.

Defaults come from measurements on 2 cores (bench/RESULTS.md, "Repair rate"): Qwen2.5-Coder-1.5B-Instruct Q4_K_M repairs
more tasks per minute than the 0.5B (which is 3x faster but resolved none); ``n_ctx`` 4096 fits small repos.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from agent.config import SMALL_MODEL_PROFILE, Settings
from agent.doors.local.build import build_server, cached_server
from agent.doors.local.files import DEFAULT_MODEL, MODELS, check_gguf, ensure_model, get_spec
from tools.errors import FatalError

__all__ = [
    "DEFAULT_CTX",
    "LOCAL_SETTINGS",
    "LocalServer",
    "LocalServerError",
    "local_settings",
    "prepare",
    "start_local",
]

Progress = Callable[[str], None]
DEFAULT_CTX = 4096  # tokens per slot: what one request may hold
DEFAULT_PARALLEL = 4  # slots: K samples of one request (``n=K``) decode side by side after one prompt read
# What a small model on a CPU needs from the loop: the profile bench measured best (agent/config.py).
LOCAL_SETTINGS: dict[str, Any] = SMALL_MODEL_PROFILE


class LocalServerError(FatalError):
    """The local server could not start or died: one line naming the cause and the log to read."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise LocalServerError(f"port {port} on {host} is already in use: choose another with --port") from None


def _log_tail(path: Path, lines: int = 40) -> str:
    """The most telling line of a server log: the last one mentioning an error, else the last one."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
    except FileNotFoundError:
        return "no log"
    for line in reversed(text):
        if any(word in line.lower() for word in ("error", "failed", "invalid", "cannot", "unable")):
            return line.strip()
    return text[-1].strip() if text else "empty log"


class LocalServer:
    """One ``llama-server`` process; use as a context manager so the process never outlives the run."""

    def __init__(
        self,
        binary: Path,
        model_path: Path,
        *,
        port: int = 0,
        threads: int | None = None,
        ctx_size: int = DEFAULT_CTX,
        parallel: int = DEFAULT_PARALLEL,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
    ) -> None:
        self.binary = binary
        self.parallel = max(1, parallel)
        self.model_path = model_path
        self.host = host
        self.port = port
        self.threads = threads or os.cpu_count() or 2
        self.ctx_size = ctx_size
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"mendloop-llama-server-{os.getpid()}.log"
        self.model_id = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            *("--model", str(self.model_path), "--host", self.host, "--port", str(self.port)),
            # llama-server splits --ctx-size among the slots: each slot gets ctx_size tokens
            *("--threads", str(self.threads), "--ctx-size", str(self.ctx_size * self.parallel)),
            *("--parallel", str(self.parallel)),
            "--no-webui",
        ]

    def start(self, progress: Progress = lambda _m: None, *, timeout: float = 180.0) -> LocalServer:
        """Start the process and wait until it answers ``/health`` with 200 and reports its model id."""
        if not self.binary.is_file():
            raise LocalServerError(f"llama-server binary {self.binary} does not exist: run `mendloop serve-local`")
        check_gguf(self.model_path)
        if self.port == 0:
            self.port = _free_port(self.host)
        else:
            _check_port(self.host, self.port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        progress(f"starting llama-server on {self.host}:{self.port} with {self.model_path.name} (log {self.log_path})")
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        progress(f"local model ready at {self.base_url} (model {self.model_id})")
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        root = f"http://{self.host}:{self.port}"
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                self.check_alive("while loading the model")
                try:
                    if client.get(f"{root}/health").status_code == 200:
                        models = client.get(f"{root}/v1/models").json().get("data") or [{}]
                        self.model_id = str(models[0].get("id") or self.model_path.name)
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise LocalServerError(f"llama-server was not ready after {timeout:g} s; see {self.log_path}")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def check_alive(self, when: str = "mid-run") -> None:
        """Raise a one-line error if the process has exited (a crash, a kill, a model it could not load)."""
        if self._proc is None:
            raise LocalServerError("llama-server was never started")
        code = self._proc.poll()
        if code is not None:
            raise LocalServerError(
                f"llama-server exited {when} (exit code {code}): {_log_tail(self.log_path)} (log {self.log_path})"
            )

    def wait(self) -> int:
        """Block until the process ends (``serve-local`` in the foreground)."""
        assert self._proc is not None
        return self._proc.wait()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def resolve_model(model: str | Path | None, progress: Progress) -> Path:
    """A path given by the user is checked as it is; a known name (or none) is downloaded into the cache."""
    if model is None:
        return ensure_model(DEFAULT_MODEL, progress)
    if str(model) in MODELS:
        return ensure_model(str(model), progress)
    path = Path(model).expanduser()
    if path.suffix != ".gguf" and not path.exists():
        get_spec(str(model))  # raises: neither a known name nor a file
    return check_gguf(path)


def prepare(model: str | Path | None = None, progress: Progress = lambda _m: None) -> tuple[Path, Path]:
    """Build (or reuse) the server and fetch (or reuse) the model: what ``.ci/local-model.sh`` runs ahead."""
    binary = cached_server() or build_server(progress)
    return binary, resolve_model(model, progress)


def start_local(
    model: str | Path | None = None,
    *,
    port: int = 0,
    threads: int | None = None,
    ctx_size: int = DEFAULT_CTX,
    parallel: int = DEFAULT_PARALLEL,
    progress: Progress = lambda _m: None,
    log_path: Path | None = None,
) -> LocalServer:
    """Prepare and start a local server; the caller stops it (``with start_local(...) as server:``)."""
    binary, path = prepare(model, progress)
    server = LocalServer(
        binary, path, port=port, threads=threads, ctx_size=ctx_size, parallel=parallel, log_path=log_path
    )
    return server.start(progress)


def local_settings(settings: Settings, server: LocalServer) -> Settings:
    """The user's settings pointed at the local server, with the small-model defaults where nothing was said."""
    data = settings.model_dump()
    defaults = Settings().model_dump()
    for key, value in LOCAL_SETTINGS.items():
        if data.get(key) == defaults.get(key):
            data[key] = value
    data.update(base_url=server.base_url, model=server.model_id, api_key=None)
    return Settings(**data)


@contextlib.contextmanager
def watching(server: LocalServer | None) -> Iterator[None]:
    """Translate an endpoint failure into the real cause when the local server process has died mid-run."""
    try:
        yield
    except FatalError:
        if server is not None and not server.alive():
            server.check_alive("mid-run")
        raise


def main(argv: list[str] | None = None) -> int:
    """``python -m agent.doors.local.server [MODEL]``: build/fetch what the local model needs; print the two paths."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        binary, model = prepare(args[0] if args else None, lambda m: print(m, file=sys.stderr, flush=True))
    except FatalError as exc:
        print(f"mendloop: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    print(f"llama-server: {binary}\nmodel: {model}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
