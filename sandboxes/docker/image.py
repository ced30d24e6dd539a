"""Which image a sandbox runs: the spec's image (or a Dockerfile build), plus setup baked into a derived image.

Why derived images: ``pip install -e .`` and friends take seconds to minutes and give the same result for the
same base image, setup commands and dependency files. Like SWE-bench's harness, the result is committed once as
``mendloop-derived:<sha256>`` and every later sandbox with the same inputs starts from it and runs no setup.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandboxes.base import ImageUnavailable, Limits, SandboxError, SandboxSpec
from sandboxes.docker import container as _docker_container
from sandboxes.docker import exec_wrap as _docker_exec
from sandboxes.docker import sync as _docker_sync

DERIVED_REPO = "mendloop-derived"
DOCKERFILE_REPO = "mendloop-dockerfile"
DEP_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
BAKED_LIST = "var/lib/mendloop/baked.txt"  # inside a derived image: the workspace paths copied in at build time
SETUP_TIMEOUT_FLOOR = 600.0  # setup installs packages; a per-test timeout is too short for it


def _missing(image: str, reason: str) -> ImageUnavailable:
    first = (reason.splitlines() or [""])[0][:160]
    return ImageUnavailable(
        f"docker image {image!r} is not available and could not be pulled ({first}); "
        f"build it (for the offline base: bash .ci/base-image.sh {image}), `docker pull {image}` where a "
        f"registry is reachable, or choose another image in the sandbox settings",
        image,
        first,
    )


def ensure_image(client: Any, image: str) -> Any:
    """The image object for ``image``; pulled if absent. A failed pull is a one-line SandboxError."""
    import docker.errors

    try:
        return client.images.get(image)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise SandboxError(f"docker cannot inspect image {image!r}: {exc}") from exc
    repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
    try:
        return client.images.pull(repo, tag=tag or "latest")
    except Exception as exc:
        raise _missing(image, str(exc)) from exc


def dockerfile_for(root: Path, spec: SandboxSpec) -> Path | None:
    """The Dockerfile to build: ``spec.dockerfile`` (relative to the workspace) or .mendloop/Dockerfile."""
    if spec.dockerfile:
        path = Path(spec.dockerfile)
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise SandboxError(f"sandbox Dockerfile {spec.dockerfile!r} not found in {root}")
        return path
    default = root / ".mendloop" / "Dockerfile"
    return default if default.is_file() else None


def build_dockerfile(client: Any, root: Path, dockerfile: Path, limits: Limits) -> Any:
    """Build ``dockerfile`` with the workspace as context; Docker's layer cache makes a rebuild cheap."""
    import docker.errors

    key = hashlib.sha256(dockerfile.read_bytes()).hexdigest()
    tag = f"{DOCKERFILE_REPO}:{key[:32]}"
    try:
        image, _logs = client.images.build(
            path=str(root),
            dockerfile=str(dockerfile),
            tag=tag,
            labels={"mendloop": "1", "mendloop.kind": "dockerfile"},
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="default" if limits.network else "none",
        )
    except docker.errors.BuildError as exc:
        raise SandboxError(f"building {dockerfile} failed: {exc.msg}") from exc
    except docker.errors.APIError as exc:
        raise SandboxError(f"building {dockerfile} failed: {exc}") from exc
    return image


def derived_key(base_id: str, setup: Sequence[str], root: Path) -> str:
    """sha256 over the base image id, the setup commands and the dependency files' contents."""
    deps: dict[str, str] = {}
    names = [*DEP_FILES, *sorted(p.name for p in root.glob("requirements*.txt"))]
    for name in names:
        path = root / name
        if path.is_file():
            deps[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    payload = json.dumps({"base": base_id, "setup": list(setup), "deps": deps}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _baked_archive(paths: Sequence[str]) -> bytes:
    buf = io.BytesIO()
    data = "\n".join(paths).encode()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for parent in ("var", "var/lib", "var/lib/mendloop"):
            info = tarfile.TarInfo(parent)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo(BAKED_LIST)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def baked_paths(api: Any, container_id: str) -> set[str]:
    """The workspace paths a derived image was built with (empty for a plain image)."""
    try:
        stream, _stat = api.get_archive(container_id, "/" + BAKED_LIST)
    except Exception:  # not a derived image
        return set()
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile(BAKED_LIST.rsplit("/", 1)[-1])
        text = member.read().decode() if member else ""
    return {line for line in text.splitlines() if line}


def _run_setup(box: _docker_container.Running, setup: Sequence[str], env: dict[str, str], limits: Limits) -> None:
    for command in setup:
        outcome = _docker_exec.stream_exec(
            box.api,
            box.id,
            ["/bin/sh", "-c", command],
            env=env,
            workdir=_docker_container.WORKDIR,
            timeout=max(limits.timeout, SETUP_TIMEOUT_FLOOR),
            limit=4000,
            on_timeout=box.kill_tree,
        )
        if outcome.timed_out or outcome.exit_code != 0:
            how = "timed out" if outcome.timed_out else f"exit code {outcome.exit_code}"
            tail = outcome.cap.text().strip().splitlines()[-1:] or [""]
            raise SandboxError(f"sandbox setup command {command!r} failed ({how}): {tail[0][:200]}")


def derived_image(client: Any, base: Any, root: Path, spec: SandboxSpec) -> str:
    """The id of ``mendloop-derived:<key>``, building it first (once, under a file lock) if it is missing."""
    import docker.errors

    key = derived_key(str(base.id), spec.setup, root)
    tag = f"{DERIVED_REPO}:{key}"
    lock_path = Path(tempfile.gettempdir()) / f"mendloop-derived-{key[:16]}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sandboxes with the same inputs build it once
        try:
            return str(client.images.get(tag).id)
        except docker.errors.ImageNotFound:
            pass
        env = _docker_container.base_env(base.attrs.get("Config", {}).get("Env"), spec.limits)
        labels = {"mendloop": "1", "mendloop.kind": "derived", "mendloop.hash": key}
        # env goes to each setup exec, not to the container: a commit keeps the container's env in the image
        box = _docker_container.launch(
            client.api, str(base.id), limits=spec.limits, labels=labels, env={}, hardened=False
        )
        try:
            mirror = _docker_sync.Mirror(root)
            changes, manifest = mirror.diff()
            box.api.put_archive(box.id, _docker_container.WORKDIR, mirror.archive(changes.send))
            box.api.put_archive(box.id, "/", _baked_archive(sorted(manifest)))
            _run_setup(box, spec.setup, env, spec.limits)
            box.api.commit(box.id, repository=DERIVED_REPO, tag=key, message="mendloop setup: " + "; ".join(spec.setup))
            return str(client.images.get(tag).id)
        except docker.errors.APIError as exc:
            raise SandboxError(f"building the derived sandbox image failed: {exc}") from exc
        finally:
            box.remove()


def resolve(client: Any, root: Path, spec: SandboxSpec) -> str:
    """The image id a sandbox for ``root`` starts from: base or Dockerfile image; derived with setup."""
    dockerfile = dockerfile_for(root, spec)
    base = build_dockerfile(client, root, dockerfile, spec.limits) if dockerfile else ensure_image(client, spec.image)
    if not spec.setup:
        return str(base.id)
    return derived_image(client, base, root, spec)
