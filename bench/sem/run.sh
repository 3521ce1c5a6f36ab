#!/bin/sh
# Semaphore speed: ipcflow's Go semaphores (locks/bench_test.go) beside
# glibc's (bench.c), same work, runs interleaved so that both see the same
# machine load; median of RUNS runs; the ratio is Go / glibc (lower is
# better for Go; the target is at most 2).
#
#   bench/sem/run.sh            from the repository root (needs go, gcc)
#   RUNS=9 UNCONTENDED=10000000 PINGPONG=100000 bench/sem/run.sh
set -eu

RUNS=${RUNS:-5}
UNCONTENDED=${UNCONTENDED:-5000000}
PINGPONG=${PINGPONG:-50000}

root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

gcc -O2 -pthread -o "$tmp/cbench" "$root/bench/sem/bench.c"
(cd "$root" && go test -c -o "$tmp/locks.test" ./locks)

# go_ns BENCH N: ns/op of one Go benchmark run of N ops.
go_ns() {
	"$tmp/locks.test" -test.run '^$' -test.bench "^Benchmark$1\$" -test.benchtime "${2}x" |
		awk '$1 ~ /^Benchmark/ { print $3 }'
}
# c_ns MODE N: ns/op of one glibc run of N ops.
c_ns() {
	"$tmp/cbench" "$1" "$2" | awk '{ print $3 }'
}
median() {
	sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

for i in $(seq "$RUNS"); do
	go_ns Uncontended "$UNCONTENDED" >>"$tmp/go.uncontended"
	c_ns uncontended "$UNCONTENDED" >>"$tmp/c.uncontended"
	go_ns PingPong "$PINGPONG" >>"$tmp/go.pingpong"
	c_ns pingpong "$PINGPONG" >>"$tmp/c.pingpong"
done

glibc=$(ldd --version 2>/dev/null | head -n 1 | awk '{ print $NF }')
echo "named semaphores: ipcflow (Go) vs glibc ${glibc:-?}; median of $RUNS interleaved runs; $(nproc) CPUs"
printf '%-32s %12s %12s %9s\n' benchmark "Go ns/op" "glibc ns/op" Go/glibc
for b in uncontended pingpong; do
	g=$(median <"$tmp/go.$b")
	c=$(median <"$tmp/c.$b")
	case $b in
	uncontended) what="uncontended wait+post ($UNCONTENDED)" ;;
	pingpong) what="2-process ping-pong ($PINGPONG)" ;;
	esac
	printf '%-32s %12.1f %12.1f %9.2f\n' "$what" "$g" "$c" "$(echo "$g $c" | awk '{ print $1 / $2 }')"
done
