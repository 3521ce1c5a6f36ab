#!/usr/bin/env bash
# Replicas (issue 13): a CPU-bound line-local stage, the split and join
# overhead (cat[N] between two cats) and a parallel sort, over 256 MiB,
# with N = 1, 2, 4, 8, against bash, GNU parallel --pipe --keep-order and
# sort --parallel. Runs are interleaved; medians are printed with their
# ratios. Every variant's output is checked against bash's first.
# Usage: bench/run/replicas.sh [RUNS] [PART...]   (default 5; parts: cpu cat sort)
source "$(dirname "$0")/common.sh"
runs=${1:-5}
shift || true
parts=${*:-cpu cat sort}
export LC_ALL=C
mib=${BENCH_MIB:-256}

text=$work/text.txt
(set +o pipefail; yes 'The quick brown fox jumps over the lazy dog 0123456789 pipes and bytes' | head -c $((mib << 20)) > "$text")

# A line-local awk doing arithmetic per field: about 80 MB/s per core here.
echo '{n=0; for(i=1;i<=NF;i++) n+=length($i)*i; print n}' > "$work/w.awk"
work_awk="awk -f $work/w.awk"

# flow NAME N [CLAUSES] COMMAND: a flow cat -> w[N] -> cat over $IN.
flow() {
	local name=$1 n=$2 clauses=$3 cmd=$4
	{
		echo 'param IN = /dev/null'
		echo 'stage src  = cat "$IN"'
		if [ "$n" = 0 ]; then
			echo "stage w    $clauses = $cmd"
		else
			echo "stage w[$n] $clauses = $cmd"
		fi
		echo 'stage sink = cat'
		echo 'src -> w -> sink'
	} > "$work/$name.ipcflow"
}

# bench LABEL...: each label is a variable holding a command; runs them
# interleaved $runs times and prints the medians.
declare -A cmdof
measure() {
	local label
	for label in "$@"; do : > "$work/t.$label"; done
	for ((i = 0; i < runs; i++)); do
		for label in "$@"; do
			time_us bash -c "${cmdof[$label]}" >> "$work/t.$label"
		done
	done
	for label in "$@"; do
		med[$label]=$(median < "$work/t.$label")
	done
}
declare -A med

same() { # same LABEL REF: outputs of two commands equal (sha256)
	local a b
	a=$(bash -c "${cmdof[$1]}" | sha256sum)
	b=$(bash -c "${cmdof[$2]}" | sha256sum)
	[ "$a" = "$b" ] || { echo "$1: output differs from $2" >&2; exit 1; }
}

if [[ " $parts " == *" cpu "* ]]; then
	cmdof[bash]="cat '$text' | $work_awk | cat"
	labels=(bash)
	for n in 1 2 4 8; do
		flow "awk$n" "$n" "" "$work_awk"
		cmdof[awk$n]="'$ipcflow' run '$work/awk$n.ipcflow' IN='$text'"
		labels+=("awk$n")
	done
	if command -v parallel > /dev/null; then
		cmdof[parallel]="cat '$text' | parallel --pipe --keep-order -j2 --block 4M $work_awk | cat"
		labels+=(parallel)
	fi
	for l in "${labels[@]}"; do [ "$l" = bash ] || same "$l" bash; done
	measure "${labels[@]}"
	echo "CPU-bound awk over $mib MiB, $runs runs each (interleaved), median wall:"
	for l in "${labels[@]}"; do
		awk -v l="$l" -v t="${med[$l]}" -v b="${med[awk1]}" 'BEGIN { printf "  %-9s %7.3f s  speed-up over [1] %.2fx\n", l, t / 1e6, b / t }'
	done
fi

if [[ " $parts " == *" cat "* ]]; then
	cmdof[bash]="cat '$text' | cat | cat"
	labels=(bash)
	for n in 1 2 4 8; do
		flow "cat$n" "$n" "" "cat"
		cmdof[cat$n]="'$ipcflow' run '$work/cat$n.ipcflow' IN='$text'"
		labels+=("cat$n")
	done
	flow "catu2" 2 "unordered" "cat"
	cmdof[catu2]="'$ipcflow' run '$work/catu2.ipcflow' IN='$text'"
	labels+=(catu2)
	for l in "${labels[@]}"; do [ "$l" = bash ] || [ "$l" = catu2 ] || same "$l" bash; done
	measure "${labels[@]}"
	echo "cat[N] between two cats over $mib MiB, $runs runs each, median wall and rate:"
	for l in "${labels[@]}"; do
		awk -v l="$l" -v t="${med[$l]}" -v m="$mib" 'BEGIN { printf "  %-9s %7.3f s  %6.0f MB/s\n", l, t / 1e6, m * 1048576 / t }'
	done
fi

if [[ " $parts " == *" sort "* ]]; then
	keys=$work/keys.txt
	awk -v n=$(( (mib << 20) / 33 )) 'BEGIN { srand(7); for (i = 0; i < n; i++) printf "%010d %010d payload\n", int(rand() * 2^31), i }' > "$keys"
	cmdof[sort]="sort '$keys'"
	cmdof[sortp2]="sort --parallel=2 '$keys'"
	labels=(sort sortp2)
	for n in 1 2 4 8; do
		flow "sort$n" "$n" "merge 'sort -m'" "sort"
		cmdof[sort$n]="'$ipcflow' run '$work/sort$n.ipcflow' IN='$keys'"
		labels+=("sort$n")
	done
	for l in "${labels[@]}"; do [ "$l" = sort ] || same "$l" sort; done
	measure "${labels[@]}"
	echo "sort over $mib MiB ($(wc -l < "$keys") lines), $runs runs each, median wall:"
	for l in "${labels[@]}"; do
		awk -v l="$l" -v t="${med[$l]}" -v b="${med[sort]}" 'BEGIN { printf "  %-9s %7.3f s  speed-up over sort %.2fx\n", l, t / 1e6, b / t }'
	done
fi
