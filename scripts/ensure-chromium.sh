#!/usr/bin/env bash
# Make sure headless Chromium exists for the dashboard test (tests/e2e/test_dashboard.py).
# Debian's packages, driven by Playwright; we never run `playwright install`.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
echo "chromium not found; installing Debian packages chromium + chromium-driver ..." >&2
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO=none; fi
if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium chromium-driver
    exit 0
fi
cat >&2 <<'MSG'
The dashboard test needs a Chromium binary and could not install one here.
  Debian/Ubuntu:  sudo apt-get install chromium chromium-driver
Without it the test is skipped (and fails under CI=true).
MSG
if [ -n "${CI:-}" ]; then exit 1; fi
exit 0
