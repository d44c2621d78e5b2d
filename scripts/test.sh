#!/usr/bin/env bash
# Installs what is needed, then runs the whole test suite (unit + real peers).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/pytest "$@"
