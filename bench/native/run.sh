#!/usr/bin/env bash
# Native ports against the C reference (ref.c), in one run: each round
# runs every row once, in turn, so that a burst of load elsewhere falls on
# all rows alike; each row's figure is the median of its rounds.
#
#   bench/native/run.sh [MiB] [ROUNDS]     (default 1024 MiB, 5 rounds)
#
# Rows (docs/native.md, "Speed"):
#   shm stream   gen -> sink over a 1 MiB ring, two native stages in one
#                ipcflow run, 64 KiB writes reserved in place, the reader
#                copying out; the reader's clock; vs ref ring
#   mq stream    the same over mq, 8 KiB messages (maxmsg 10); vs ref mq,
#                a raw C loop of 8192-byte messages
#   cats         wall time of `ipcflow run` moving the input file from
#                stage to stage over shm: two cats (bridged) against two
#                native stages (read(2) into the ring, write(2) out of it)
#   rtt          64 bytes there and back over two shm rings (go test
#                -bench RoundTrip: two native processes); vs ref rtt
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mib=${1:-1024}
rounds=${2:-5}
bytes=$((mib << 20))
tmp=$(mktemp -d)
input=/dev/shm/ipcflow-native-bench.$$
trap 'rm -rf "$tmp" "$input"' EXIT
cd "$root"
CGO_ENABLED=0 go build -o "$tmp/ipcflow" ./cmd/ipcflow
go build -o "$tmp/gport" ./internal/porttool
cc -O2 -std=c99 -o "$tmp/cport" native/c/testdata/porttool.c -I native/c
cc -O2 -o "$tmp/ref" "$here/ref.c" 2>/dev/null || cc -O2 -o "$tmp/ref" "$here/ref.c" -lrt
head -c "$bytes" /dev/zero | tr '\0' 'x' > "$input"

flow() { # flow NAME TEXT: a script in $tmp
	printf '%s\n' "$2" > "$tmp/$1.ipcflow"
}
for t in c g; do
	flow "shm-$t" "stage w native = $tmp/${t}port gen out $bytes 65536
stage r native = $tmp/${t}port sink in
w -[shm size=1MiB]-> r"
	flow "mq-$t" "stage w native = $tmp/${t}port gen out $((bytes / 4)) 8191
stage r native = $tmp/${t}port sink in
w -[mq maxmsg=10 msgsize=8192]-> r"
	flow "cats-$t" "stage w native = $tmp/${t}port copy - out < $input
stage r native = $tmp/${t}port copy in -
w -[shm]-> r"
done
flow cats-bridged "stage w = cat $input
stage r = cat
w -[shm]-> r"

rate() { awk '{printf "%.2f\n", $1 / $2}'; } # bytes ns -> GB/s
wall() { # wall FLOW: seconds of ipcflow run, output to /dev/null
	local s e
	s=$(date +%s%N)
	"$tmp/ipcflow" run "$tmp/$1.ipcflow" > /dev/null
	e=$(date +%s%N)
	awk -v ns=$((e - s)) 'BEGIN {printf "%.3f\n", ns / 1e9}'
}
declare -A got
add() { got[$1]+="$2 "; }
uptime
for r in $(seq "$rounds"); do
	add ref-ring "$("$tmp/ref" ring "$bytes")"
	add shm-c "$("$tmp/ipcflow" run "$tmp/shm-c.ipcflow" | rate)"
	add shm-g "$("$tmp/ipcflow" run "$tmp/shm-g.ipcflow" | rate)"
	add ref-mq "$("$tmp/ref" mq $((bytes / 4)))"
	add mq-c "$("$tmp/ipcflow" run "$tmp/mq-c.ipcflow" | rate)"
	add mq-g "$("$tmp/ipcflow" run "$tmp/mq-g.ipcflow" | rate)"
	add cats-bridged "$(wall cats-bridged)"
	add cats-c "$(wall cats-c)"
	add cats-g "$(wall cats-g)"
	add ref-rtt "$("$tmp/ref" rtt 20000)"
done
rtt=$(go test ./native -run XXX -bench RoundTrip -benchtime "${rounds}x" | awk '/ns\/rtt/ {print $1, $(NF-1)}')

med() { tr ' ' '\n' <<<"${got[$1]}" | grep . | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
echo
printf '%s MiB, %s rounds, medians (rounds: all figures)\n' "$mib" "$rounds"
printf '%-34s %10s   %s\n' ROW MEDIAN ROUNDS
row() { printf '%-34s %10s   %s\n' "$1" "$(med "$2") $3" "${got[$2]}"; }
row "C reference: ring (ref.c)" ref-ring GB/s
row "native shm, C -> C" shm-c GB/s
row "native shm, Go -> Go" shm-g GB/s
row "C reference: raw mq loop (ref.c)" ref-mq GB/s
row "native mq, C -> C" mq-c GB/s
row "native mq, Go -> Go" mq-g GB/s
row "cat -[shm]-> cat (bridged)" cats-bridged s
row "native -[shm]-> native, C" cats-c s
row "native -[shm]-> native, Go" cats-g s
awk -v r="$(med ref-rtt)" 'BEGIN {printf "%-34s %10.2f us\n", "C reference: 64-byte rtt (ref.c)", r / 1000}'
while read -r name ns; do
	awk -v n="$name" -v ns="$ns" 'BEGIN {sub(/BenchmarkRoundTrip\//, "", n); sub(/-[0-9]+$/, "", n); printf "%-34s %10.2f us\n", "native 64-byte rtt, " n, ns / 1000}'
done <<<"$rtt"
echo
awk -v b="$(med cats-bridged)" -v c="$(med cats-c)" -v g="$(med cats-g)" -v rr="$(med ref-ring)" -v sc="$(med shm-c)" -v sg="$(med shm-g)" \
	-v rm="$(med ref-mq)" -v mc="$(med mq-c)" -v mg="$(med mq-g)" 'BEGIN {
	printf "native vs bridged cats: C %.2fx, Go %.2fx (target >= 3)\n", b / c, b / g
	printf "native mq vs raw C mq:  C %.2fx, Go %.2fx (target >= 0.9)\n", mc / rm, mg / rm
	printf "native shm vs C ring:   C %.2fx, Go %.2fx\n", sc / rr, sg / rr
}'
