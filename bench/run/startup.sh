#!/usr/bin/env bash
# Start-up cost: a 1-stage `true` flow against `bash -c true`, 21 runs each
# interleaved; prints both medians and the difference.
# Usage: bench/run/startup.sh [RUNS]   (default 21)
source "$(dirname "$0")/common.sh"
runs=${1:-21}

printf 'stage t = true\n' > "$work/true.ipcflow"
"$ipcflow" run "$work/true.ipcflow"        # warm the page cache
bash -c true
: > "$work/ipc" ; : > "$work/bash"
for ((i = 0; i < runs; i++)); do
	time_us "$ipcflow" run "$work/true.ipcflow" >> "$work/ipc"
	time_us bash -c true >> "$work/bash"
done
mi=$(median < "$work/ipc"); mb=$(median < "$work/bash")
awk -v i="$mi" -v b="$mb" -v n="$runs" 'BEGIN {
	printf "start-up, %d runs each (interleaved)\n", n
	printf "  ipcflow run (1 stage: true) median %.2f ms\n  bash -c true                 median %.2f ms\n  difference                   %.2f ms\n", i / 1e3, b / 1e3, (i - b) / 1e3 }'
