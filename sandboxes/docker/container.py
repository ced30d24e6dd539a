"""Start and stop the one long-lived container behind a sandbox (or behind a derived-image build).

Why this keep-alive instead of ``sleep infinity``: PID 1 is Docker's init (``init=True``, reaps zombies) and
its child is a tiny shell that
- blocks in ``read`` on the container's stdin, which this process holds open through an attach socket. When
  this process dies in any way (even SIGKILL), the socket closes, ``read`` sees EOF, the shell exits, the
  container stops and ``auto_remove`` deletes it: a dead-man switch no signal handler can provide;
- on SIGUSR1 (sent by ``docker kill -s USR1``, forwarded by init) kills every other process in the container
  with its builtin ``kill -KILL -1`` until none is left. That takes the whole tree of a timed-out command,
  including children that escaped its process group with ``setsid``, and it needs no fork, so it works while a
  fork bomb holds every pid the limit allows. The shell itself and init survive, so the container stays
  usable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sandboxes.base import Limits, SandboxError
from sandboxes.docker import cleanup as _docker_cleanup

WORKDIR = "/workspace"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

KEEPALIVE_PID = "/tmp/.mendloop-keepalive"
KEEPALIVE = (
    f"echo $$ >{KEEPALIVE_PID}\n"
    "trap 'k=1; n=0; while [ $n -lt 100 ] && kill -KILL -1 2>/dev/null; do n=$((n+1)); done' USR1\n"
    'while :; do k=0; read -r _ && continue; [ "$k" = 1 ] || exit 0; done\n'
)


def base_env(image_env: list[str] | None, limits: Limits) -> dict[str, str]:
    """The whole environment of the container: a few fixed variables and what the limits pass in; nothing else
    from the host. PATH follows the image (python images put their interpreter in front)."""
    path = DEFAULT_PATH
    for item in image_env or ():
        if item.startswith("PATH="):
            path = item[len("PATH=") :]
    env = {"PATH": path, "HOME": "/root", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(limits.env)
    return env


def host_config_args(limits: Limits, *, hardened: bool) -> dict[str, Any]:
    """The HostConfig keyword arguments derived from the limits. ``hardened`` drops every capability; the
    setup-build container keeps Docker's default set so package managers can chown and switch users."""
    memory = f"{int(limits.memory_mb)}m"
    args: dict[str, Any] = {
        "init": True,
        "auto_remove": True,
        "network_mode": "bridge" if limits.network else "none",
        "mem_limit": memory,
        "memswap_limit": memory,
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": int(limits.pids),
        "security_opt": ["no-new-privileges"],
        # no file written in the container grows past the size limit: the writer gets SIGXFSZ / EFBIG there
        "ulimits": [{"Name": "fsize", "Soft": int(limits.max_file_bytes), "Hard": int(limits.max_file_bytes)}],
    }
    if hardened:
        args["cap_drop"] = ["ALL"]
    return args


@dataclass
class Running:
    """A started container and the attach socket that keeps it alive (closing it ends the container)."""

    api: Any
    id: str
    socket: Any = field(repr=False)
    closed: bool = False

    def kill_tree(self) -> None:
        """Kill every process but init and the keep-alive shell (see module docstring)."""
        with contextlib.suppress(Exception):  # the container is already gone: nothing left to kill
            self.api.kill(self.id, signal="SIGUSR1")

    def remove(self) -> None:
        if self.closed:
            return
        self.closed = True
        _docker_cleanup.forget(self.id)
        # already removed (auto_remove raced us) or the daemon is gone: nothing left to release
        with contextlib.suppress(Exception):
            self.api.remove_container(self.id, force=True)
        with contextlib.suppress(Exception):
            self.socket.close()


def launch(
    api: Any,
    image: str,
    *,
    limits: Limits,
    labels: Mapping[str, str],
    env: Mapping[str, str],
    hardened: bool = True,
) -> Running:
    """Create, attach and start a keep-alive container; registered for cleanup before it starts."""
    try:
        host_config = api.create_host_config(**host_config_args(limits, hardened=hardened))
        created = api.create_container(
            image,
            command=["/bin/sh", "-c", KEEPALIVE],
            stdin_open=True,  # docker-py also sets StdinOnce: the first attach closing means EOF
            environment=dict(env),
            working_dir=WORKDIR,
            labels=dict(labels),
            host_config=host_config,
        )
    except Exception as exc:
        raise SandboxError(f"cannot create a container from image {image!r}: {exc}") from exc
    cid = str(created["Id"])
    _docker_cleanup.remember(cid)
    try:
        sock = api.attach_socket(cid, params={"stdin": 1, "stream": 1})
        api.start(cid)
    except Exception as exc:
        _docker_cleanup.forget(cid)
        with contextlib.suppress(Exception):
            api.remove_container(cid, force=True)
        raise SandboxError(f"cannot start a container from image {image!r}: {exc}") from exc
    return Running(api, cid, sock)
