#!/usr/bin/env bash
# Reference figures in C, then ipcflow's own, one after the other, so both
# are read under the same load. Usage: bench/transports/run.sh [MiB]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mib=${1:-256}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -Wall -o "$tmp/ref" "$here/ref.c" -lrt
(cd "$here/../.." && CGO_ENABLED=0 go build -o "$tmp/ipcflow" ./cmd/ipcflow)  # as README installs it
uptime
"$tmp/ref" "$mib"
echo
"$tmp/ipcflow" bench --size "${mib}MiB"
