"""The production sandbox: one long-lived, locked-down container per sandbox, driven through the ``docker`` SDK.

Why this shape: starting a container per command costs half a second; one keep-alive container plus one ``exec``
per command costs a few tens of milliseconds. The workspace is copied in (never bind-mounted) and kept in sync by
shipping only what changed on the host before each command (:mod:`sandboxes.docker.sync`). Setup is baked into a
cached derived image (:mod:`sandboxes.docker.image`). Timeouts kill the command's whole process tree from inside
while the container lives on (:mod:`sandboxes.docker.container`), and every container is removed on close, at
exit, on SIGINT/SIGTERM and, through a dead-man switch, even when this process is SIGKILLed
(:mod:`sandboxes.docker.cleanup`).
"""

from __future__ import annotations

import io
import shlex
import tarfile
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from sandboxes.base import ExecResult, SandboxError, SandboxSpec, closed_on_error
from sandboxes.docker import container as _docker_container
from sandboxes.docker import exec_wrap as _docker_exec
from sandboxes.docker import image as _docker_image
from sandboxes.docker import sync as _docker_sync

__all__ = ["DockerSandbox", "docker_available", "prune"]

WORKDIR = _docker_container.WORKDIR
DELETE_BATCH = 500  # paths per ``rm`` so one command line stays far below ARG_MAX
OOM_PROBE = "cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null"
# The shell around every command. It raises the command's OOM score (the kernel then picks it, never init or
# the keep-alive; raising needs no capability), runs the command as a child, then kills whatever the command
# left behind (background jobs, daemons, a fork bomb) with builtins only, so no fork is needed, sparing init,
# the keep-alive and itself. Without the sweep, leftovers would hold the exec's pipes open (Docker then waits
# 2 s) and hold pids or memory the next command needs.
# Files a command writes in the workspace come back to the host (the host copy is what the patch is made from):
# the wrapper stamps the start, then lists the regular files newer than the stamp, leaving caches out. The stamp is
# backdated a second because file times move in kernel ticks: a file written in the stamp's own tick is not "newer".
STAMP = "/tmp/.mendloop-stamp"
CHANGED = "/tmp/.mendloop-changed"
PULL_LIMIT = 500  # files pulled back per command; more is a test writing fixtures, not an edit
_FIND_CHANGED = (
    f"find {WORKDIR} \\( -name .mendloop -o -name __pycache__ -o -name .pytest_cache -o -name .hypothesis "
    f"-o -name .git \\) -prune -o -type f -newer {STAMP} -print 2>/dev/null | head -n {PULL_LIMIT} >{CHANGED}"
)

WRAPPER = f"""echo 1000 >/proc/self/oom_score_adj 2>/dev/null
%stouch -d '1 second ago' {STAMP} 2>/dev/null || : >{STAMP}; : >{CHANGED}
"$@"
rc=$?
{_FIND_CHANGED}
if read -r keep <{_docker_container.KEEPALIVE_PID} 2>/dev/null; then
  n=0
  while [ $n -lt 50 ]; do
    found=
    for p in /proc/[0-9]*; do
      p=${{p#/proc/}}
      case $p in 1|$$|$keep) continue;; esac
      kill -9 "$p" 2>/dev/null && found=1
    done
    [ -z "$found" ] && break
    n=$((n+1))
  done
fi
exit $rc
"""


