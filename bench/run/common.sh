# Shared by the bench/run scripts: build ipcflow once, time commands with
# bash's own clock (no extra process per measurement), take medians.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ipcflow-bench.XXXXXX")}
trap 'rm -rf "$work"' EXIT
ipcflow=$work/ipcflow
(cd "$root" && CGO_ENABLED=0 go build -o "$ipcflow" ./cmd/ipcflow)  # as README installs it

# now_us: microseconds since the epoch, from bash's EPOCHREALTIME.
now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }

# time_us CMD...: runs CMD (stdout to /dev/null) and prints its wall time in us.
time_us() {
	local a b
	a=$(now_us)
	"$@" >/dev/null
	b=$(now_us)
	echo $((b - a))
}

# pipe5: makes $work/input.txt (256 MiB of text) and $work/pipe5.ipcflow,
# the 5-stage pipeline over it, and sets $pipeline to the same in bash.
pipe5() {
	data=$work/input.txt
	# yes dies of SIGPIPE here, which pipefail would call a failure.
	(set +o pipefail; yes 'The quick brown fox jumps over the lazy dog 0123456789 pipes and bytes' | head -c $((256 << 20)) > "$data")
	cat > "$work/pipe5.ipcflow" <<FLOW
param IN = $data
stage read  = cat "\$IN"
stage upper = tr a-z A-Z
stage drop  = tr -d 0-9
stage keep  = grep -v ZZZZ
stage count = wc -c
read -> upper -> drop -> keep -> count
FLOW
	pipeline="cat '$data' | tr a-z A-Z | tr -d 0-9 | grep -v ZZZZ | wc -c"
}

# median: the median of the numbers on stdin.
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
