#!/usr/bin/env bash
# Holding a restartable stage's edges costs nothing on the data path: the
# 5-stage pipeline over 256 MiB with `restart on-failure` on every stage
# against the same without, runs interleaved; prints both medians and
# their ratio (SPEC 14, issue 20: within 2%).
# Usage: bench/run/restart.sh [RUNS]   (default 7)
source "$(dirname "$0")/common.sh"
runs=${1:-7}

pipe5
sed 's/^stage \([a-z]*\) *=/stage \1 restart on-failure =/' "$work/pipe5.ipcflow" > "$work/pipe5r.ipcflow"
grep -c 'restart on-failure' "$work/pipe5r.ipcflow" | grep -qx 5 || { echo "restart.sh: the restart flow lacks its clauses" >&2; exit 1; }

a=$("$ipcflow" run "$work/pipe5.ipcflow")
b=$("$ipcflow" run "$work/pipe5r.ipcflow")
[ "$a" = "$b" ] || { echo "outputs differ: without $a, with restart $b" >&2; exit 1; }

: > "$work/plain" ; : > "$work/restart"
for ((i = 0; i < runs; i++)); do
	time_us "$ipcflow" run "$work/pipe5.ipcflow" >> "$work/plain"
	time_us "$ipcflow" run "$work/pipe5r.ipcflow" >> "$work/restart"
done
mp=$(median < "$work/plain"); mr=$(median < "$work/restart")
awk -v p="$mp" -v r="$mr" -v n="$runs" 'BEGIN {
	printf "5-stage pipeline, 256 MiB, %d runs each (interleaved)\n", n
	printf "  without restart median %.3f s\n  restart on-failure median %.3f s\n  ratio %.4f (with / without)\n", p / 1e6, r / 1e6, r / p }'
