#!/usr/bin/env bash
# The side-by-side benchmark of issue 5: s3fleet against s5cmd, the
# aws-sdk-go-v2 manager, s3transfer, boto3, rclone and a plain loop, in
# every direction: downloads, uploads, copies across endpoints, server-side.
#
#   bench/suite/run.sh            # full: every direction, contender, workload and network, HTTP and HTTPS (about 55 min on 2 cores)
#   bench/suite/run.sh quick      # 1 GiB download, s3fleet 2 workers vs s5cmd, loopback and HTTPS (under 3 min)
#   bench/suite/run.sh full -directions upload,copy,server-copy   # the uploads and copies alone
#   bench/suite/run.sh full -runs 3 -cells 'big/*/scratch'        # flags after the mode go to the suite (see main.go)
#   bench/suite/run.sh scale      # scale-out: 1, 2, 4, 8 worker hosts (network namespaces, root), bench/results-scale.md (about 9 min)
#
# Installs what it needs on a fresh Debian machine, once: Debian packages
# (redis-server, python3-boto3, python3-s3transfer, rclone), versitygw (via
# `make tools`) and s5cmd built from the Go module cache, both into the
# repository's ignored .bin/. The emulated WAN's proxy (wanproxy/) is the
# suite's own, built by the suite like its other helpers.
set -euo pipefail

S5CMD_VERSION=v2.3.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$root/.bin"
mode="full"
case "${1:-}" in
  quick|full|scale) mode="$1"; shift ;;
  -h|--help|help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
GO="${GO:-go}"
mkdir -p "$bin"
if [ "$mode" = scale ] && [ "$(id -u)" -ne 0 ]; then
  echo "run.sh scale makes network namespaces and shapes their links: run it as root" >&2
  exit 1
fi

# Debian packages, installed only when one is missing; the scale-out
# measurement runs s3fleet alone.
packages=(redis-server python3-boto3 python3-s3transfer rclone)
[ "$mode" = scale ] && packages=(redis-server)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# versitygw, pinned by the Makefile.
if [ -z "${S3FLEET_VERSITYGW:-}" ] && [ ! -x "$bin/versitygw" ]; then
  make -C "$root" --no-print-directory tools
fi
versitygw="${S3FLEET_VERSITYGW:-$bin/versitygw}"
versitygw_version="$(sed -n 's/^VERSITYGW_VERSION := //p' "$root/Makefile")"

cd "$here"
if [ "$mode" = scale ]; then
  exec "$GO" run . -mode scale -versitygw "$versitygw" -versions "versitygw=$versitygw_version" "$@"
fi

# s5cmd: the module proxy refuses `go install` for it (its go.mod has
# replace directives), so build it from the module cache.
s5cmd="$bin/s5cmd-$S5CMD_VERSION"
if [ ! -x "$s5cmd" ]; then
  echo "building s5cmd $S5CMD_VERSION (once, cached in .bin/)"
  dir="$(cd / && "$GO" mod download -json "github.com/peak/s5cmd/v2@$S5CMD_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] || { echo "go mod download of s5cmd reported no directory" >&2; exit 1; }
  (cd "$dir" && GOFLAGS=-buildvcs=false "$GO" build -mod=mod -o "$s5cmd.tmp" .)
  mv "$s5cmd.tmp" "$s5cmd"
fi

cd "$here"
exec "$GO" run . -mode "$mode" \
  -s5cmd "$s5cmd" -versitygw "$versitygw" -python /usr/bin/python3 \
  -versions "s5cmd=$S5CMD_VERSION,versitygw=$versitygw_version" "$@"
