#!/usr/bin/env bash
# A/B comparison of two builds of jeton on rows of the load benchmark.
#
#   bash bench/ab.sh [-n ROUNDS] [-r ROWS] A B
#
# A and B are git revisions of this repository (each built in a temporary
# worktree) or paths to jeton binaries. Each round runs bench/run.sh once
# with A and once with B (JETON_BIN), alternating which goes first, so that
# a machine that slows down or speeds up during the comparison favours
# neither. ROWS (default create,cc_opaque,refresh) is run.sh's ROWS; every
# other setting of run.sh (DURATION, KEYS, CONNECTIONS, ...) passes through
# the environment. ROUNDS defaults to 3.
#
# It prints, per row, the ratio to the baseline of each run, the median of
# each side, and in how many rounds B's ratio beat A's. On these shared
# machines one run of a row varies by 10-20 %: a difference that does not
# hold in most rounds is noise. The raw output of each run is kept in
# bench/out/ab/.
#
# Exit status: 0 when every run completed, 1 otherwise.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"
AB_DIR="$OUT_DIR/ab"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

rounds=3
rows=create,cc_opaque,refresh
while getopts 'n:r:' opt; do
	case $opt in
	n) rounds=$OPTARG ;;
	r) rows=$OPTARG ;;
	*) die "usage: bash bench/ab.sh [-n ROUNDS] [-r ROWS] A B" ;;
	esac
done
shift $((OPTIND - 1))
(($# == 2)) || die "usage: bash bench/ab.sh [-n ROUNDS] [-r ROWS] A B"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$rounds'"

mkdir -p "$AB_DIR"
rm -f "$AB_DIR"/*.txt
git -C "$ROOT" worktree prune # what an interrupted earlier run left registered
tmp=$(mktemp -d)

# build SIDE SPEC: the path of a jeton binary for SPEC, a file or a revision.
build() {
	local side=$1 spec=$2 rev
	if [[ -f $spec && -x $spec ]]; then
		(cd "$(dirname "$spec")" && echo "$PWD/$(basename "$spec")")
		return
	fi
	rev=$(git -C "$ROOT" rev-parse --verify --quiet "$spec^{commit}") ||
		die "$spec is neither an executable file nor a revision of $ROOT"
	log "building $side: $spec ($rev)"
	git -C "$ROOT" worktree add --quiet --detach "$tmp/src-$side" "$rev" >&2
	(cd "$tmp/src-$side" && CGO_ENABLED=0 go build -o "$tmp/jeton-$side" ./cmd/jeton) >&2 ||
		die "building $spec failed"
	git -C "$ROOT" worktree remove --force "$tmp/src-$side" >&2
	echo "$tmp/jeton-$side"
}
declare -A bin
bin[A]=$(build A "$1")
bin[B]=$(build B "$2")

# One line per run and row: SIDE ROUND ROW REQ_PER_S RATIO, spaces in ROW
# written as "~".
results="$tmp/results.txt"
: >"$results"
failed=0
for ((round = 1; round <= rounds; round++)); do
	order=(A B)
	((round % 2 == 0)) && order=(B A)
	for side in "${order[@]}"; do
		out="$AB_DIR/round$round-$side.txt"
		log "round $round/$rounds: $side (${bin[$side]}), rows $rows"
		if ! JETON_BIN=${bin[$side]} ROWS=$rows bash "$BENCH_DIR/run.sh" >"$out" 2>&1; then
			log "run failed; see $out"
			failed=1
			continue
		fi
		# The table rows: | (x) label | req/s | p50 | p99 | ratio | target | result |
		# Ratios are recomputed from req/s, to three places.
		awk -F' *[|] *' -v side="$side" -v round="$round" '
			$2 ~ /^\(a\)/ { base = $3 }
			$2 ~ /^\([b-h]\)/ && base > 0 { label = $2; gsub(/ /, "~", label); printf "%s %s %s %s %.3f\n", side, round, label, $3, $3 / base }
		' "$out" >>"$results"
	done
done

printf '\nA: %s (%s)\nB: %s (%s)\n%s rounds, %s\n\n' "$1" "${bin[A]}" "$2" "${bin[B]}" "$rounds" "${DURATION:-15s} per row"
awk '
	{ row[$3] = 1; ratio[$1, $3, $2] = $5; rps[$1, $3, $2] = $4; if ($2 > n) n = $2 }
	function median(side, r,    v, k, i, j, t) {
		k = 0
		for (i = 1; i <= n; i++) if ((side, r, i) in ratio) v[++k] = ratio[side, r, i]
		for (i = 2; i <= k; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
		if (k == 0) return "-"
		return sprintf("%.3f", k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2)
	}
	END {
		printf "| row | A ratios | B ratios | A median | B median | B ahead |\n|---|---|---|---|---|---|\n"
		m = 0
		for (r in row) names[++m] = r
		for (i = 2; i <= m; i++) for (j = i; j > 1 && names[j - 1] > names[j]; j--) { t = names[j]; names[j] = names[j - 1]; names[j - 1] = t }
		for (x = 1; x <= m; x++) {
			r = names[x]
			a = ""; b = ""; won = 0; both = 0
			for (i = 1; i <= n; i++) {
				a = a (i > 1 ? " " : "") (((("A", r, i) in ratio)) ? ratio["A", r, i] : "-")
				b = b (i > 1 ? " " : "") (((("B", r, i) in ratio)) ? ratio["B", r, i] : "-")
				if ((("A", r, i) in ratio) && (("B", r, i) in ratio)) {
					both++
					if (ratio["B", r, i] > ratio["A", r, i]) won++
				}
			}
			label = r; gsub(/~/, " ", label)
			printf "| %s | %s | %s | %s | %s | %d of %d |\n", label, a, b, median("A", r), median("B", r), won, both
		}
	}
' "$results"
exit "$failed"
