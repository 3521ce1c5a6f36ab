#!/usr/bin/env bash
# Start-up cost: a 1-stage `true` flow against `bash -c true`, and a
# 5-stage `true -> true -> ...` flow against `bash -c 'true | true | ...'`,
# RUNS runs each, all four interleaved; prints the medians and the
# differences (issue 10's targets: +3 ms and +5 ms).
# Usage: bench/run/startup.sh [RUNS]   (default 21)
source "$(dirname "$0")/common.sh"
runs=${1:-21}

printf 'stage t = true\n' > "$work/true.ipcflow"
printf 'stage a = true\nstage b = true\nstage c = true\nstage d = true\nstage e = true\na -> b -> c -> d -> e\n' > "$work/true5.ipcflow"
"$ipcflow" run "$work/true.ipcflow"        # warm the page cache
"$ipcflow" run "$work/true5.ipcflow"
bash -c true
: > "$work/ipc1" ; : > "$work/bash1"; : > "$work/ipc5" ; : > "$work/bash5"
for ((i = 0; i < runs; i++)); do
	time_us "$ipcflow" run "$work/true.ipcflow" >> "$work/ipc1"
	time_us bash -c true >> "$work/bash1"
	time_us "$ipcflow" run "$work/true5.ipcflow" >> "$work/ipc5"
	time_us bash -c 'true | true | true | true | true' >> "$work/bash5"
done
i1=$(median < "$work/ipc1"); b1=$(median < "$work/bash1")
i5=$(median < "$work/ipc5"); b5=$(median < "$work/bash5")
awk -v i1="$i1" -v b1="$b1" -v i5="$i5" -v b5="$b5" -v n="$runs" 'BEGIN {
	printf "start-up, %d runs each (interleaved)\n", n
	printf "  ipcflow run (1 stage: true)    median %.2f ms\n  bash -c true                    median %.2f ms\n  difference                      %.2f ms\n", i1 / 1e3, b1 / 1e3, (i1 - b1) / 1e3
	printf "  ipcflow run (5 stages: true)   median %.2f ms\n  bash -c true|true|true|true|true median %.2f ms\n  difference                      %.2f ms\n", i5 / 1e3, b5 / 1e3, (i5 - b5) / 1e3 }'
