#!/usr/bin/env bash
# Load benchmark for Jeton. See bench/README.md.
#
# Builds jeton and the helpers into a temporary directory, starts the baseline
# server and `jeton serve` on a temporary SQLite store (both on 127.0.0.1),
# creates an API and $KEYS keys, two OAuth clients (opaque and JWT ES256
# access tokens), a user, $ACCESS_TOKENS access tokens (client_credentials)
# and $REFRESH_TOKENS refresh tokens (each from its own device-flow grant),
# then runs wrk with identical settings against
#   (a) the baseline server      (the ceiling of this machine)
#   (b) POST /v1/verify          (random valid keys)
#   (c) POST /oauth2/introspect  (random valid keys)
#   (d) POST /v1/tokens          (durable creates)
#   (e) POST /oauth2/token       (client_credentials, opaque access tokens)
#   (f) POST /oauth2/token       (client_credentials, JWT ES256)
#   (g) POST /oauth2/introspect  (random opaque access tokens)
#   (h) POST /oauth2/token       (refresh_token rotation, opaque client)
# and prints req/s, p50, p99 and each as a ratio of (a), against the targets.
# The same table goes to bench/out/results.md, with the raw wrk output and the
# server's log next to it.
#
# Environment (all optional):
#   DURATION=15s     wrk -d for each run
#   CONNECTIONS=32   wrk -c
#   THREADS=2        wrk -t
#   KEYS=10000       keys created before the runs
#   ACCESS_TOKENS=10000  opaque access tokens obtained before the runs, for (g)
#   REFRESH_TOKENS=8*CONNECTIONS  refresh tokens (grants) seeded for (h); at
#                    least CONNECTIONS+THREADS (each thread needs one per
#                    connection, and wrk's script check uses up one)
#   SEED_WORKERS=32  concurrent creates while seeding
#   WRK_TIMEOUT=2s   wrk --timeout (slower answers count as errors)
#   STRICT=1         also exit non-zero when a run is BELOW its target
#   JETON_BIN=PATH   use this jeton binary instead of building ./cmd/jeton
#   PROFILE=1        serve with bench/profserve (the same server, built from
#                    this tree) and write a CPU profile of each jeton run to
#                    bench/out/cpu-NAME.pprof (`go tool pprof -top FILE`);
#                    profiling costs a few per cent, so do not quote those
#                    figures as results; PROFILE=trace also writes a runtime
#                    execution trace of each run to bench/out/trace-NAME.out
#                    (large: use a short DURATION)
#   ROWS=create,refresh  only these rows (and the baseline), for quick checks
#   POSTGRES=DSN     serve from PostgreSQL instead of a temporary SQLite file:
#                    DSN names an existing database (e.g.
#                    postgres://postgres@127.0.0.1:5432/test?sslmode=disable);
#                    the run uses a fresh schema in it, dropped at the end
#                    (needs psql). JETON_MASTER_KEY is generated if unset.
#
# Exit status: 0 when every run completed without failed requests (whether or
# not the targets were met, unless STRICT=1), 1 on any failure, including
# failed requests during a run, which make its figures meaningless.
set -euo pipefail

DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
KEYS=${KEYS:-10000}
ACCESS_TOKENS=${ACCESS_TOKENS:-10000}
SEED_WORKERS=${SEED_WORKERS:-32}
WRK_TIMEOUT=${WRK_TIMEOUT:-2s}
STRICT=${STRICT:-0}
JETON_BIN=${JETON_BIN:-}
PROFILE=${PROFILE:-0}
case $PROFILE in
0 | 1 | trace) ;;
*) echo "run.sh: PROFILE must be 0, 1 or trace, not '$PROFILE'" >&2 && exit 1 ;;
esac
ROWS=${ROWS:-}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] && REFRESH_TOKENS=${REFRESH_TOKENS:-$((CONNECTIONS * 8))}
REFRESH_TOKENS=${REFRESH_TOKENS:-256}
for v in CONNECTIONS THREADS KEYS ACCESS_TOKENS REFRESH_TOKENS SEED_WORKERS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
dur_s=$(seconds "$DURATION" 2>/dev/null) && [[ $dur_s =~ ^[1-9][0-9]*$ ]] ||
	die "DURATION must look like 15s, 2m or 15, not '$DURATION'"
((CONNECTIONS >= THREADS)) || die "CONNECTIONS ($CONNECTIONS) must be >= THREADS ($THREADS)"
# Every wrk thread gets REFRESH_TOKENS/THREADS tokens and needs one per
# connection plus one (wrk's check of the script spends one on thread 1).
((REFRESH_TOKENS / THREADS >= (CONNECTIONS + THREADS - 1) / THREADS + 1)) ||
	die "REFRESH_TOKENS ($REFRESH_TOKENS) is too few for $CONNECTIONS connections on $THREADS threads"

