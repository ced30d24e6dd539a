"""The production sandbox: one long-lived, locked-down container per sandbox, driven through the ``docker`` SDK.

Why this shape: starting a container per command costs half a second; one keep-alive container plus one ``exec``
per command costs a few tens of milliseconds. The workspace is copied in (never bind-mounted) and kept in sync by
shipping only what changed on the host before each command (:mod:`sandboxes.docker.sync`); what a command changes
inside - files, symlinks, directories, deletions - comes back to the host copy after it (``REPORT``), because the
host copy is what the patch is made from. The runaway limits hold inside too: an fsize ulimit per file, and the
growth of the workspace and /tmp measured and cut back after each command and watched while it runs. Setup is
baked into a cached derived image (:mod:`sandboxes.docker.image`). Timeouts kill the command's whole process tree
from inside while the container lives on (:mod:`sandboxes.docker.container`), and every container is removed on
close, at exit, on SIGINT/SIGTERM and, through a dead-man switch, even when this process is SIGKILLed
(:mod:`sandboxes.docker.cleanup`).
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import stat
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from sandboxes._limits import add_notes, human_size
from sandboxes.base import READ_LIMIT, ExecResult, SandboxError, SandboxSpec, closed_on_error
from sandboxes.docker import container as _docker_container
from sandboxes.docker import exec_wrap as _docker_exec
from sandboxes.docker import image as _docker_image
from sandboxes.docker import sync as _docker_sync

__all__ = ["DockerSandbox", "docker_available", "prune"]

WORKDIR = _docker_container.WORKDIR
DELETE_BATCH = 500  # paths per ``rm`` so one command line stays far below ARG_MAX
OOM_PROBE = "cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null"
PULL_LIMIT = 500  # files pulled back per command; more is a test writing fixtures, not an edit
# What a command did to the workspace is written by the container itself into REPORT (one ``get_archive`` brings
# it all back): ``changed`` files and symlinks and ``dirs`` newer than the command's stamp (backdated a second: file
# times move in kernel ticks), ``deleted`` paths (the listing before the command minus the one after: removals made
# inside must reach the host copy, which is what the patch is made from), and files removed for a limit (``big``:
# at the size limit, which the fsize ulimit stops a writer at; ``grown``: the newest largest files while the
# workspace and /tmp hold more than allowed since the sandbox opened, measured against OPENED_KB). ``complete`` is
# written last: a report without it (a command killed half way through its listing) is never trusted.
REPORT = "/tmp/.mendloop-report"
OPENED = "/tmp/.mendloop-opened"
OPENED_KB = "/tmp/.mendloop-opened-kb"
_PRUNE = "\\( -name .mendloop -o -name __pycache__ -o -name .pytest_cache -o -name .hypothesis -o -name .git \\) -prune"
_USED_KB = f"du -skc {WORKDIR} /tmp 2>/dev/null | tail -n 1 | cut -f1"

BEFORE = f"""rm -rf {REPORT}; mkdir -p {REPORT}
touch -d '1 second ago' {REPORT}/stamp 2>/dev/null || : >{REPORT}/stamp
find {WORKDIR} {_PRUNE} -o -print 2>/dev/null | sort >{REPORT}/before
"""
AFTER = f"""[ -f {REPORT}/stamp ] || exit 0
find {WORKDIR} /tmp -xdev -path {REPORT} -prune -o -type f -newer {REPORT}/stamp -size +%(big)dc -print 2>/dev/null \
 | head -n 1000 >{REPORT}/big
while IFS= read -r f; do rm -f -- "$f"; done <{REPORT}/big
over=$(( $({_USED_KB}) - $(cat {OPENED_KB} 2>/dev/null || echo 0) - %(growth_kb)d ))
if [ "$over" -gt 0 ]; then
  find {WORKDIR} /tmp -xdev -path {REPORT} -prune -o -type f -newer {OPENED} -exec du -k {{}} + 2>/dev/null \
   | sort -rn >{REPORT}/sizes
  while [ "$over" -gt 0 ] && IFS='\t' read -r k f; do
    rm -f -- "$f" && printf '%%s\\n' "$f" >>{REPORT}/grown; over=$((over - k))
  done <{REPORT}/sizes
fi
find {WORKDIR} {_PRUNE} -o -type d -newer {REPORT}/stamp -print 2>/dev/null | head -n {PULL_LIMIT} >{REPORT}/dirs
find {WORKDIR} {_PRUNE} -o \\( -type f -o -type l \\) -newer {REPORT}/stamp -print 2>/dev/null \
 | head -n {PULL_LIMIT} >{REPORT}/changed
