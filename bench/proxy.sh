#!/usr/bin/env bash
# Load benchmark of `jeton proxy`. See bench/README.md.
#
# Starts the baseline server (bench/baseline) as the upstream, `jeton serve`
# on a temporary SQLite store, and `jeton proxy` in front of the baseline
# with a route file that requires the repos:read scope, then runs wrk with
# identical settings and the same request (POST with a small JSON body and
# an Authorization header) against
#   (a) the upstream alone                  (the ceiling of this machine)
#   (b) the proxy, JWT ES256 access token   (verified in the proxy's process)
#   (c) the proxy, API key                  (checked through Jeton, cached)
#   (d) bench/bareproxy: httputil.ReverseProxy alone, no checks (the
#       ceiling of any proxy built on it here)
# and prints req/s, p50, p99 and each as a ratio of (a). Target for (b): 0.5.
# Raw output goes to bench/out/proxy-*.txt.
#
# Environment (all optional): DURATION=15s CONNECTIONS=32 THREADS=2
# WRK_TIMEOUT=2s STRICT=1 (exit 1 when (b) is below its target).
set -euo pipefail

DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
WRK_TIMEOUT=${WRK_TIMEOUT:-2s}
STRICT=${STRICT:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT_DIR="$BENCH_DIR/out"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

for v in CONNECTIONS THREADS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
dur_s=$(seconds "$DURATION" 2>/dev/null) && [[ $dur_s =~ ^[1-9][0-9]*$ ]] ||
	die "DURATION must look like 15s, 2m or 15, not '$DURATION'"
command -v curl >/dev/null || die "curl is needed"

mkdir -p "$OUT_DIR"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/jeton-proxy-bench.XXXXXX")
log "building into $tmp"
(cd "$ROOT" && go build -o "$tmp/jeton" ./cmd/jeton && go build -o "$tmp/baseline" ./bench/baseline &&
	go build -o "$tmp/bareproxy" ./bench/bareproxy) || die "build failed"

base_port=$(pick_port) || die "no free port"
jeton_port=$(pick_port "$base_port") || die "no free port"
proxy_port=$(pick_port "$jeton_port") || die "no free port"
admin_port=$(pick_port "$proxy_port") || die "no free port"
bare_port=$(pick_port "$admin_port") || die "no free port"
db="$tmp/jeton.db"

"$tmp/baseline" -addr "127.0.0.1:$base_port" >"$tmp/baseline.log" 2>&1 &
pids+=("$!")
wait_healthy baseline "$!" "$base_port"

JETON_TOKEN=$(timeout 60 "$tmp/jeton" admin bootstrap --db "$db" 2>>"$tmp/jeton.log" | tr -d '[:space:]')
[[ -n $JETON_TOKEN ]] || die "jeton admin bootstrap printed no token"
export JETON_TOKEN JETON_SERVER="http://127.0.0.1:$jeton_port"
"$tmp/jeton" serve --addr "127.0.0.1:$jeton_port" --db "$db" >>"$tmp/jeton.log" 2>&1 &
pids+=("$!")
wait_healthy jeton "$!" "$jeton_port"

# json_field NAME: the string value of "NAME" in the JSON on stdin.
json_field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1; }

log "creating the API, an API key, a JWT client and the proxy's own token"
jeton() { timeout 30 "$tmp/jeton" "$@"; }
jeton api create --name bench --identifier https://bench.jeton.test --scopes repos:read --json >/dev/null
api_key=$(jeton token create --api bench --name bench --scopes repos:read --json | json_field token)
proxy_token=$(jeton token create --api jeton --name proxy --scopes verify --json | json_field token)
client=$(jeton client create --name bench-jwt --type confidential --grant-types client_credentials --apis bench \
	--scopes repos:read --token-format jwt --access-token-ttl 1h --json)
client_id=$(json_field client_id <<<"$client")
client_secret=$(json_field client_secret <<<"$client")
jwt=$(curl -sf -u "$client_id:$client_secret" -d grant_type=client_credentials -d scope=repos:read \
	"$JETON_SERVER/oauth2/token" | json_field access_token)
