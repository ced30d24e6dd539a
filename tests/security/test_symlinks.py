"""Finding 1: host secrets reached the model through symbolic links.

The prompt builder followed links on the host, so a repository committing ``notes.txt -> /proc/self/environ`` or a link
to a private key outside it sent the environment (API key, tokens) and the key to the endpoint, and wrote them into
trajectory.jsonl and the checkpoint - also with ``--issue``, and through a link a kept reproduction test made inside
the sandbox. Each test here runs that attack for real (real links, real bubblewrap, the real CLI and a real HTTP
model server) and looks for the canaries in everything the run wrote or sent.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from agent.nodes.repo_context import gather, read_source, relevant_sources, scan
from sandboxes.base import Limits, SandboxSpec
from sandboxes.bwrap import BwrapSandbox
from tests.security.conftest import (
    assert_nowhere,
    canary,
    cli_env,
    commit_all,
    example_repo,
    outside_secret,
    run_cli,
    written,
)
from tests.support.example import CWM_FIX, CWM_REPRODUCE, ISSUE, OPENAI_FIX, OPENAI_REPRODUCE
from tests.support.fake_github import FakeGitHub, run_git
from tests.support.fake_server import Reply, ScriptedServer
from tools.tracing import trace_test
from tools.workspace import Workspace

ENVIRON = "/proc/self/environ"


def _solve(repo: Path, run_dir: Path, url: str, *more: str) -> list[str]:
    args = ["solve", "--repo", str(repo), "--issue-file", str(ISSUE), "--base-url", url, "--sandbox", "bwrap"]
    return [*args, "--out", str(run_dir), "--max-iterations", "2", *more]


# --- the attacks, end to end ------------------------------------------------------------------------------------


@pytest.mark.bwrap
@pytest.mark.parametrize("dialect", ["cwm", "openai"])
def test_committed_links_to_the_environment_and_a_key_are_listed_not_read(tmp_path: Path, dialect: str) -> None:
    key_file, key_value = outside_secret(tmp_path)
    host_secret, api_key = canary("HOST-ENV"), canary("sk-API-KEY")
    repo = example_repo(
        tmp_path / "repo",
        links={
            "notes.txt": ENVIRON,  # read by the prompt builder (a text file)
            "stats/settings.py": ENVIRON,  # read by the fresh rounds (a Python source next to the code)
            "docs/deploy_key.txt": str(key_file),
            "keys": str(key_file.parent),  # a link to a directory outside
        },
    )
    script: dict[str, list[Reply]] = {"reproduce": [CWM_REPRODUCE], "write": [CWM_FIX]}
    if dialect == "openai":
        script = {"reproduce": [OPENAI_REPRODUCE], "write": [OPENAI_FIX]}
    env = cli_env(tmp_path, {"MENDLOOP_CANARY_SECRET": host_secret, "MENDLOOP_API_KEY": api_key})
    with ScriptedServer(script) as server:
        done = run_cli(_solve(repo, tmp_path / "run", server.url, "--dialect", dialect), env)
        bodies = [r.body for r in server.requests if isinstance(r.body, dict)]
        prompts = "\n".join(str(m.get("content")) for body in bodies for m in body.get("messages", []))
    assert done.returncode == 0, done.stderr[-3000:]
    assert_nowhere(written(tmp_path / "run", server, done.stdout, done.stderr), host_secret, api_key, key_value)
    assert f"notes.txt -> {ENVIRON}" in prompts and f"docs/deploy_key.txt -> {key_file}" in prompts


REPRO_PLANTING_LINKS = """import os

from stats import median


def test_median_of_even_count_is_mean_of_middle_pair():
    for name, target in (("leak.txt", {environ!r}), ("stolen.txt", {key!r})):
        if not os.path.lexists(name):
            os.symlink(target, name)
    assert median([4, 1, 3, 2]) == 2.5
