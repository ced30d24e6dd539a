"""How much does isolation cost? Median latency of a trivial command and of a 20-test pytest file per backend.

Run: ``python bench/sandbox_overhead.py [--runs 15] [--image mendloop-base:bookworm]``. Everything comes from
one run of this script and is printed as a ratio to the local backend, so machine noise mostly cancels out.
Measured: local, bwrap, docker with a warm container (the normal case: one container per sandbox, one exec per
command), docker cold start (open + first command + close), and docker open with setup baked fresh versus
reusing the cached derived image. Goals: warm docker within 3x local, bwrap within 1.5x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandboxes.base import Limits, SandboxSpec, sandbox_class

PASS = ["python", "-c", "pass"]
PYTEST = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_twenty.py"]
# Without this, host pytest imports every installed plugin (seconds here): a host cost, not isolation.
PYTEST_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
TWENTY = "\n".join(f"def test_{i}():\n    assert {i} + 1 == {i + 1}\n" for i in range(20))
SETUP = "python -m venv --without-pip /opt/venv && python -m compileall -q /usr/lib/python3/dist-packages"


def median_of(runs: int, action: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def checked(box: Any, argv: Sequence[str], env: dict[str, str] | None = None) -> Callable[[], None]:
    def action() -> None:
        result = box.run(list(argv), timeout=120, env=env)
        if not result.ok:
            command = " ".join(argv)
            raise RuntimeError(f"{box.name}: {command} failed: {result.describe()}\n{result.output[-800:]}")

    return action


def warm_latencies(kind: str, root: Path, spec: SandboxSpec, runs: int) -> tuple[float, float]:
    box = sandbox_class(kind)(root, spec)
    try:
        checked(box, PASS)()  # first command: caches, page-ins
        checked(box, PYTEST, PYTEST_ENV)()
        return median_of(runs, checked(box, PASS)), median_of(max(3, runs // 3), checked(box, PYTEST, PYTEST_ENV))
    finally:
        box.close()


def docker_cold(root: Path, spec: SandboxSpec, runs: int) -> float:
    cls = sandbox_class("docker")

    def once() -> None:
        box = cls(root, spec)
        try:
            checked(box, PASS)()
        finally:
            box.close()

    return median_of(max(3, runs // 3), once)


def docker_setup(root: Path, spec: SandboxSpec, runs: int) -> tuple[float, float, list[str]]:
    """(open with a fresh setup build, open reusing the cached derived image, derived image ids to remove)."""
    cls = sandbox_class("docker")
    images: list[str] = []

    def open_close(setup: str) -> None:
        box = cls(root, SandboxSpec(kind="docker", image=spec.image, setup=(setup,), limits=spec.limits))
        try:
            images.append(str(box._client.api.inspect_container(box.container_id)["Image"]))
        finally:
            box.close()

    fresh = median_of(3, lambda: open_close(f"{SETUP}  # {uuid.uuid4().hex}"))
    cached_setup = f"{SETUP}  # {uuid.uuid4().hex}"
    open_close(cached_setup)  # build once
    cached = median_of(max(3, runs // 3), lambda: open_close(cached_setup))
    return fresh, cached, sorted(set(images))


def remove_images(ids: list[str]) -> None:
    import docker

    client = docker.from_env()
    for image_id in ids:
        try:
            client.images.remove(image_id, force=True)
        except Exception as exc:
            print(f"  (could not remove {image_id[:19]}: {exc})")
    client.close()


def row(name: str, seconds: float | None, base: float | None, note: str = "") -> str:
    if seconds is None or base is None:
        return f"{name:<34} {'n/a':>10} {'':>8}  {note}"
    return f"{name:<34} {seconds * 1000:>8.1f}ms {seconds / base:>7.2f}x  {note}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=15, help="repetitions of python -c pass")
    parser.add_argument("--image", default=os.environ.get("MENDLOOP_TEST_IMAGE", "mendloop-base:bookworm"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mendloop-bench-") as tmp:
        root = Path(tmp)
        (root / "test_twenty.py").write_text(TWENTY)
        limits = Limits(timeout=120, memory_mb=1024, pids=256, cpus=2.0)
        results: dict[str, tuple[float, float] | str] = {}
        for kind in ("local", "bwrap", "docker"):
            spec = SandboxSpec(kind=kind, image=args.image, limits=limits)
            try:
                results[kind] = warm_latencies(kind, root, spec, args.runs)
            except Exception as exc:
                results[kind] = f"unavailable: {str(exc).splitlines()[0][:90]}"
        docker_spec = SandboxSpec(kind="docker", image=args.image, limits=limits)
        cold: float | str
        setup: tuple[float, float, list[str]] | str
        try:
            cold = docker_cold(root, docker_spec, args.runs)
            setup = docker_setup(root, docker_spec, args.runs)
        except Exception as exc:
            cold = setup = f"unavailable: {str(exc).splitlines()[0][:90]}"

    local = results["local"]
    base_pass, base_pytest = local if isinstance(local, tuple) else (None, None)
    print(f"sandbox overhead: median of {args.runs} runs (pytest: {max(3, args.runs // 3)}), ratios to local")
    print(f"{'backend':<34} {'python -c pass':>10} {'ratio':>8}")
    labels = {"local": "local", "bwrap": "bwrap", "docker": "docker (warm container)"}
    for kind, value in results.items():
        if isinstance(value, str):
            print(row(labels[kind], None, None, value))
        else:
            print(row(labels[kind], value[0], base_pass))
    print(f"{'backend':<34} {'pytest 20 tests':>10} {'ratio':>8}")
    for kind, value in results.items():
        if isinstance(value, tuple):
            print(row(labels[kind], value[1], base_pytest))
    print("docker, one-off costs (ratio to local python -c pass):")
    if isinstance(cold, str) or isinstance(setup, str):
        print(f"  {cold}")
    else:
        fresh, cached, images = setup
        print(row("  cold start (open+run+close)", cold, base_pass))
        print(row("  open, setup baked fresh", fresh, base_pass))
        speedup = f"{fresh / cached:.1f}x faster than fresh"
        print(row("  open, cached derived image", cached, base_pass, speedup))
        remove_images(images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
