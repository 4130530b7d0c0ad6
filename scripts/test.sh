#!/usr/bin/env bash
# Fresh clone -> the whole test suite on CPU. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when no tests were collected (e.g. a -k filter that matches nothing): not a failure.
if [ "$rc" -eq 5 ]; then exit 0; fi
exit "$rc"
