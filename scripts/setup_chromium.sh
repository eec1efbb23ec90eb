#!/usr/bin/env bash
# Installs Debian's `chromium` package (the headless browser tests/test_report.py opens the run report in)
# when it is missing and apt-get can run (as root, or through passwordless sudo); otherwise says why not
# and that test skips. Never downloads a browser from anywhere but the system's package archive.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[setup] chromium not installed and no apt-get: the report's browser test will skip" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "[setup] chromium not installed and apt-get needs root (no passwordless sudo):" \
       "the report's browser test will skip; install it with: apt-get install chromium" >&2
  exit 0
fi
echo "[setup] installing Debian's chromium (apt-get) for the report's browser test"
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/tmp/verlvl-apt-chromium.log 2>&1; then
  "${as_root[@]}" apt-get update -q >>/tmp/verlvl-apt-chromium.log 2>&1 || true
  "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >>/tmp/verlvl-apt-chromium.log 2>&1 \
    || echo "[setup] apt-get install chromium failed (see /tmp/verlvl-apt-chromium.log):" \
            "the report's browser test will skip" >&2
fi
