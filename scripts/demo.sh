#!/usr/bin/env bash
# Set up, then run the whole pipeline on the built-in demo world (arguments go to `omni demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/omni demo "$@"
