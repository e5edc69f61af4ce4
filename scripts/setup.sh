#!/usr/bin/env bash
# Set up jaxloop in .venv with a Python 3.12 interpreter, then (unless --no-demo) evaluate a shipped example.
# Python >= 3.12 is required (hwcomponents needs it). We look for, in order: $PYTHON, python3.12 on PATH,
# and pyenv's 3.12 (~/.pyenv/versions/3.12.*), and stop with a clear message if none is found.
set -euo pipefail
cd "$(dirname "$0")/.."
find_python() {
  for c in "${PYTHON:-}" "$(command -v python3.12 || true)" $(ls -d "$HOME"/.pyenv/versions/3.12*/bin/python 2>/dev/null | sort -V | tail -1); do
    if [ -n "$c" ] && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then echo "$c"; return; fi
  done
  echo "error: Python >= 3.12 not found; install it or set PYTHON=/path/to/python3.12" >&2
  exit 1
}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
  PY=$(find_python)
  echo "using $PY ($("$PY" --version))"
  "$PY" -m venv --clear .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,energy]"
if [ "${1:-}" != "--no-demo" ]; then
  .venv/bin/jaxloop model data/examples/conv1d-3level/input.yaml --ert data/examples/conv1d-3level/ERT.yaml \
    --json results/example-model.json
fi
