#!/usr/bin/env bash
# Installs what is needed, then runs the relay on its embedded default
# (RTMP on tcp:1935). Extra arguments go to the rtmprelay command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/rtmprelay "$@"
