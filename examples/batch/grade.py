"""Grade a batch's preds.jsonl against the hidden tests that examples/batch/convert.py set aside.

    python examples/batch/grade.py /tmp/qb /tmp/qb-run/preds.jsonl [--timeout 20]
    python examples/batch/grade.py /tmp/qb --reference      # check the conversion: every reference fix passes

Why a grader outside mendloop: the agent's own "resolved" means its visible test passes; a benchmark score must come
from the hidden test on a pristine copy with the patch applied, exactly once per task, with a wall timeout (some
buggy programs loop forever). A task without a prediction, or whose patch does not apply, counts as failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _run(cmd: list[str], cwd: Path, timeout: float, stdin: str | None = None) -> tuple[bool, str]:
    try:
        done = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:g}s"
    return done.returncode == 0, (done.stderr or done.stdout).strip()[-300:]


def grade_one(dest: Path, slug: str, patch: str | None, timeout: float, reference: bool = False) -> dict[str, Any]:
    meta = json.loads((dest / "graders" / slug / "meta.json").read_text())
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        work = Path(tmp) / "repo"
        shutil.copytree(dest / "repos" / slug, work, ignore=shutil.ignore_patterns(".git"))
        if reference:
            shutil.copy(dest / "graders" / slug / "reference.py", work / meta["program"])
        elif patch:
            ok, why = _run(["git", "apply", "--whitespace=nowarn", "-"], work, 60, stdin=patch)
            if not ok:
                return {"instance_id": meta["instance_id"], "passed": False, "why": f"patch does not apply: {why}"}
        shutil.copy(dest / "graders" / slug / "hidden_test.py", work / "hidden_test.py")
        ok, why = _run([sys.executable, "hidden_test.py"], work, timeout)
    return {"instance_id": meta["instance_id"], "passed": ok, "why": "" if ok else why}


def grade(dest: Path, preds: Path | None, timeout: float, reference: bool = False) -> list[dict[str, Any]]:
    patches: dict[str, str] = {}
    if preds is not None:
        for line in preds.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                patches[row["instance_id"]] = row.get("model_patch") or ""
    rows = []
    for grader in sorted((dest / "graders").iterdir()):
        meta = json.loads((grader / "meta.json").read_text())
        rows.append(grade_one(dest, grader.name, patches.get(meta["instance_id"]), timeout, reference))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="the --dest directory of convert.py")
    parser.add_argument("preds", type=Path, nargs="?", help="preds.jsonl of a mendloop batch")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per hidden test")
    parser.add_argument("--reference", action="store_true", help="grade the reference fixes instead")
    args = parser.parse_args(argv)
    if args.preds is None and not args.reference:
        parser.error("give preds.jsonl, or --reference")
    rows = grade(args.dest, args.preds, args.timeout, args.reference)
    for row in rows:
        print(json.dumps(row))
    correct = sum(row["passed"] for row in rows)
    print(f"graded: {correct} of {len(rows)} correct ({100 * correct / max(len(rows), 1):.1f}%)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
