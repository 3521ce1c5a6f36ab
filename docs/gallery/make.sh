#!/usr/bin/env bash
# Regenerates the gallery: for every flow under examples/ (recursively),
# docs/gallery/NAME.dot (`ipcflow graph`, run from the repository's root),
# docs/gallery/NAME.svg (`dot -Tsvg` of that file) and docs/gallery.md
# (each flow's comment, picture, script and output). NAME is the path under
# examples/ without .ipcflow, / as -: native/shout.ipcflow is native-shout.
#
# Each SVG starts with a comment holding the sha256 of the .dot it was drawn
# from; cmd/ipcflow's TestGallery compares the .dot with what `ipcflow graph`
# prints now and the SVG's comment with the .dot, so a stale picture fails
# the tests without depending on Graphviz's version (its SVG output changes
# between versions; the dot text is ipcflow's own).
#
# Needs go and Graphviz's dot; gcc for the native examples' output.
# Usage, from anywhere: docs/gallery/make.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v dot >/dev/null || { echo "make.sh: Graphviz's dot is needed (apt-get install graphviz)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/ipcflow" ./cmd/ipcflow
ipcflow=$tmp/ipcflow

# The native examples' stages (examples/native/shout.ipcflow says how).
if command -v gcc >/dev/null; then
	mkdir -p examples/native/bin
	gcc -O2 -std=c99 -o examples/native/bin/upper examples/native/upper.c -I native/c
	go build -o examples/native/bin/numberlines ./examples/native/numberlines
fi

out=docs/gallery.md
{
	cat <<'HEAD'
# Gallery

Every flow in `examples/`, with its picture (`ipcflow graph FILE | dot
-Tsvg`), what it does, the script and what it prints. Each runs from any
directory: its data is found through `$IPCFLOW_SCRIPT_DIR`.

This page and the pictures in `docs/gallery/` are made by
`docs/gallery/make.sh`; run it after changing an example. The tests fail
when a picture is out of date or an example is not in `ipcflow fmt`'s
layout (`cmd/ipcflow/gallery_test.go`).
HEAD
	find examples -name '*.ipcflow' | LC_ALL=C sort | while read -r f; do
		rel=${f#examples/}
		name=${rel%.ipcflow}
		name=${name//\//-}
		"$ipcflow" graph "$f" > "docs/gallery/$name.dot"
		sum=$(sha256sum "docs/gallery/$name.dot" | cut -d' ' -f1)
		dot -Tsvg "docs/gallery/$name.dot" > "$tmp/svg"
		# The hash comment goes after the XML declaration, which must stay first.
		awk -v sum="$sum" 'NR == 1 {print; print "<!-- ipcflow-gallery dot sha256 " sum " -->"; next} {print}' "$tmp/svg" > "docs/gallery/$name.svg"

		printf '\n## %s\n\n' "$rel"
		# What it does: the comment at the top, less the #! and bash: lines.
		sed -n '2,/^[^#]/p' "$f" | grep '^#' | grep -v '^# bash: \|^# stderr: ' | sed 's/^# \{0,1\}//'
		printf '\n![%s](gallery/%s.svg)\n\n' "$rel" "$name"
		printf '[`examples/%s`](../examples/%s):\n\n```\n' "$rel" "$rel"
		cat "$f"
		printf '```\n\nOutput of `ipcflow run examples/%s`:\n\n```\n' "$rel"
		if "$ipcflow" run "$f" > "$tmp/out" 2> "$tmp/err"; then
			cat "$tmp/out"
		else
			echo "make.sh: ipcflow run $f failed:" >&2
			cat "$tmp/err" >&2
			exit 1
		fi
		printf '```\n'
	done
} > "$out.new"
mv "$out.new" "$out"
echo "make.sh: wrote $out and docs/gallery/" >&2
