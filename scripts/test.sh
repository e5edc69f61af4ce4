#!/usr/bin/env bash
# Install (if needed) and run the whole test suite. Fails if no test ran (pytest exit 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-demo
set +e
# two worker processes (CI has 2 cores; most of the time is XLA compiling, one core each);
# JAXLOOP_TEST_WORKERS=0 runs in this process
.venv/bin/python -m pytest -q -n "${JAXLOOP_TEST_WORKERS:-2}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "error: no tests were collected" >&2; exit 1; fi
exit "$rc"
