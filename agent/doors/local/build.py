"""Build llama.cpp's ``llama-server`` once, from the source vendored in the ``llama-cpp-python`` sdist, and cache it.

Why build it ourselves: no llama.cpp wheel exists on PyPI, but the ``llama-cpp-python`` sdist carries the whole of
llama.cpp, and its own ``llama-server`` is one static 15 MB binary (8 minutes on 2 cores) - quicker to build and to
start than ``llama-cpp-python[server]``. Why ``GGML_NATIVE=OFF``: a ``-march=native`` build on a VM that lists AMX
but traps it dies with SIGILL at the first request, without a log line. The cache key holds the version and a hash of
the flags, so a change of either builds afresh and a finished build is never rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tools.errors import FatalError

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
CMAKE_FLAGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
SERVER_NAME = "llama-server"

Progress = Callable[[str], None]


class BuildError(FatalError):
    """The server could not be downloaded or built: the message names the step and the log to read."""


def cache_root() -> Path:
    """``$MENDLOOP_CACHE_DIR`` or ``~/.cache/mendloop``: builds and models live here across runs."""
    return Path(os.environ.get("MENDLOOP_CACHE_DIR") or Path.home() / ".cache" / "mendloop")


def flags_hash(flags: Sequence[str] = CMAKE_FLAGS) -> str:
    return hashlib.sha256("\n".join(flags).encode()).hexdigest()[:12]


def server_dir() -> Path:
    return cache_root() / "llama-server" / f"{LLAMA_CPP_PYTHON_VERSION}-{flags_hash()}"


def cached_server() -> Path | None:
    """The cached binary if a finished build is there (the binary is moved in only after a good build)."""
    path = server_dir() / SERVER_NAME
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _run(cmd: Sequence[str], *, cwd: Path, log: Path, step: str, on_line: Callable[[str], None] | None = None) -> None:
    """The one subprocess chokepoint: output goes to ``log``; a failure is a one-line ``BuildError``."""
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"$ {' '.join(cmd)}\n")
        sink.flush()
        try:
            proc = subprocess.Popen(
                list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
            )
        except FileNotFoundError:
            raise BuildError(f"{step}: {cmd[0]} is not installed (install cmake and a C++ compiler)") from None
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            if on_line is not None:
                on_line(line)
        code = proc.wait()
    if code != 0:
        raise BuildError(f"{step} failed (exit {code}); see {log}")


def _download_sdist(work: Path, log: Path) -> Path:
    # pip honours the machine's index configuration; only this package is forced to source.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python"]
    _run([*cmd, "-d", str(work), f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"], cwd=work, log=log, step="download")
    found = sorted(work.glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise BuildError(f"download: pip gave no llama-cpp-python sdist; see {log}")
    return found[0]


def _extract(sdist: Path, work: Path) -> Path:
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data")
    source = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"), None)
    if source is None or not (source / "CMakeLists.txt").is_file():
        raise BuildError(f"{sdist.name} holds no vendor/llama.cpp source")
    return source


def _ninja_progress(progress: Progress) -> Callable[[str], None]:
    """Turn ninja's ``[n/total]`` lines into a progress message every tenth of the build."""
    shown = {"decile": -1}
    started = time.monotonic()

    def on_line(line: str) -> None:
        match = re.match(r"\[(\d+)/(\d+)\]", line)
        if not match:
            return
        done, total = int(match.group(1)), int(match.group(2))
        decile = done * 10 // max(total, 1)
        if decile > shown["decile"]:
            shown["decile"] = decile
            progress(f"building llama-server: {done}/{total} steps ({time.monotonic() - started:.0f} s)")

    return on_line


def build_server(progress: Progress = lambda _m: None, *, jobs: int | None = None) -> Path:
    """Return the cached ``llama-server``, building it first if needed (about 8 minutes on 2 cores)."""
    found = cached_server()
    if found is not None:
        return found
    if shutil.which("cmake") is None:
        raise BuildError("building llama-server needs cmake and a C++ compiler: apt-get install cmake g++")
    target = server_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    log = target.parent / f"build-{LLAMA_CPP_PYTHON_VERSION}-{flags_hash()}.log"
    log.write_text("", encoding="utf-8")
    progress(f"first run: building llama-server {LLAMA_CPP_PYTHON_VERSION} from source (about 8-15 min); log {log}")
    with tempfile.TemporaryDirectory(prefix="mendloop-llama-build-", dir=target.parent) as tmp:
        work = Path(tmp)
        source = _extract(_download_sdist(work, log), work)
        build = work / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run(["cmake", "-S", str(source), "-B", str(build), *generator, *CMAKE_FLAGS], cwd=work, log=log, step="cmake")
        n = str(jobs or os.cpu_count() or 2)
        _run(
            ["cmake", "--build", str(build), "--target", SERVER_NAME, "-j", n],
            cwd=work,
            log=log,
            step="build",
            on_line=_ninja_progress(progress),
        )
        binary = build / "bin" / SERVER_NAME
        if not binary.is_file():
            raise BuildError(f"build: no {SERVER_NAME} binary was produced; see {log}")
        staged = work / "staged"
        staged.mkdir()
        shutil.copy2(binary, staged / SERVER_NAME)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)  # atomic on one filesystem: a half-built cache entry never exists
    progress(f"llama-server cached at {target}")
    return target / SERVER_NAME
