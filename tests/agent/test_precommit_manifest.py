"""The hook as users install it: pre-commit reads this repository's ``.pre-commit-hooks.yaml``, builds a venv and
pip-installs mendloop with its dependencies, then a commit whose test fails is blocked and repaired.

Why one test and slow: the venv build costs a minute or two, and it is the only test that catches a broken manifest or a
dependency missing from ``pyproject.toml`` (the installed hook has nothing but what the package declares).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.test_precommit import FIX_LINE, STAGED, commits, edit, hook_env, sh
from tests.support.example import CWM_FIX, ROOT, make_repo
from tests.support.fake_server import ScriptedServer


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_published_hook_installs_blocks_and_repairs(tmp_path: Path) -> None:
    env = hook_env(tmp_path)
    clone = tmp_path / "mendloop"
    sh(tmp_path, "git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone), env=env)
    rev = sh(clone, "git", "rev-parse", "HEAD", env=env).stdout.strip()
    repo = make_repo(tmp_path / "repo")
    hook = {"id": "mendloop", "args": ["--sandbox", "local"]}
    config = {"repos": [{"repo": str(clone), "rev": rev, "hooks": [hook]}]}
    (repo / ".pre-commit-config.yaml").write_text(json.dumps(config, indent=2))
    sh(repo, "git", "add", ".pre-commit-config.yaml", env=env)
    sh(repo, "git", "commit", "-qm", "pre-commit config", env=env)
    sh(repo, sys.executable, "-m", "pre_commit", "install", env=env)
    edit(repo / "stats" / "core.py", *STAGED)
    sh(repo, "git", "add", "stats/core.py", env=env)

    with ScriptedServer({"write": [CWM_FIX]}) as server:
        # The endpoint comes through the environment, which pre-commit passes on to hooks.
        blocked = subprocess.run(
            ["git", "commit", "-m", "edit mean"],
            cwd=repo,
            env=env | {"MENDLOOP_BASE_URL": server.url},
            capture_output=True,
            text=True,
            timeout=840,
        )
        output = blocked.stdout + blocked.stderr
        assert blocked.returncode != 0, output
        assert "mendloop (repair failing checks)" in output and FIX_LINE in output, output[-3000:]
        assert server.nodes() == ["write"]
    assert FIX_LINE[1:] in (repo / "stats" / "core.py").read_text()
    assert commits(repo, env) == 2
