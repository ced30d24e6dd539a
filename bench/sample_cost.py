"""What K samples cost against one, on one server, in one run: the best-of-K goal of issue 12 measured in pairs.

    python bench/sample_cost.py --base-url http://127.0.0.1:8091/v1 [--tasks 12] [--k 4] [--seed 0]

Why a script of its own: repair_rate.py reports the median best-of-K request against the median one-sample request,
but those are different requests (a later round, a longer prompt) and, on this shared machine, often made hours apart
under different load. Here every task's prompt (the bare prompt of repair_rate.py: the task and the buggy program) is
sent twice back to back, once for one sample and once for K, at the same temperature and token cap (the small-model
profile's sampling temperature, 768 tokens), so only the number of samples differs. Which of the two goes first
alternates from task to task: the second request of a pair finds the prompt in the server's cache. The tasks are a
fixed random sample of QuixBugs and HumanEvalFix, half each. Printed: per pair the wall times and answer lengths,
then the median ratio of wall times, K samples' wall against one sample's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.config import SMALL_MODEL_PROFILE  # noqa: E402
from bench.repair_rate import DATA, FILES, bare_prompt, convert  # noqa: E402


def prompts(data: Path, count: int, seed: int) -> list[tuple[str, str]]:
    """``(task id, prompt)``: a fixed random sample, half from each dataset, as repair_rate.py's converter writes
    the tasks."""
    chosen: list[tuple[str, str]] = []
    for index, (dataset, name) in enumerate(FILES.items()):
        rows = list(convert.read_rows(data / name, None))
        take = (count + 1 - index) // 2
        for row in random.Random(seed).sample(rows, min(take, len(rows))):
            item = convert.CONVERTERS[dataset](row)
            program = item.files[item.program_file]
            chosen.append((item.instance_id, bare_prompt(item.task, item.program_file, program)))
    return chosen


def ask(base_url: str, model: str, prompt: str, n: int, temperature: float, max_tokens: int) -> tuple[float, int]:
    """One request: its wall time and the characters of its longest sample (llama-server's usage counts one sample
    of several; the longest is what the request waits for)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    if n > 1:
        body["n"] = n
    started = time.monotonic()
    reply = httpx.post(f"{base_url.rstrip('/')}/chat/completions", json=body, timeout=1800)
    wall = time.monotonic() - started
    reply.raise_for_status()
    payload = reply.json()
    sent = len(payload.get("choices") or [])
    if sent != n:
        raise SystemExit(f"sample_cost: error: asked for {n} samples, the server sent {sent}")
    return wall, max(len(str((c.get("message") or {}).get("content") or "")) for c in payload["choices"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--tasks", type=int, default=12)
    p.add_argument("--k", type=int, default=int(SMALL_MODEL_PROFILE["candidates"]))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=DATA)
    args = p.parse_args(argv)
    temperature = float(SMALL_MODEL_PROFILE["sample_temperature"])
    max_tokens = int(SMALL_MODEL_PROFILE["max_completion_tokens"])
    print(f"{'task':34} {'1 sample s':>10} {'chars':>6} {f'{args.k} samples s':>12} {'longest':>7} {'ratio':>6}")
    ratios = []
    for index, (task, prompt) in enumerate(prompts(args.data, args.tasks, args.seed)):
        order = (1, args.k) if index % 2 == 0 else (args.k, 1)
        measured = {n: ask(args.base_url, args.model, prompt, n, temperature, max_tokens) for n in order}
        (one, one_chars), (many, many_chars) = measured[1], measured[args.k]
        ratios.append(many / one)
        print(f"{task:34} {one:10.1f} {one_chars:6d} {many:12.1f} {many_chars:7d} {many / one:6.2f}", flush=True)
    print(
        f"\n{args.k} samples against 1, median of {len(ratios)} pairs: {statistics.median(ratios):.2f}x "
        f"(temperature {temperature}, max {max_tokens} tokens)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