find {WORKDIR} {_PRUNE} -o -print 2>/dev/null | sort >{REPORT}/after
comm -23 {REPORT}/before {REPORT}/after >{REPORT}/deleted
rm -f {REPORT}/before {REPORT}/after {REPORT}/sizes
: >{REPORT}/complete
"""
# The shell around every command. It raises the command's OOM score (the kernel then picks it, never init or
# the keep-alive; raising needs no capability), runs the command as a child, then kills whatever the command
# left behind (background jobs, daemons, a fork bomb) with builtins only, so no fork is needed, sparing init,
# the keep-alive and itself. Without the sweep, leftovers would hold the exec's pipes open (Docker then waits
# 2 s) and hold pids or memory the next command needs. Then it writes the report (AFTER). %%(removal)s deletes
# what was deleted on the host since the last command.
WRAPPER = (
    "echo 1000 >/proc/self/oom_score_adj 2>/dev/null\n%(removal)s"
    + BEFORE
    + f""""$@"
rc=$?
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
"""
    + AFTER
    + "exit $rc\n"
)


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
            # what the workspace and /tmp hold now: growth is counted from here
            self._exec_quiet(["/bin/sh", "-c", f"{_USED_KB} >{OPENED_KB}; touch {OPENED}"])

    # -- the Sandbox protocol -------------------------------------------------------------------------------

    def run(
        self, cmd: str | Sequence[str], *, timeout: float | None = None, env: Mapping[str, str] | None = None
    ) -> ExecResult:
        """Sync host edits in, run ``cmd`` in /workspace, and report how it ended (output capped, tree killed
        at the timeout, OOM kills detected from the container's memory cgroup, runaway limits enforced). What the
        command changed in the workspace (files, symlinks, directories, deletions) comes back to the host."""
        with self._lock:
            self._check_open()
            deletes = self._pending_deletes + self._sync()
            self._pending_deletes = []
            if len(deletes) > DELETE_BATCH:  # too many for the command's prelude: delete them first, in batches
                for start in range(0, len(deletes), DELETE_BATCH):
                    self._exec_quiet(["rm", "-rf", "--", *self._abs(deletes[start : start + DELETE_BATCH])])
                deletes = []
            outcome = self._exec(self._argv(cmd, deletes), env, timeout, watch=self._growth_watch())
            code = outcome.exit_code if outcome.exit_code is not None else -1
            oom = not outcome.timed_out and not outcome.stopped and code != 0 and self._saw_new_oom()
            report = self._report()
            if report is None:  # the command was killed before it could say what it changed: ask again
                self._exec_quiet(["/bin/sh", "-c", self._after_script()])
                report = self._report() or {}
        notes = [outcome.stopped] if outcome.stopped else []
        notes += self._apply_report(report)
        return ExecResult(
            exit_code=code,
            output=add_notes(outcome.cap.text(), notes),
            duration=outcome.duration,
            timed_out=outcome.timed_out,
            oom=oom,
            truncated=outcome.cap.truncated,
            limits=notes,
        )

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
        """The bytes of a file inside the container (relative paths are under /workspace); a file larger than
        ``READ_LIMIT`` is refused (SandboxError) rather than read into memory."""
        target = path if path.startswith("/") else f"{WORKDIR}/{path}"
        with self._lock:
            self._check_open()
            with self._archive(target, path) as (member, tar):
                if member.isdir():
                    raise IsADirectoryError(f"{path}: is a directory in the sandbox")
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is None:
                    raise FileNotFoundError(f"{path}: not a regular file in the sandbox")
                if member.size > READ_LIMIT:
                    raise SandboxError(f"{path} is too large to read back ({member.size} bytes)")
                return handle.read()

    def sync_out(self, paths: Iterable[str]) -> list[str]:
        """Copy files and symlinks written inside the container back to the host workspace; returns the paths
        copied (a file over the size limit is not copied)."""
        copied = []
        for rel in paths:
            if self._pull(rel):
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

    def _sync(self, in_sync: Iterable[str] = ()) -> list[str]:
        """Ship changed files now; return the paths to delete (done by the next command's prelude). ``in_sync``
        are paths the host just took over from the container: already the same on both sides, never shipped."""
        changes, manifest = self._mirror.diff()
        same = set(in_sync)
        if same:
            changes.send = [rel for rel in changes.send if rel not in same]
            changes.delete = [rel for rel in changes.delete if rel not in same]
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

    @contextlib.contextmanager
    def _archive(self, target: str, shown: str) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
        """The first member of ``docker cp``'s archive of ``target``, spooled to disk beyond a few MB: a file at
        the size limit never sits in memory whole."""
        import docker.errors

        try:
            stream, _stat = self._client.api.get_archive(self._box.id, target)
        except docker.errors.NotFound:
            raise FileNotFoundError(f"{shown}: no such file in the sandbox") from None
        with tempfile.SpooledTemporaryFile(max_size=_docker_sync.SPOOL_LIMIT) as spool:
            for chunk in stream:
                spool.write(chunk)
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r|") as tar:  # a stream: members are read in order, once
                member = tar.next()
                if member is None:
                    raise FileNotFoundError(f"{shown}: nothing to read in the sandbox")
                yield member, tar

    def _after_script(self) -> str:
        big = max(0, self.limits.max_file_bytes - 1)  # ``find -size +N`` is "more than N": at the limit or over
        return AFTER % {"big": big, "growth_kb": self.limits.max_growth_bytes // 1024}

    def _report(self) -> dict[str, list[str]] | None:
        """What the last command did (see ``REPORT``), by name; ``None`` when the report is missing or incomplete."""
        try:
            stream, _stat = self._client.api.get_archive(self._box.id, REPORT)
            data = b"".join(stream)  # small: listings capped at PULL_LIMIT lines, and the before/after listings
        except Exception:
            return None
        report: dict[str, list[str]] = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    text = handle.read().decode("utf-8", "surrogateescape")
                    report[member.name.rsplit("/", 1)[-1]] = [line for line in text.splitlines() if line]
        return report if "complete" in report else None

    def _apply_report(self, report: Mapping[str, list[str]]) -> list[str]:
        """Bring the command's changes to the host (deletions first, then directories, then files and symlinks);
        returns one note per runaway limit hit."""
        prefix = f"{WORKDIR}/"

        def rels(name: str) -> list[str]:
            return [line.removeprefix(prefix) for line in report.get(name, []) if line.startswith(prefix)]

        taken: set[str] = set()  # what the host took over: the same on both sides now
        for rel in sorted(rels("deleted"), key=lambda r: r.count("/"), reverse=True):
            if self._host_delete(rel):
                taken.add(rel)
        for rel in rels("dirs"):
            if self._host_dir(rel) is not None:
                taken.update(_with_parents(rel))
        refused: list[str] = []
        for rel in rels("changed"):
            if self._pull(rel, refused=refused):
                taken.update(_with_parents(rel))
        if taken:
            with self._lock:
                if not self._closed:
                    self._pending_deletes += self._sync(in_sync=taken)
        notes = []
        big = [line.removeprefix(prefix) for line in report.get("big", [])] + refused
        if big:
            notes.append(
                f"removed {_listed(big)}: one file may hold less than {human_size(self.limits.max_file_bytes)} "
                "(max_file_size); write less, or smaller files"
            )
        grown = [line.removeprefix(prefix) for line in report.get("grown", [])]
        if grown:
            notes.append(
                f"removed {_listed(grown)}: the files written in this run may add at most "
                f"{human_size(self.limits.max_growth_bytes)} to the workspace and /tmp (max_workspace_growth)"
            )
        return notes

    def _pull(self, rel: str, *, refused: list[str] | None = None) -> bool:
        """Copy one file or symlink from the container to the host workspace, replacing whatever the host has
        there (a symlink that became a directory inside, a file that became a symlink); False if not copied."""
        try:
            with self._lock:
                self._check_open()
                with self._archive(f"{WORKDIR}/{rel}", rel) as (member, tar):
                    if member.isfile() and member.size >= self.limits.max_file_bytes:
                        if refused is not None:
                            refused.append(rel)
                        return False
                    if not (member.isfile() or member.issym()):
                        return False
                    target = self._host_slot(rel)
                    if target is None:
                        return False
                    if member.issym():
                        os.symlink(member.linkname, target)
                        return True
                    handle = tar.extractfile(member)
                    assert handle is not None
                    with open(target, "wb") as out:
                        shutil.copyfileobj(handle, out, 1 << 20)
                    os.chmod(target, member.mode & 0o777)
                    return True
        except FileNotFoundError:  # gone again before we asked (a temporary file)
            return False

    # -- the host copy, never following a symlink -----------------------------------------------------------

    def _parts(self, rel: str) -> list[str] | None:
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        return None if not parts or ".." in parts else parts

    def _host_dir(self, rel: str) -> Path | None:
        """Make ``rel`` a real directory on the host (what is there in its place, a symlink or a file, goes)."""
        parts = self._parts(rel)
        if parts is None:
            return None
        path = self.root
        for part in parts:
            path = path / part
            try:
                st = path.lstat()
            except FileNotFoundError:
                path.mkdir()
                continue
            if not stat.S_ISDIR(st.st_mode):  # a symlink (to anywhere) or a file: the container has a directory
                path.unlink()
                path.mkdir()
        return path

    def _host_slot(self, rel: str) -> Path | None:
        """The host path for ``rel`` with its parents made real directories and nothing left at the path itself."""
        parts = self._parts(rel)
        if parts is None:
            return None
        parent = self._host_dir("/".join(parts[:-1])) if len(parts) > 1 else self.root
        if parent is None:
            return None
        target = parent / parts[-1]
        self._remove_host(target)
        return target

    def _host_delete(self, rel: str) -> bool:
        """Delete ``rel`` on the host, as it was deleted inside; a path under a host symlink is left alone."""
        parts = self._parts(rel)
        if parts is None:
            return False
        path = self.root
        for part in parts[:-1]:
            path = path / part
            try:
                if not stat.S_ISDIR(path.lstat().st_mode):
                    return False
            except FileNotFoundError:
                return False
        return self._remove_host(path / parts[-1])

    @staticmethod
    def _remove_host(path: Path) -> bool:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            path.unlink()
        return True

    def _argv(self, cmd: str | Sequence[str], deletes: Sequence[str]) -> list[str]:
        removal = ""
        if deletes:
            removal = "rm -rf -- " + " ".join(shlex.quote(p) for p in self._abs(deletes)) + "\n"
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        big = max(0, self.limits.max_file_bytes - 1)
        script = WRAPPER % {"removal": removal, "big": big, "growth_kb": self.limits.max_growth_bytes // 1024}
        return ["/bin/sh", "-c", script, "mendloop", *argv]

    def _exec(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        timeout: float | None,
        *,
        watch: Callable[[], str | None] | None = None,
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
                watch=watch,
            )
        except SandboxError:
            raise
        except Exception as exc:  # the container or the daemon went away: infrastructure, not a test failure
            raise SandboxError(f"the sandbox container {self._box.id[:12]} is gone: {exc}") from exc

    def _exec_quiet(self, argv: Sequence[str]) -> str:
        outcome = self._exec(argv, None, 60.0)
        return outcome.cap.text()

    def _growth_watch(self) -> Callable[[], str | None]:
        """A check polled while a command runs: the filesystem's used space (``df``, cheap) says when to measure
        the workspace and /tmp (``du``); past the growth limit the command is stopped. What a command writes before
        the first look is caught when it ends (the report's ``grown``)."""

        def used_kb(script: str) -> int | None:
            try:
                text = self._exec_quiet(["/bin/sh", "-c", script]).strip()
            except SandboxError:
                return None
            return int(text) if text.isdigit() else None

        df = f"df -Pk {WORKDIR} | awk 'NR==2 {{print $3}}'"
        start: int | None = None  # measured at the first look (a command over in seconds costs no extra exec)
        limit_kb = self.limits.max_growth_bytes // 1024

        def check() -> str | None:
            nonlocal start
            now = used_kb(df)
            if start is None:
                start = now
                return None
            if now is None or now - start <= limit_kb // 2:
                return None
            opened = used_kb(f"cat {OPENED_KB}")
            current = used_kb(_USED_KB)
            if opened is not None and current is not None and current - opened > limit_kb:
                return (
                    f"the command was stopped: the workspace and /tmp grew by {human_size((current - opened) * 1024)}"
                    f", over the limit of {human_size(self.limits.max_growth_bytes)} (max_workspace_growth)"
                )
            start = now  # the disk filled from elsewhere: measure again only after as much more
            return None

        return check

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


def _with_parents(rel: str) -> list[str]:
    """``a/b/c`` -> ``a``, ``a/b``, ``a/b/c``: the paths a pull may have made on the host."""
    parts = rel.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _listed(rels: Sequence[str], most: int = 5) -> str:
    more = len(rels) - most
    return ", ".join(rels[:most]) + (f" and {more} more file(s)" if more > 0 else "")
