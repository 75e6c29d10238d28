#!/usr/bin/env bash
# Create .venv and install quadd with its test tools. Idempotent: a second run is quick.
#
# torch is pinned to the CPU wheel that the project's machines keep on disk; elsewhere
# `pip install -e ".[all]"` takes any torch>=2.4 (set QUADD_TORCH to choose, e.g. "torch").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${QUADD_TORCH:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install -q --upgrade pip
    # Installed on its own first, so no other requirement can pull a CUDA build.
    .venv/bin/python -m pip install -q "$TORCH_SPEC"
fi
.venv/bin/python -m pip install -q -e ".[all,dev]"
