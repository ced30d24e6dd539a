"""Choose the winning candidate the way CWM did for its 65.8% on SWE-bench Verified.

Why this order: passing more tests is the strongest evidence; among equals, a patch that several independent samples
converged on is more likely right than a one-off; and among those, the cheaper one. Patches are compared after
normalisation, so two samples that differ only in whitespace or line numbers count as the same answer.

The tests: with several candidates and several generated (reproduction) tests, each candidate is run against the
repository's tests and the generated tests the candidates agree on most (``Matrix``: a test's outcome pattern across
the candidates; the five tests with the most common patterns count). A generated test the candidates cannot agree on
- a wrong test that only wrong patches pass - then weighs nothing, and the right patch can win from a minority.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tools.testing import TestReport, case_in_file

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


# -- CWM's test-time scaling: candidates x generated tests ------------------------------------------------------------
AGREED_TESTS = 5  # CWM ran every patch against the existing tests and the top-5 majority-agreeing generated tests


@dataclass
class Matrix:
    """Each candidate's outcome on each generated test (a kept reproduction test file), and which tests count.

    ``passed[index][j]``: candidate ``index`` passes every case of ``tests[j]``. ``existing[index]``: how many of the
    other tests (the repository's own) it passes. ``agreed``: the tests whose outcome pattern across the candidates
    the most tests share (ties: the test more candidates pass), at most ``AGREED_TESTS`` of them; the others are
    ``dropped``. A candidate's score is its existing passes plus its agreed passes."""

    tests: list[str]
    passed: dict[int, list[bool]]
    existing: dict[int, int]
    agreed: list[str]
    existing_failed: dict[int, int] = field(default_factory=dict)

    @property
    def dropped(self) -> list[str]:
        return [t for t in self.tests if t not in self.agreed]

    def score(self, index: int) -> int:
        row = self.passed[index]
        return self.existing[index] + sum(ok for t, ok in zip(self.tests, row, strict=True) if t in self.agreed)

    def failures(self, index: int) -> int:
        """The counted tests it fails: existing ones and agreed generated ones."""
        row = self.passed[index]
        agreed = sum(not ok for t, ok in zip(self.tests, row, strict=True) if t in self.agreed)
        return self.existing_failed.get(index, 0) + agreed

    def to_dict(self) -> dict[str, Any]:
        return {
            "tests": self.tests,
            "passed": {str(i): row for i, row in self.passed.items()},
            "existing": {str(i): n for i, n in self.existing.items()},
            "agreed": self.agreed,
        }


def agreed_tests(tests: list[str], passed: dict[int, list[bool]], top: int = AGREED_TESTS) -> list[str]:
    """The ``top`` tests the candidates agree on most: a test's pattern is its outcome on every candidate; the
    tests whose pattern the most tests share come first, then those more candidates pass, then in order."""
    order = sorted(passed)
    patterns = [tuple(passed[i][j] for i in order) for j in range(len(tests))]
    support = Counter(patterns)
    ranked = sorted(range(len(tests)), key=lambda j: (-support[patterns[j]], -sum(patterns[j]), j))
    chosen = set(ranked[:top])
    return [t for j, t in enumerate(tests) if j in chosen]


def outcome_matrix(reports: dict[int, TestReport], tests: list[str], test_cmd: str) -> Matrix:
    """The candidate x generated-test matrix of one round, from each candidate's test report."""
    passed: dict[int, list[bool]] = {}
    existing: dict[int, int] = {}
    existing_failed: dict[int, int] = {}
    for index, report in reports.items():
        row = []
        for test in tests:
            cases = [c for c in report.cases if case_in_file(c, test, test_cmd)]
            row.append(bool(cases) and all(c.outcome == "passed" for c in cases))
        passed[index] = row
        own = [c for c in report.cases if not any(case_in_file(c, test, test_cmd) for test in tests)]
        existing[index] = sum(1 for c in own if c.outcome == "passed")
        existing_failed[index] = sum(1 for c in own if c.outcome in ("failed", "error"))
    return Matrix(tests, passed, existing, agreed_tests(tests, passed), existing_failed)


def score_candidates(
    cands: list[dict[str, Any]], reports: dict[int, TestReport], generated: list[str], test_cmd: str
) -> tuple[list[Scored], Matrix | None]:
    """Each candidate's score for ``pick``: with several candidates and generated tests, CWM's selection (the
    existing tests and the agreed generated tests passed, and failed); otherwise every test passed and failed."""
    if len(cands) > 1 and generated:
        matrix = outcome_matrix({c["index"]: reports[c["index"]] for c in cands}, list(generated), test_cmd)
        scored = [
            Scored(c["index"], matrix.score(c["index"]), matrix.failures(c["index"]), c["patch"], c["tokens"])
            for c in cands
        ]
        return scored, matrix
    scored = [
        Scored(c["index"], len(reports[c["index"]].passed), len(reports[c["index"]].failed), c["patch"], c["tokens"])
        for c in cands
    ]
    return scored, None


def without_tests(report: TestReport, tests: list[str], test_cmd: str) -> TestReport:
    """``report`` without the cases of ``tests`` (dropped generated tests); its status follows what is left."""
    cases = [c for c in report.cases if not any(case_in_file(c, t, test_cmd) for t in tests)]
    status = report.status
    if status == "failed" and cases and all(c.outcome in ("passed", "skipped") for c in cases):
        status = "passed"
    return replace(report, cases=cases, status=status)


def drop_disagreed(
    root: Path, matrix: Matrix, state: Mapping[str, Any], report: TestReport, test_cmd: str
) -> tuple[TestReport, dict[str, Any]]:
    """Generated tests outside the agreed ones leave the run: their files leave the workspace (``root``, holding
    the winner), their cases the winner's report, and the state update names the tests that remain required."""
    dropped = matrix.dropped
    if not dropped:
        return report, {}
    for rel in dropped:
        (root / rel).unlink(missing_ok=True)
    kinds = {c.id: c for c in report.cases}
    ids = [
        test
        for test in state.get("repro_ids", [])
        if not any(
            case_in_file(kinds[test], rel, test_cmd) if test in kinds else test.startswith(rel) for rel in dropped
        )
    ]
    files = [rel for rel in state.get("repro_files", []) if rel not in dropped]
    return without_tests(report, dropped, test_cmd), {"repro_files": files, "repro_ids": ids}
