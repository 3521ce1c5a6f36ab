#!/usr/bin/env bash
# What --stats and --monitor cost (issue 11's targets: at most 2% wall on
# the 5-stage pipeline over 256 MiB, at most 1 ms of start-up): the same
# flow with and without --stats, runs interleaved; prints the medians,
# their ratio, and what the sampler said it cost. --monitor off a terminal
# is --stats; on one it adds a redraw 4 times a second (a few tens of µs).
# Usage: bench/stats/overhead.sh [RUNS]   (default 7; start-up gets 3x)
source "$(dirname "$0")/../run/common.sh"
runs=${1:-7}

pipe5
printf 'stage t = true\n' > "$work/true.ipcflow"

a=$("$ipcflow" run "$work/pipe5.ipcflow")
b=$("$ipcflow" run --stats "$work/pipe5.ipcflow" 2> "$work/table")
[ "$a" = "$b" ] || { echo "outputs differ: $a, with --stats $b" >&2; exit 1; }

: > "$work/plain"; : > "$work/stats"; : > "$work/plain1"; : > "$work/stats1"
for ((i = 0; i < runs; i++)); do
	time_us "$ipcflow" run "$work/pipe5.ipcflow" >> "$work/plain"
	time_us "$ipcflow" run --stats-json "$work/s.json" "$work/pipe5.ipcflow" >> "$work/stats"
done
for ((i = 0; i < 3 * runs; i++)); do
	time_us "$ipcflow" run "$work/true.ipcflow" >> "$work/plain1"
	time_us "$ipcflow" run --stats-json "$work/s1.json" "$work/true.ipcflow" >> "$work/stats1"
done
mp=$(median < "$work/plain"); ms=$(median < "$work/stats")
m1=$(median < "$work/plain1"); s1=$(median < "$work/stats1")
awk -v p="$mp" -v s="$ms" -v n="$runs" -v p1="$m1" -v s1="$s1" 'BEGIN {
	printf "5-stage pipeline, 256 MiB, %d runs each (interleaved)\n", n
	printf "  plain   median %.3f s\n  --stats median %.3f s\n  ratio   %.4f (with / without)\n", p / 1e6, s / 1e6, s / p
	printf "start-up, 1-stage `true` flow, %d runs each (interleaved)\n", 3 * n
	printf "  plain   median %.2f ms\n  --stats median %.2f ms\n  difference %.2f ms\n", p1 / 1e3, s1 / 1e3, (s1 - p1) / 1e3 }'
echo "the last pipeline run's own account:"
grep -E '^(bottleneck|measured):' "$work/table" | sed 's/^/  /'
