#!/usr/bin/env bash
# Installs redis-server from Debian's packages when it is not on PATH.
set -euo pipefail
command -v redis-server >/dev/null && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v apt-get >/dev/null; then
  echo "redis-server is missing; install it with your package manager" >&2
  exit 1
fi
echo "installing redis-server (Debian package)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq redis-server >/dev/null
command -v redis-server >/dev/null