"""


@pytest.mark.bwrap
def test_links_a_kept_reproduction_test_makes_in_the_sandbox_are_not_followed(tmp_path: Path) -> None:
    key_file, key_value = outside_secret(tmp_path)
    host_secret = canary("HOST-ENV")
    repo = example_repo(tmp_path / "repo")
    test = REPRO_PLANTING_LINKS.format(environ=ENVIRON, key=str(key_file))
    reproduce = f"A test.\n</think>\n<tool: create>\ntests/test_mendloop_repro.py\n{test}</tool>"
    env = cli_env(tmp_path, {"MENDLOOP_CANARY_SECRET": host_secret})
    with ScriptedServer({"reproduce": [reproduce], "write": [CWM_FIX]}) as server:
        done = run_cli(_solve(repo, tmp_path / "run", server.url), env)
        write_prompt = str(server.requests[-1].body["messages"][1]["content"])
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "run"
    assert_nowhere(written(run_dir, server, done.stdout, done.stderr), host_secret, key_value)
    assert f"leak.txt -> {ENVIRON}" in write_prompt  # the test really made the link, and it is shown as one
    patch = (run_dir / "patch.diff").read_text()
    assert "leak.txt" not in patch and "stolen.txt" not in patch and "ordered[middle - 1]" in patch
    report = (run_dir / "report.md").read_text()
    assert f"left out of the patch: symbolic link `leak.txt -> {ENVIRON}`" in report
    assert f"`stolen.txt -> {key_file}`" in report


WRITE_ISSUE_FIX = (
    "I see the bug.\n</think>\n<tool: edit>\nsrc/calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n"
    "    return a + b\n>>>>>>> REPLACE\n</tool>"
)


def _bare_repo_with_links(path: Path, key_file: Path) -> Path:
    """A bare GitHub-side repository whose files include links to the environment and to a key outside."""
    work = path.with_name("work")
    work.mkdir(parents=True)
    (work / "src").mkdir()
    (work / "tests").mkdir()
    (work / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["src"]\n')
    (work / "src" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (work / "tests" / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    os.symlink(ENVIRON, work / "notes.txt")
    os.symlink(str(key_file), work / "src" / "key.py")
    run_git("init", "-q", "-b", "main", cwd=work)
    commit_all(work, "initial")
    run_git("clone", "-q", "--bare", str(work), str(path), cwd=work.parent)
    return path


@pytest.mark.bwrap
def test_with_an_issue_the_token_in_the_environment_does_not_reach_the_model(tmp_path: Path) -> None:
    key_file, key_value = outside_secret(tmp_path)
    token = canary("ghp_TOKEN")
    bare = _bare_repo_with_links(tmp_path / "remotes" / "acme" / "widgets.git", key_file)
    with FakeGitHub(tmp_path / "gh", token=token) as fake, ScriptedServer({"write": [WRITE_ISSUE_FIX]}) as server:
        fake.add_repo("acme", "widgets", bare)
        fake.add_issue("acme/widgets", 7, "add() subtracts", "add(2, 3) returns -1; see notes.txt")
        args = ["solve", "--issue", "acme/widgets#7", "--github-api-url", fake.url, "--base-url", server.url]
        args += ["--sandbox", "bwrap", "--no-reproduce", "--open-pr", "--out", str(tmp_path / "run")]
        done = run_cli([*args, "--max-iterations", "2"], cli_env(tmp_path, {"GITHUB_TOKEN": token}))
        chats = [r for r in server.requests if r.path.endswith("/chat/completions")]  # the run also GETs /v1/models
        prompt = str(chats[0].body["messages"][1]["content"])
        sent_to_github = [f"{c.path} {c.body}" for c in fake.calls]
    assert done.returncode == 0, done.stderr[-3000:]
    assert any("/pulls" in call for call in sent_to_github)  # the pull request was opened, with the report
    records = written(tmp_path / "run", server, done.stdout, done.stderr, *sent_to_github)
    assert_nowhere(records, token, key_value)
    assert f"notes.txt -> {ENVIRON}" in prompt


# --- the boundaries, one at a time -------------------------------------------------------------------------------


def test_the_prompt_builder_lists_links_and_reads_only_regular_files(tmp_path: Path) -> None:
    key_file, key_value = outside_secret(tmp_path)
    root = tmp_path / "tree"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "core.py").write_text("def f():\n    return 1\n")
    os.symlink(str(key_file), root / "pkg" / "key.py")
    os.symlink(str(key_file.parent), root / "ssh")  # a directory outside: never entered
    os.symlink("core.py", root / "pkg" / "alias.py")  # inside, but still a link: listed, not read
    os.symlink(str(key_file), root / "evil\nname.txt")  # a name that tries to pose as more prompt lines
    os.mkfifo(root / "pipe.txt")  # would hang a plain read
    text = gather(root, "fix f in pkg/key.py and ssh/id_rsa")
    assert key_value not in text and "--- pkg/core.py" in text
    assert f"pkg/key.py -> {key_file}" in text and "pkg/alias.py -> core.py" in text
    assert "evil\\nname.txt ->" in text and "\nname.txt" not in text
    assert "ssh/id_rsa" not in scan(root).files and "pipe.txt" not in scan(root).files
    assert relevant_sources(root, "pkg/key.py pkg/alias.py", failing=["pkg/key.py"]) == ["pkg/core.py"]
    assert read_source(root, "pkg/key.py") is None and read_source(root, "ssh/id_rsa") is None
    assert read_source(root, "pkg/../pkg/core.py") is None and read_source(root, "pkg/core.py") is not None


def test_a_link_swapped_in_for_a_directory_after_listing_is_not_followed(tmp_path: Path) -> None:
    key_file, _value = outside_secret(tmp_path)
    root = tmp_path / "tree"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "id_rsa").write_text("harmless\n")
    assert read_source(root, "pkg/id_rsa") == "harmless\n"
    (root / "pkg" / "id_rsa").unlink()
    (root / "pkg").rmdir()
    os.symlink(str(key_file.parent), root / "pkg")
    assert read_source(root, "pkg/id_rsa") is None


def _git_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    run_git("init", "-q", cwd=path)
    commit_all(path, "initial")
    return path


def test_a_patch_never_carries_a_link_to_a_host_path(tmp_path: Path) -> None:
    key_file, _value = outside_secret(tmp_path)
    repo = _git_repo(tmp_path / "repo", {"a.py": "x = 1\n", "sub/b.py": "y = 2\n"})
    os.symlink("/etc", repo / "etc")  # committed by the repository: part of the base, not of a change
    commit_all(repo)
    ws = Workspace.create(repo, tmp_path / "ws")
    (ws.root / "a.py").write_text("x = 2\n")
    outward = {
        "leak.txt": ENVIRON,
        "key": str(key_file),
        "up": "../../outside",
        "sub/up": "../../x",
        "via": "etc/passwd",  # relative and lexically inside, but through a link that leaves
    }
    for rel, target in outward.items():
        os.symlink(target, ws.root / rel)
    os.symlink("sub/b.py", ws.root / "alias.py")  # stays inside: a legitimate part of a change
    patch = ws.diff()
    assert ws.outside_links() == outward
    assert "b/alias.py" in patch and "+x = 2" in patch
    assert not any(f"b/{rel}" in patch for rel in outward)
    user = _git_repo(tmp_path / "user", {"a.py": "x = 1\n", "sub/b.py": "y = 2\n"})
    subprocess.run(["git", "apply"], input=patch, text=True, cwd=user, check=True)
    assert (user / "alias.py").is_symlink() and not (user / "leak.txt").exists()


PLANTER = """import os