# --- build ------------------------------------------------------------------

mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/cpu-*.pprof
tmp=$(mktemp -d "${TMPDIR:-/tmp}/jeton-bench.XXXXXX")
log "building into $tmp"
(
	cd "$ROOT"
	if [[ -n $JETON_BIN ]]; then
		cp "$JETON_BIN" "$tmp/jeton"
	else
		go build -o "$tmp/jeton" ./cmd/jeton
	fi
	go build -o "$tmp/baseline" ./bench/baseline
	go build -o "$tmp/seed" ./bench/seed
	if [[ $PROFILE != 0 ]]; then
		go build -o "$tmp/profserve" ./bench/profserve
	fi
) || die "build failed"

base_port=$(pick_port) || die "no free port"
jeton_port=$(pick_port "$base_port") || die "no free port"
db="$tmp/jeton.db"
store_desc="SQLite (temporary file)"
if [[ -n ${POSTGRES:-} ]]; then
	[[ $POSTGRES == postgres://* || $POSTGRES == postgresql://* ]] || die "POSTGRES must be a postgres:// DSN"
	command -v psql >/dev/null || die "POSTGRES needs psql (Debian: postgresql-client)"
	schema="jeton_bench_$$_$RANDOM"
	psql -q -v ON_ERROR_STOP=1 "$POSTGRES" -c "CREATE SCHEMA $schema" >/dev/null ||
		die "could not create schema $schema in POSTGRES"
	drop_schema() { psql -q "$POSTGRES" -c "SET client_min_messages = warning" -c "DROP SCHEMA $schema CASCADE" >/dev/null; }
	at_exit+=(drop_schema)
	# pgx takes search_path as a run-time parameter from the DSN.
	if [[ $POSTGRES == *\?* ]]; then db="$POSTGRES&search_path=$schema"; else db="$POSTGRES?search_path=$schema"; fi
	if [[ -z ${JETON_MASTER_KEY:-} ]]; then
		JETON_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
		export JETON_MASTER_KEY
	fi
	store_desc="PostgreSQL (schema $schema, dropped at the end)"
fi

log "starting baseline on 127.0.0.1:$base_port"
"$tmp/baseline" -addr "127.0.0.1:$base_port" >"$tmp/baseline.log" 2>&1 &
pids+=("$!")
wait_healthy baseline "$!" "$base_port"

log "bootstrapping the store"
JETON_TOKEN=$(timeout 60 "$tmp/jeton" admin bootstrap --db "$db" 2>>"$tmp/jeton.log") ||
	die "jeton admin bootstrap failed (log: $OUT_DIR/jeton.log)"
JETON_TOKEN=$(printf '%s' "$JETON_TOKEN" | tr -d '[:space:]')
[[ -n $JETON_TOKEN ]] || die "jeton admin bootstrap printed no token"
export JETON_TOKEN

if [[ $PROFILE != 0 ]]; then
	log "starting bench/profserve (jeton serve with CPU profiles) on 127.0.0.1:$jeton_port"
	profserve_flags=()
	[[ $PROFILE == trace ]] && profserve_flags+=(-trace)
	"$tmp/profserve" -addr "127.0.0.1:$jeton_port" -db "$db" -profile-dir "$tmp" "${profserve_flags[@]}" >>"$tmp/jeton.log" 2>&1 &
else
	log "starting jeton serve on 127.0.0.1:$jeton_port"
	"$tmp/jeton" serve --addr "127.0.0.1:$jeton_port" --db "$db" >>"$tmp/jeton.log" 2>&1 &
fi
server_pid=$!
pids+=("$server_pid")
wait_healthy jeton "$server_pid" "$jeton_port"

# --- seed -------------------------------------------------------------------

log "seeding $KEYS keys, $ACCESS_TOKENS access tokens and $REFRESH_TOKENS refresh tokens"
seed_out="$tmp/seed.txt"
run_bg 900 "$tmp/seed" -server "http://127.0.0.1:$jeton_port" -token "$JETON_TOKEN" \
	-n "$KEYS" -c "$SEED_WORKERS" -out "$tmp" \
	-oauth -access "$ACCESS_TOKENS" -refresh "$REFRESH_TOKENS" >"$seed_out" ||
	{ cat "$seed_out" >&2; die "seeding failed"; }
cat "$seed_out" >&2
seed_summary=$(grep 'created [0-9]* keys' "$seed_out" | sed 's/^seed: //' || true)
seed_refresh=$(grep 'refresh tokens through' "$seed_out" | sed 's/^seed: //' || true)
seed_access=$(grep 'opaque access tokens by' "$seed_out" | sed 's/^seed: //' || true)

export BENCH_DIR KEYS_FILE="$tmp/keys.txt" API_ID_FILE="$tmp/api_id.txt"
export ACCESS_TOKENS_FILE="$tmp/access_tokens.txt" REFRESH_TOKENS_FILE="$tmp/refresh_tokens.txt"
export OAUTH_OPAQUE_BASIC_FILE="$tmp/oauth_opaque_basic.txt" OAUTH_JWT_BASIC_FILE="$tmp/oauth_jwt_basic.txt"
export BENCH_THREADS=$THREADS

# --- wrk runs ---------------------------------------------------------------

names=(baseline verify introspect create cc_opaque cc_jwt introspect_access refresh)
if [[ -n $ROWS ]]; then
	# Only the named rows, in the usual order; the baseline always runs,
	# since every ratio is to it.
	picked=(baseline)
	for name in "${names[@]:1}"; do
		[[ " ${ROWS//,/ } " == *" $name "* ]] && picked+=("$name")
	done
	for want in ${ROWS//,/ }; do
		[[ " ${names[*]} " == *" $want "* ]] || die "ROWS: unknown row '$want' (rows: ${names[*]})"
	done
	names=("${picked[@]}")
fi
declare -A url=(
	[baseline]="http://127.0.0.1:$base_port/v1/verify"
	[verify]="http://127.0.0.1:$jeton_port/v1/verify"
	[introspect]="http://127.0.0.1:$jeton_port/oauth2/introspect"
	[create]="http://127.0.0.1:$jeton_port/v1/tokens"
	[cc_opaque]="http://127.0.0.1:$jeton_port/oauth2/token"
	[cc_jwt]="http://127.0.0.1:$jeton_port/oauth2/token"
	[introspect_access]="http://127.0.0.1:$jeton_port/oauth2/introspect"
	[refresh]="http://127.0.0.1:$jeton_port/oauth2/token"
)
declare -A label=(
	[baseline]="(a) baseline net/http"
	[verify]="(b) POST /v1/verify"
	[introspect]="(c) POST /oauth2/introspect"
	[create]="(d) POST /v1/tokens"
	[cc_opaque]="(e) client_credentials, opaque"
	[cc_jwt]="(f) client_credentials, JWT ES256"
	[introspect_access]="(g) introspect access tokens"
	[refresh]="(h) refresh_token rotation"
)
declare -A target=([baseline]="" [verify]=0.70 [introspect]=0.60 [create]=0.15
	[cc_opaque]=0.25 [cc_jwt]=0.40 [introspect_access]=0.60 [refresh]=0.20)
declare -A rps p50 p99 failed

# field NAME LINE: the value of NAME=... in a BENCH line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

problems=()
for name in "${names[@]}"; do
	out="$OUT_DIR/wrk-$name.txt"
	log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION: ${label[$name]} (${url[$name]})"
	profiling=0
	if [[ $PROFILE != 0 && $name != baseline ]]; then
		rm -f "$tmp/current.done"
		kill -USR1 "$server_pid" && profiling=1
	fi
	rc=0
	run_bg $((dur_s + 60)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" \
		--timeout "$WRK_TIMEOUT" --latency -s "$BENCH_DIR/$name.lua" "${url[$name]}" \
		>"$out" 2>&1 || rc=$?
	if ((profiling)); then
		kill -USR2 "$server_pid" || true
		for ((i = 0; i < 100; i++)); do
			[[ -f $tmp/current.done ]] && break
			sleep 0.1
		done
		if [[ -f $tmp/current.done ]]; then
			mv "$tmp/current.pprof" "$OUT_DIR/cpu-$name.pprof"
			log "CPU profile: $OUT_DIR/cpu-$name.pprof"
			if [[ -f $tmp/current.trace ]]; then
				mv "$tmp/current.trace" "$OUT_DIR/trace-$name.out"
				log "execution trace: $OUT_DIR/trace-$name.out"
			fi
		else
			log "no CPU profile for $name (see $OUT_DIR/jeton.log)"
		fi
	fi
	sed 's/^/    /' "$out" >&2
	line=$(grep '^BENCH ' "$out" | tail -n 1 || true)
	if ((rc != 0)) || [[ -z $line ]]; then
		die "wrk failed for $name (status $rc); output in $out"
	fi
	rps[$name]=$(field rps "$line")
	p50[$name]=$(field p50_us "$line")
	p99[$name]=$(field p99_us "$line")
	n_bad=$(field non2xx "$line")
	n_odd=$(field unexpected "$line")
	n_sock=0
	for f in connect read write timeout; do
		n_sock=$((n_sock + $(field "$f" "$line")))
	done
	# wrk's own count of 4xx/5xx, for the record.
	n_wrk=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$out")
	n_wrk=${n_wrk:-0}
	failed[$name]=$((n_bad + n_odd + n_sock))
	# refresh.lua's own counts: invalid_grant answers (a reused or unknown
	# refresh token) and requests sent without one (a thread's queue ran
	# dry); both are among the non-2xx already.
	n_reuse=$(field invalid_grant "$line")
	n_starved=$(field starved "$line")
	detail=""
	[[ -n $n_reuse ]] && detail+=", of which ${n_reuse} invalid_grant"
	[[ -n $n_starved ]] && detail+=", ${n_starved} sent without a refresh token (queue empty)"
	if ((failed[$name] > 0 || n_wrk > 0)); then
		problems+=("${label[$name]}: ${n_bad} non-2xx${detail}, ${n_odd} 2xx with an unexpected body, ${n_sock} socket errors/timeouts (wrk: ${n_wrk} non-2xx or 3xx) out of $(field requests "$line") requests; see $out")
		failed[$name]=$((failed[$name] > n_wrk ? failed[$name] : n_wrk))
	fi
	if [[ -n $server_pid ]] && ! kill -0 "$server_pid" 2>/dev/null; then
		die "jeton serve died during the $name run (log: $OUT_DIR/jeton.log)"
	fi
	sleep 1
done

# --- report -----------------------------------------------------------------

ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }

below=0
table() {
	local name ratio result tgt
	printf '| run | req/s | p50 | p99 | vs (a) | target | result |\n'
	printf '|---|---:|---:|---:|---:|---:|---|\n'
	for name in "${names[@]}"; do
		ratio=$(awk -v a="${rps[$name]}" -v b="${rps[baseline]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
		tgt=${target[$name]}
		if ((failed[$name] > 0)); then
			result="INVALID (${failed[$name]} failed)"
		elif [[ -z $tgt ]]; then
			result="-"
		elif awk -v r="${rps[$name]}" -v b="${rps[baseline]}" -v t="$tgt" 'BEGIN { exit !(r / b >= t) }'; then
			result="PASS"
		else
			result="BELOW"
		fi
		tgt=${tgt:+>= $tgt}
		printf '| %s | %.0f | %s | %s | %s | %s | %s |\n' "${label[$name]}" "${rps[$name]}" \
			"$(ms "${p50[$name]}")" "$(ms "${p99[$name]}")" "$ratio" "${tgt:--}" "$result"
	done
}
tbl=$(table)
if grep -q '| BELOW |$' <<<"$tbl"; then
	below=1
fi

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null || true) ]]; then
	commit+=" (dirty)"
fi
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
# wrk -v prints its version and usage, and exits 1.
wrk_version=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $2 }')
go_version=$(go version | awk '{ print $3 }')

