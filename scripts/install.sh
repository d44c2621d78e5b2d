#!/usr/bin/env bash
# Installs everything rtmprelay needs on a fresh Debian machine (run as root).
# Idempotent: a second run only checks what is already there.
#   system (apt): ffmpeg, nginx + its RTMP module (and its stream module: the tests' TLS
#                 terminator in front of an upstream), GStreamer with the good/bad/ugly/libav
#                 plugins (rtmpsink is librtmp, the glasses' own RTMP stack), rtmpdump,
#                 chromium + chromium-driver (the status page's test in a real headless browser;
#                 Debian builds the two together, so the driver always matches the browser)
#   Python (PyPI): the package and its test extras into ./.venv (selenium drives that chromium;
#                 nothing downloads a browser)
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  ffmpeg nginx libnginx-mod-rtmp libnginx-mod-stream rtmpdump
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  chromium chromium-driver
  python3-venv
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian nginx package may start a default server on port 80; rtmprelay's
# tests start their own nginx processes and need nothing from that one.

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.rtmprelay-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  # compat mode puts this folder on sys.path, where twistd finds twisted/plugins/
  .venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat
  touch "$stamp"
fi
