"""``--executor ray``: each task a Ray task on a real local Ray instance; results stream into the same files."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import Settings
from agent.doors.batch.run import BatchOptions, run_batch
from tests.agent.test_batch_e2e import make_tasks
from tests.agent.test_batch_support import FIX_REPLY, read_jsonl
from tests.support.fake_server import ScriptedServer

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_twenty_tasks_on_ray(tmp_path: Path, ray_instance: Any) -> None:
    server = ScriptedServer({"write": [FIX_REPLY]}).start()
    try:
        tasks = make_tasks(tmp_path, 20, hanging=5)
        settings = Settings(
            base_url=server.url,
            api_key="sk-ray-test",
            sandbox="local",
            reproduce=False,
            max_iterations=2,
            command_timeout=4,
        )
        out = tmp_path / "out"
        options = BatchOptions(out=out, workers=2, executor="ray", progress=False)
        summary = run_batch(tasks, settings, options)
    finally:
        server.stop()
    results = {r["instance_id"]: r for r in read_jsonl(out / "results.jsonl")}
    assert len(results) == 20
    assert results["calc-05"]["status"] in ("unresolved", "error")
    assert [k for k, r in results.items() if r["status"] != "resolved"] == ["calc-05"]
    preds = read_jsonl(out / "preds.jsonl")
    assert sorted(p["instance_id"] for p in preds) == sorted(results)
    assert all("+    return a + b" in p["model_patch"] for p in preds if p["instance_id"] != "calc-05")
    assert summary.this_run.resolved == 19 and summary.this_run.tokens > 0
    assert server.nodes().count("write") >= 20
    spans = sorted((r["started_at"], r["finished_at"]) for r in results.values())
    overlapping = sum(1 for (_, end), (start, _) in itertools.pairwise(spans) if start < end)
    # Serial execution gives no overlap at all; how many pairs overlap depends on the machine's load, so any one
    # overlap proves that Ray ran tasks side by side.
    assert overlapping >= 1, "no two Ray tasks ran at once (workers=2, num_cpus=2)"
    assert "tasks: 20 (resolved 19" in (out / "report.md").read_text()
