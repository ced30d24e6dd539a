"""tools.proc: real subprocesses, their output, failures and timeouts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tools import proc
from tools.errors import FatalError


def test_run_captures_stdout_stderr_and_returncode(tmp_path: Path) -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    done = proc.run([sys.executable, "-c", code], cwd=tmp_path, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert done.args[0] == sys.executable


def test_run_check_raises_one_line_message_with_first_stderr_line() -> None:
    code = "import sys; sys.stderr.write('\\nfirst problem\\nsecond\\n'); sys.exit(1)"
    with pytest.raises(proc.CalledProcessError) as info:
        proc.run([sys.executable, "-c", code])
    message = info.value.message
    assert "\n" not in message
    assert message.endswith("failed (exit 1): first problem")
    assert message.startswith("command `")
    assert info.value.exit_code == 2
    assert isinstance(info.value, FatalError)
    assert info.value.completed.returncode == 1


def test_missing_executable_is_fatal_one_line() -> None:
    with pytest.raises(FatalError, match=r"^no-such-tool-xyz is not installed$"):
        proc.run(["no-such-tool-xyz", "--version"])


def test_input_text_and_bytes_and_env_are_passed(tmp_path: Path) -> None:
    code = "import os, sys; data = sys.stdin.buffer.read(); print(len(data), os.environ['MENDLOOP_X'])"
    for data in ("héllo", "héllo".encode()):
        done = proc.run([sys.executable, "-c", code], input=data, env={"MENDLOOP_X": "yes"})
        assert done.stdout.split() == ["6", "yes"]


def test_timeout_is_fatal() -> None:
    with pytest.raises(FatalError, match=r"timed out after 0\.5s"):
        proc.run([sys.executable, "-c", "import time; time.sleep(10)"], timeout=0.5)


def test_non_utf8_output_round_trips() -> None:
    done = proc.run([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'caf\\xe9')"])
    assert proc.encode(done.stdout) == b"caf\xe9"
