#!/usr/bin/env bash
# Make sure Debian's docker-compose (v1) exists: tests validate docker-compose.yml with
# `docker-compose config`, which needs no Docker engine.
set -euo pipefail
if command -v docker-compose >/dev/null 2>&1; then
    exit 0
fi
echo "docker-compose not found; installing Debian package docker-compose ..." >&2
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO=none; fi
if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -q && $SUDO apt-get install -y -q docker-compose
    exit 0
fi
echo "install docker-compose (sudo apt-get install docker-compose) to validate the compose file" >&2
if [ -n "${CI:-}" ]; then exit 1; fi
exit 0
