#!/usr/bin/env bash
# Install Debian packages when the commands they provide are missing (the tests and the
# demo start their own redis-server, drive Debian's chromium, and validate the compose
# file with docker-compose; none of these come from pip).
#
# usage: ensure-debian-packages.sh [--required] --commands "cmd ..." --why TEXT pkg ...
#   --required  fail when the packages cannot be installed; otherwise fail only under CI
set -euo pipefail
required=no commands="" why=""
while [ $# -gt 0 ]; do
    case "$1" in
        --required) required=yes; shift ;;
        --commands) commands="$2"; shift 2 ;;
        --why) why="$2"; shift 2 ;;
        *) break ;;
    esac
done
missing=no
for cmd in $commands; do
    command -v "$cmd" >/dev/null 2>&1 || missing=yes
done
[ "$missing" = no ] && exit 0

echo "$commands not found; installing Debian package(s) $* ..." >&2
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO=none; fi
if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -q && $SUDO apt-get install -y -q "$@"
    exit 0
fi
echo "could not install $*: $why (Debian/Ubuntu: sudo apt-get install $*)" >&2
if [ "$required" = yes ] || [ -n "${CI:-}" ]; then exit 1; fi
exit 0
