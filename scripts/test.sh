#!/usr/bin/env bash
# Fresh clone -> ruff, mypy, then the whole test suite on CPU. Extra arguments go to pytest.
# LINT=0 skips ruff and mypy for a quick local run; CI (.ci/run) always runs them (configs: pyproject.toml).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
if [ "${LINT:-1}" != "0" ]; then
  .venv/bin/python -m ruff check --quiet . \
    || { echo "[test] FAILED: ruff check found the problems above (LINT=0 skips lint for a quick run)" >&2; exit 1; }
  .venv/bin/python -m mypy \
    || { echo "[test] FAILED: mypy found the type errors above (LINT=0 skips lint for a quick run)" >&2; exit 1; }
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when no tests were collected (e.g. a -k filter that matches nothing): not a failure.
if [ "$rc" -eq 5 ]; then exit 0; fi
exit "$rc"
