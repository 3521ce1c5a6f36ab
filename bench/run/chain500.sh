#!/usr/bin/env bash
# A chain of 500 `cat` stages moving 100 MiB: wall time (and bash's for the
# same pipeline), ipcflow's own peak RSS (VmHWM sampled from /proc while it
# runs; GNU time's figure is the largest of ipcflow and the children it
# reaped, so it is printed for reference only), and that the bytes arrive
# intact.
# Usage: bench/run/chain500.sh [STAGES]   (default 500)
source "$(dirname "$0")/common.sh"
n=${1:-500}

flow=$work/chain.ipcflow
{
	echo 'stage src = head -c 104857600 /dev/zero'
	for ((i = 1; i <= n; i++)); do echo "stage c$i = cat"; done
	echo 'stage sum = cksum'
	printf 'src'
	for ((i = 1; i <= n; i++)); do printf ' -> c%d' "$i"; done
	echo ' -> sum'
} > "$flow"

want=$(head -c 104857600 /dev/zero | cksum)
a=$(now_us)
got=$(/usr/bin/time -f '%M' -o "$work/rss" "$ipcflow" run "$flow")
b=$(now_us)
[ "$got" = "$want" ] || { echo "chain output differs: $got, want $want" >&2; exit 1; }

# ipcflow's own peak: sample its VmHWM while a second run goes.
"$ipcflow" run "$flow" > /dev/null &
pid=$!
hwm=0
while kill -0 "$pid" 2>/dev/null; do
	v=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
	[ -n "$v" ] && [ "$v" -gt "$hwm" ] && hwm=$v
	sleep 0.02
done
wait "$pid"
# bash running the same chain, for scale.
pipeline="head -c 104857600 /dev/zero"
for ((i = 1; i <= n; i++)); do pipeline+=" | cat"; done
pipeline+=" | cksum"
c=$(now_us)
got=$(bash -c "$pipeline")
d=$(now_us)
[ "$got" = "$want" ] || { echo "bash chain output differs: $got" >&2; exit 1; }

awk -v t="$((b - a))" -v bt="$((d - c))" -v r="$(cat "$work/rss")" -v h="$hwm" -v n="$n" 'BEGIN {
	printf "chain of %d cat stages, 100 MiB: %.2f s (bash: %.2f s), exit 0, output intact\n", n, t / 1e6, bt / 1e6
	printf "  ipcflow peak RSS (VmHWM, sampled) %.1f MiB\n", h / 1024
	printf "  GNU time max RSS (largest of ipcflow and its stages) %.1f MiB\n", r / 1024 }'
