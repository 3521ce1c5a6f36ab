#!/usr/bin/env bash
# A 5-stage text pipeline over 256 MiB: ipcflow against `bash -c` running
# the same pipeline, runs interleaved; prints both medians and their ratio.
# Usage: bench/run/pipeline.sh [RUNS]   (default 7)
source "$(dirname "$0")/common.sh"
runs=${1:-7}

pipe5

# Same answer first.
a=$("$ipcflow" run "$work/pipe5.ipcflow")
b=$(bash -c "$pipeline")
[ "$a" = "$b" ] || { echo "outputs differ: ipcflow $a, bash $b" >&2; exit 1; }

: > "$work/ipc" ; : > "$work/bash"
for ((i = 0; i < runs; i++)); do
	time_us "$ipcflow" run "$work/pipe5.ipcflow" >> "$work/ipc"
	time_us bash -c "$pipeline" >> "$work/bash"
done
mi=$(median < "$work/ipc"); mb=$(median < "$work/bash")
awk -v i="$mi" -v b="$mb" -v n="$runs" 'BEGIN {
	printf "5-stage pipeline, 256 MiB, %d runs each (interleaved)\n", n
	printf "  ipcflow median %.3f s\n  bash    median %.3f s\n  ratio   %.4f (ipcflow / bash)\n", i / 1e6, b / 1e6, i / b }'