{
	printf '# Jeton load benchmark results\n\n'
	printf -- '- date: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf -- '- commit: %s\n' "$commit"
	printf -- '- machine: %s CPUs (%s), %s\n' "$(nproc)" "${cpu:-unknown CPU}" "$(uname -sm)"
	printf -- '- %s, wrk %s\n' "$go_version" "$wrk_version"
	printf -- '- wrk: -t%s -c%s -d%s --timeout %s, same settings for every run\n' \
		"$THREADS" "$CONNECTIONS" "$DURATION" "$WRK_TIMEOUT"
	if [[ $PROFILE != 0 ]]; then
		printf -- '- PROFILE=%s: served by bench/profserve with a CPU profile of each jeton run (bench/out/cpu-*.pprof); profiling slows the server a little\n' "$PROFILE"
	fi
	printf -- '- store: %s; %s keys seeded: %s\n' "$store_desc" "$KEYS" "${seed_summary:-?}"
	printf -- '- OAuth seeding: %s; %s\n' "${seed_refresh:-?}" "${seed_access:-?}"
	printf '\n%s\n' "$tbl"
	if ((${#problems[@]} > 0)); then
		printf '\n**Failed requests — the figures of these runs are meaningless:**\n\n'
		printf -- '- %s\n' "${problems[@]}"
	fi
} >"$OUT_DIR/results.md"

printf '\n%s\n\n' "$tbl"
if ((${#problems[@]} > 0)); then
	printf 'FAILED REQUESTS (figures of these runs are meaningless):\n' >&2
	printf '  - %s\n' "${problems[@]}" >&2
fi
log "results written to $OUT_DIR/results.md"

((${#problems[@]} == 0)) || exit 1
if ((below)) && [[ $STRICT == 1 ]]; then
	log "STRICT=1 and a run is BELOW its target"
	exit 1
fi
exit 0
