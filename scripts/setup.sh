#!/usr/bin/env bash
# Creates .venv, installs pinned tools and test dependencies, builds the wheel and installs it.
# Usage: scripts/setup.sh [--fast] [EXTRAS]   (EXTRAS defaults to "test,torch,ray,examples"; --fast builds
# the quick-to-compile `fastbuild` profile instead of the LTO release profile).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = "--fast" ]; then profile=fastbuild; shift; fi
extras="${1:-test,torch,ray,examples}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --disable-pip-version-check "pip>=23,<27" "maturin>=1.7,<2"
rm -rf target/wheels
"$VPY" -m maturin build -q --profile "$profile" --interpreter "$VPY" -o target/wheels
wheel=$(ls target/wheels/probcraft-*.whl)
"$VPY" -m pip install -q --disable-pip-version-check "${wheel}[${extras}]"
# The same version may already be installed from an earlier build: force this one in.
"$VPY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
echo "installed $(basename "$wheel") (profile $profile, extras $extras) into .venv"
