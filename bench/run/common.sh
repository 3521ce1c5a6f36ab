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

# median: the median of the numbers on stdin.
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
