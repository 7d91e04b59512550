#!/usr/bin/env bash
# Sets everything up and runs the main job end to end on data the repository generates.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "${PROBCRAFT_EXTRAS:-test}"
exec .venv/bin/python -m probcraft.demo "$@"
