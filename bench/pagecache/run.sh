#!/usr/bin/env bash
# How fast a new file's pages fill (256 MiB in 1 MiB write(2)s, plain C),
# right after the previous file's pages were freed and after a pause long
# enough for this VM to hand free memory back to its host. The two take
# turns ROUNDS times; medians are printed. An mmap edge needs new pages for
# the whole stream, so this is its floor (docs/transports.md). Usage:
#   bench/pagecache/run.sh [DIR] [MiB] [PAUSE_S] [ROUNDS]
# DIR defaults to the system temp directory, where the run directory lives
# without XDG_RUNTIME_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-${TMPDIR:-/tmp}} mib=${2:-256} pause=${3:-4} rounds=${4:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -Wall -o "$tmp/write" "$here/write.c"
echo "$mib MiB into $dir ($(stat -f -c %T "$dir")), $rounds rounds"
for ((r = 0; r < rounds; r++)); do
	"$tmp/write" "$dir" "$mib" 0 1048576 | sed 's/^/at once     /'
	"$tmp/write" "$dir" "$mib" "$pause" 1048576 | sed "s/^/after ${pause}s  /"
done | tee "$tmp/all"
echo "medians:"
for when in "at once" "after ${pause}s"; do
	grep "^$when " "$tmp/all" | awk '{ print $(NF - 1), $(NF - 3) }' | sort -n |
		awk -v w="$when" '{ r[NR] = $1; t[NR] = $2 } END { m = int((NR + 1) / 2); printf "%-10s %6.0f ms  %5.2f GB/s\n", w, t[m], r[m] }'
done