for v in api_key proxy_token client_id client_secret jwt; do
	[[ -n ${!v} ]] || die "could not create $v (log: $OUT_DIR/jeton.log)"
done

cat >"$tmp/routes.yaml" <<EOF
api: https://bench.jeton.test
routes:
  - path: /**
    scopes: [repos:read]
EOF
JETON_PROXY_TOKEN=$proxy_token "$tmp/jeton" proxy --listen "127.0.0.1:$proxy_port" --admin-listen "127.0.0.1:$admin_port" \
	--upstream "http://127.0.0.1:$base_port" --config "$tmp/routes.yaml" --issuer "$JETON_SERVER" >"$tmp/proxy.log" 2>&1 &
pids+=("$!")
wait_healthy proxy "$!" "$admin_port"

"$tmp/bareproxy" -addr "127.0.0.1:$bare_port" -upstream "http://127.0.0.1:$base_port" >"$tmp/bareproxy.log" 2>&1 &
pids+=("$!")
wait_healthy bareproxy "$!" "$bare_port"

cat >"$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"hello":"world"}'
wrk.headers["Content-Type"] = "application/json"
EOF

names=(upstream proxy_jwt proxy_key bare)
declare -A url=([upstream]="http://127.0.0.1:$base_port/v1/echo" [proxy_jwt]="http://127.0.0.1:$proxy_port/v1/echo"
	[proxy_key]="http://127.0.0.1:$proxy_port/v1/echo" [bare]="http://127.0.0.1:$bare_port/v1/echo")
declare -A tok=([upstream]=$jwt [proxy_jwt]=$jwt [proxy_key]=$api_key [bare]=$jwt)
declare -A label=([upstream]="(a) upstream alone" [proxy_jwt]="(b) proxy, JWT ES256" [proxy_key]="(c) proxy, API key"
	[bare]="(d) httputil.ReverseProxy, no checks")
declare -A rps p50 p99

# Check each path once: a wrong setup would otherwise measure error pages.
for name in "${names[@]}"; do
	code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer ${tok[$name]}" -d '{}' "${url[$name]}")
	[[ $code == 200 ]] || die "${label[$name]} answers $code, not 200 (logs in $OUT_DIR)"
done

for name in "${names[@]}"; do
	out="$OUT_DIR/proxy-$name.txt"
	log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION: ${label[$name]}"
	run_bg $((dur_s + 60)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout "$WRK_TIMEOUT" --latency \
		-s "$tmp/post.lua" -H "Authorization: Bearer ${tok[$name]}" "${url[$name]}" >"$out" 2>&1 ||
		die "wrk failed for $name; output in $out"
	if grep -q 'Non-2xx\|Socket errors' "$out"; then
		die "${label[$name]}: failed requests during the run (see $out)"
	fi
	rps[$name]=$(awk '/^Requests\/sec/ { printf "%d", $2 }' "$out")
	p50[$name]=$(awk '$1 == "50%" { print $2 }' "$out")
	p99[$name]=$(awk '$1 == "99%" { print $2 }' "$out")
done

base=${rps[upstream]}
below=0
{
	printf '| run | req/s | p50 | p99 | ratio to (a) | target |\n|---|---|---|---|---|---|\n'
	for name in "${names[@]}"; do
		ratio=$(awk -v a="${rps[$name]}" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
		t=""
		if [[ $name == proxy_jwt ]]; then
			t=0.50
			awk -v r="$ratio" 'BEGIN { exit !(r < 0.50) }' && below=1
		fi
		printf '| %s | %s | %s | %s | %s | %s |\n' "${label[$name]}" "${rps[$name]}" "${p50[$name]}" "${p99[$name]}" "$ratio" "$t"
	done
} | tee "$OUT_DIR/proxy-results.md"
if ((STRICT == 1 && below == 1)); then
	die "(b) is below its target"
fi
