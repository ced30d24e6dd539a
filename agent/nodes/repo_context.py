"""What of the repository the model is shown: a file list and the most relevant source files, within a budget.

Why a ranking and not the whole tree: prompt processing dominates on CPU endpoints (tens of tokens per second), so the
model sees the files the task and the failing tracebacks point at first, then the rest of the source while the
budget lasts. The result is deterministic for a given tree and task so that it stays a stable prompt prefix.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tools.patching.definitions import is_test_file as is_test_file  # the one rule, re-exported for the nodes

_SKIP_DIRS = {
    ".git",
    ".mendloop",
    "__pycache__",
    ".venv",
    "venv",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
    ".hypothesis",
    ".tox",
    "build",
    "dist",
}
_TEXT_SUFFIXES = {".py", ".pyi", ".toml", ".cfg", ".ini", ".txt", ".md", ".rst", ".json", ".yaml", ".yml"}


def list_files(root: Path, limit: int = 400) -> list[str]:
    """Relative paths of the repository's files, sorted, skipping caches and VCS folders."""
    out: list[str] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.is_file():
            out.append(rel.as_posix())
            if len(out) >= limit:
                break
    return out


def _score(rel: str, mentioned: str) -> tuple[int, str]:
    stem = rel.rsplit("/", 1)[-1].removesuffix(".py")
    score = 0
    if rel in mentioned:
        score += 100
    if len(stem) > 2 and re.search(rf"\b{re.escape(stem)}\b", mentioned):
        score += 50
    if rel.endswith(".py"):
        score += 10
    if is_test_file(rel):
        score -= 5
    return (-score, rel)


def gather(root: Path, task_text: str, hints: str = "", budget_chars: int = 24_000) -> str:
    """The repository section of a prompt: the file list, then whole files in order of relevance."""
    files = list_files(root)
    mentioned = f"{task_text}\n{hints}"
    ranked = sorted((f for f in files if Path(f).suffix in _TEXT_SUFFIXES), key=lambda f: _score(f, mentioned))
    parts = ["Files:", *(f"  {f}" for f in files), ""]
    used = sum(len(p) + 1 for p in parts)
    for rel in ranked:
        try:
            text = (root / rel).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        block = f"--- {rel}\n{text}{'' if text.endswith(chr(10)) else chr(10)}--- end of {rel}\n"
        if used + len(block) > budget_chars:
            continue
        parts.append(block)
        used += len(block)
    return "\n".join(parts).rstrip() + "\n"


def defined_names(source: str) -> dict[str, tuple[int, int]]:
    """Top-level functions and classes (and methods, as ``name``) of a Python source: name -> (first, last) line."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    out: dict[str, tuple[int, int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            out.setdefault(node.name, (first, node.end_lineno or node.lineno))
    return out


def _mentions(root: Path, rel: str, words: set[str]) -> int:
    """How many of ``words`` the file defines (a function or class the task or the failure names)."""
    try:
        text = (root / rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 0
    return len(words & set(defined_names(text)))


def relevant_sources(root: Path, task_text: str, hints: str = "", *, failing: list[str] | None = None) -> list[str]:
    """Python files to show with the code, most relevant first: the project files a failure went through, then
    source files that define what the task and the test output name, ranked as in ``gather``, then the failing
    tests' own files."""
    files = [f for f in list_files(root) if f.endswith(".py")]
    mentioned = f"{task_text}\n{hints}"
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]{2,}", mentioned))
    first = [f for f in failing or [] if f in files and not is_test_file(f)]
    rest = [f for f in files if not is_test_file(f) and f not in first]
    defining = {f: _mentions(root, f, words) for f in rest}
    sources = sorted(rest, key=lambda f: (-defining[f], _score(f, mentioned)))
    tests = [f for f in failing or [] if f in files and is_test_file(f)]
    if not tests:
        tests = [f for f in sorted(files, key=lambda f: _score(f, mentioned)) if is_test_file(f)][:1]
    return [*first, *sources, *tests]