def _client(timeout: int = 60) -> Any:
    """A docker client, or a one-line SandboxError saying the daemon cannot be reached."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        raise SandboxError(
            f"the Docker daemon is not reachable ({str(exc).splitlines()[0][:120]}); "
            "start it, set DOCKER_HOST, or choose another sandbox (--sandbox bwrap)"
        ) from exc
    return client


def docker_available() -> bool:
    """True when a Docker daemon answers a ping within about two seconds."""
    try:
        import docker

        client = docker.from_env(timeout=2)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def _label_filters(labels: Mapping[str, str] | None) -> dict[str, list[str]]:
    return {"label": ["mendloop", *(f"{key}={value}" for key, value in (labels or {}).items())]}


def prune(*, labels: Mapping[str, str] | None = None) -> list[str]:
    """Remove every container and derived image labelled ``mendloop`` (narrowed by ``labels`` if given).

    Returns one line per removed object, e.g. ``container 3f2a1b0c (brave_turing)``. Images still used by a
    container that could not be removed are left in place. The base image is never labelled, so never removed.
    """
    import docker.errors

    client = _client()
    filters = _label_filters(labels)
    removed: list[str] = []
    try:
        for container in client.containers.list(all=True, filters=filters):
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                continue  # auto_remove got there first
            removed.append(f"container {container.short_id.split(':')[-1]} ({container.name})")
        for image in client.images.list(filters=filters):
            for ref in image.tags or [image.id]:
                try:
                    client.images.remove(ref)
                except (docker.errors.NotFound, docker.errors.APIError):
                    continue  # in use, or already gone with its last tag
                removed.append(f"image {ref}")
    finally:
        client.close()
    return removed


class DockerSandbox:
    """A ``Sandbox`` backed by one container; ``labels`` are added to it (tests find their own by them)."""

    name = "docker"

    def __init__(self, root: Path, spec: SandboxSpec | None = None, *, labels: Mapping[str, str] | None = None):
        self.root = Path(root).resolve()
        self.spec = spec if spec is not None else SandboxSpec(kind="docker")
        self.limits = self.spec.limits
        self.run_id = uuid.uuid4().hex
        self.labels = {"mendloop": "1", "mendloop.run": self.run_id, **(labels or {})}
        self._lock = threading.Lock()
        self._closed = False
        self._oom_kills = 0  # cgroup OOM kills seen so far; a fresh container starts at zero
        self._client = _client()
        with closed_on_error(self):
            image_id = _docker_image.resolve(self._client, self.root, self.spec)
            image_env = self._client.images.get(image_id).attrs.get("Config", {}).get("Env")
            self._env = _docker_container.base_env(image_env, self.limits)
            self._box = _docker_container.launch(
                self._client.api, image_id, limits=self.limits, labels=self.labels, env=self._env
            )
            self.container_id = self._box.id
            self._mirror = _docker_sync.Mirror(self.root)
            if self.spec.setup:
                self._mirror.extra_deletes = _docker_image.baked_paths(self._client.api, self._box.id)
            self._pending_deletes: list[str] = self._sync()

    # -- the Sandbox protocol -------------------------------------------------------------------------------

    def run(
        self, cmd: str | Sequence[str], *, timeout: float | None = None, env: Mapping[str, str] | None = None
    ) -> ExecResult:
        """Sync host edits in, run ``cmd`` in /workspace, and report how it ended (output capped, tree killed
        at the timeout, OOM kills detected from the container's memory cgroup)."""
        with self._lock:
            self._check_open()
            deletes = self._pending_deletes + self._sync()
            self._pending_deletes = []
            if len(deletes) > DELETE_BATCH:  # too many for the command's prelude: delete them first, in batches
                for start in range(0, len(deletes), DELETE_BATCH):
                    self._exec_quiet(["rm", "-rf", "--", *self._abs(deletes[start : start + DELETE_BATCH])])
                deletes = []
            outcome = self._exec(self._argv(cmd, deletes), env, timeout)
            code = outcome.exit_code if outcome.exit_code is not None else -1
            oom = not outcome.timed_out and code != 0 and self._saw_new_oom()
            result = ExecResult(
                exit_code=code,
                output=outcome.cap.text(),
                duration=outcome.duration,
                timed_out=outcome.timed_out,
                oom=oom,
                truncated=outcome.cap.truncated,
            )
        changed = self._changed_inside()
        if changed:
            self.sync_out(changed)
        return result

    def put(self, files: Mapping[str, bytes]) -> None:
        """Write files into the host workspace and ship them into the container at once."""
        for rel, data in files.items():
            path = self._host_path(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        with self._lock:
            self._check_open()
            self._pending_deletes += self._sync()

    def get(self, path: str) -> bytes:
        """The bytes of a file inside the container (relative paths are under /workspace)."""
        import docker.errors

        target = path if path.startswith("/") else f"{WORKDIR}/{path}"
        with self._lock:
            self._check_open()
            try:
                stream, stat = self._client.api.get_archive(self._box.id, target)
                data = b"".join(stream)
            except docker.errors.NotFound:
                raise FileNotFoundError(f"{path}: no such file in the sandbox") from None
        if int(stat.get("mode", 0)) & (1 << 31):  # Go's os.ModeDir bit
            raise IsADirectoryError(f"{path}: is a directory in the sandbox")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            handle = tar.extractfile(member) if member is not None else None
            if handle is None:
                raise FileNotFoundError(f"{path}: not a regular file in the sandbox")
            return handle.read()

    def sync_out(self, paths: Iterable[str]) -> list[str]:
        """Copy files written inside the container back to the host workspace; returns the paths copied."""
        copied = []
        for rel in paths:
            data = self.get(rel)
            self._host_path(rel).parent.mkdir(parents=True, exist_ok=True)
            self._host_path(rel).write_bytes(data)
            copied.append(rel)
        with self._lock:
            if not self._closed:
                self._pending_deletes += self._sync()  # records the new host state; ships identical bytes
        return copied

    def close(self) -> None:
        """Remove the container (force) and release the client. Idempotent."""
        if self._closed:
            return
        self._closed = True
        box = getattr(self, "_box", None)
        if box is not None:
            box.remove()
        self._client.close()

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError("the docker sandbox is closed")

    def _host_path(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"{rel!r} is outside the workspace")
        return path

    @staticmethod
    def _abs(rels: Sequence[str]) -> list[str]:
        return [f"{WORKDIR}/{rel}" for rel in rels]

    def _sync(self) -> list[str]:
        """Ship changed files now; return the paths to delete (done by the next command's prelude)."""
        changes, manifest = self._mirror.diff()
        if changes.send:
            early = [rel for rel in changes.send if rel in changes.delete]  # kind changed: clear before upload
            if early:
                self._exec_quiet(["rm", "-rf", "--", *self._abs(early)])
            try:
                self._client.api.put_archive(self._box.id, WORKDIR, self._mirror.archive(changes.send))
            except Exception as exc:
                raise SandboxError(f"copying the workspace into the sandbox failed: {exc}") from exc
            changes.delete = [rel for rel in changes.delete if rel not in early]
        self._mirror.commit(manifest)
        return changes.delete

    def _changed_inside(self) -> list[str]:
        """Workspace files the last command wrote (listed by the wrapper), relative to the workspace."""
        try:
            listing = self.get(CHANGED).decode("utf-8", "surrogateescape")
        except (FileNotFoundError, IsADirectoryError):
            return []
        prefix = f"{WORKDIR}/"
        return [line.removeprefix(prefix) for line in listing.splitlines() if line.startswith(prefix)]

    def _argv(self, cmd: str | Sequence[str], deletes: Sequence[str]) -> list[str]:
        removal = ""
        if deletes:
            removal = "rm -rf -- " + " ".join(shlex.quote(p) for p in self._abs(deletes)) + "\n"
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return ["/bin/sh", "-c", WRAPPER % removal, "mendloop", *argv]

    def _exec(
        self, argv: Sequence[str], env: Mapping[str, str] | None, timeout: float | None
    ) -> _docker_exec.ExecOutcome:
        try:
            return _docker_exec.stream_exec(
                self._client.api,
                self._box.id,
                argv,
                env={**self._env, **(env or {})},
                workdir=WORKDIR,
                timeout=self.limits.timeout if timeout is None else timeout,
                limit=self.limits.output_bytes,
                on_timeout=self._box.kill_tree,
            )
        except SandboxError:
            raise
        except Exception as exc:  # the container or the daemon went away: infrastructure, not a test failure
            raise SandboxError(f"the sandbox container {self._box.id[:12]} is gone: {exc}") from exc

    def _exec_quiet(self, argv: Sequence[str]) -> str:
        outcome = self._exec(argv, None, 60.0)
        return outcome.cap.text()

    def _saw_new_oom(self) -> bool:
        """Whether the container's memory cgroup counted an OOM kill since the last look."""
        kills = 0
        for line in self._exec_quiet(["/bin/sh", "-c", OOM_PROBE]).splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                kills = max(kills, int(value))
        new = kills > self._oom_kills
        self._oom_kills = max(kills, self._oom_kills)
        return new