def test_plants():
    os.makedirs(".mendloop", exist_ok=True)
    out = ".mendloop/trace.json"
    if os.path.lexists(out):
        os.remove(out)
    {plant}
    assert 1 == 2
"""


@pytest.mark.bwrap
@pytest.mark.parametrize(
    "plant",
    [
        "os.symlink({outside!r}, out)",  # the trace written through a link, or read back through one
        "os.mkfifo(out); os._exit(1)",  # a FIFO left where the trace should be: a read would hang the host
    ],
    ids=["link", "fifo"],
)
def test_the_trace_is_never_written_or_read_through_a_planted_link(tmp_path: Path, plant: str) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('{"function": "stolen", "file": "x", "source": "", "first_line": 1, "frames": []}')
    ws = tmp_path / "ws"
    (ws / "tests").mkdir(parents=True)
    (ws / "tests" / "test_plant.py").write_text(PLANTER.format(plant=plant.format(outside=str(outside))))
    before = outside.read_text()
    box = BwrapSandbox(ws, SandboxSpec(kind="bwrap", limits=Limits(timeout=60)))
    result: list[object] = []
    try:
        worker = threading.Thread(
            target=lambda: result.append(trace_test(box, "tests/test_plant.py::test_plants")), daemon=True
        )
        worker.start()
        worker.join(120)
        assert not worker.is_alive(), "reading the trace back hung"
    finally:
        box.close()
    assert result and (result[0] is None or getattr(result[0], "function", "") != "stolen")
    assert outside.read_text() == before
