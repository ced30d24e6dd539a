"""Choose the winning candidate the way CWM did for its 65.8% on SWE-bench Verified.

Why this order: passing more tests is the strongest evidence; among equals, a patch that several independent samples
converged on is more likely right than a one-off; and among those, the cheaper one. Patches are compared after
normalisation, so two samples that differ only in whitespace or line numbers count as the same answer.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_NOISE = re.compile(r"^(index [0-9a-f]+\.\.[0-9a-f]+.*|@@ .* @@.*)$")


def normalize_patch(patch: str) -> str:
    """A patch with line numbers, index lines, blank lines and trailing whitespace removed."""
    lines = []
    for line in patch.splitlines():
        if _NOISE.match(line):
            lines.append("@@")
            continue
        stripped = line.rstrip()
        if stripped in ("", "+", "-"):
            continue
        lines.append(re.sub(r"\s+", " ", stripped))
    return "\n".join(lines)


@dataclass
class Scored:
    index: int
    passed: int
    failed: int
    patch: str
    tokens: int


def pick(cands: list[Scored]) -> Scored:
    """Most tests passed, then most frequent normalised patch, then fewest tokens, then lowest index."""
    if not cands:
        raise ValueError("no candidates to choose from")
    votes = Counter(normalize_patch(c.patch) for c in cands if c.patch.strip())
    return min(
        cands,
        key=lambda c: (-c.passed, c.failed, -votes.get(normalize_patch(c.patch), 0), c.tokens, c.index),
    )
