#!/usr/bin/env bash
# Set up a virtual environment with everything the tests need, then run them.
# torch: 2.13.0 is installed first, so the open `torch>=2.2` of the [validate] extra installs
# nothing more (on this project's machines that release is a local CPU build). Override with
# TORCH_SPEC, e.g. TORCH_SPEC="torch==2.5.1" bash scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install --quiet -e ".[test,validate]"
python -m pytest -q "$@"
