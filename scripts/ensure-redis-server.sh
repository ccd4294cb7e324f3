#!/usr/bin/env bash
# Make sure a redis-server binary exists (tests and the demo start private ones).
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
echo "redis-server not found; installing Debian/Ubuntu package redis-server ..." >&2
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO=none; fi
if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -q && $SUDO apt-get install -y -q redis-server
    # Debian starts the packaged service; we only need the binary.
    exit 0
fi
cat >&2 <<'MSG'
bulktag needs a redis-server binary and could not install one here.
  Debian/Ubuntu:  sudo apt-get install redis-server
  macOS:          brew install redis
  or run Redis in Docker: docker compose up -d redis   (then set BULKTAG_REDIS_URL)
MSG
exit 1
