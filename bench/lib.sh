# Shared shell functions of the load benchmarks (run.sh, proxy.sh).
# Source it after setting OUT_DIR; it installs an EXIT trap that stops every
# process started with run_bg or recorded in pids, and copies tmp/*.log to
# OUT_DIR.

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] FAIL: %s\n' "$*" >&2; exit 1; }

# seconds DURATION: wrk's duration syntax (15, 15s, 2m, 1h) in whole seconds.
seconds() {
	local d=$1
	case $d in
	*[0-9]) echo "$d" ;;
	*s) echo "${d%s}" ;;
	*m) echo $((${d%m} * 60)) ;;
	*h) echo $((${d%h} * 3600)) ;;
	*) return 1 ;;
	esac
}


# --- processes we start, killed on exit -------------------------------------

tmp=""
pids=()
server_pid=""
at_exit=() # functions run on exit, after the processes have stopped
cleanup() {
	local rc=$? pid i
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "process $pid did not stop after SIGTERM; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	for i in "${at_exit[@]}"; do
		"$i" || log "on exit: $i failed"
	done
	if [[ -n $tmp && -d $tmp ]]; then
		for f in "$tmp"/*.log; do
			[[ -f $f ]] && cp "$f" "$OUT_DIR/" 2>/dev/null || true
		done
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# forget PID: drops PID from the processes to kill on exit.
forget() {
	local keep=() p
	for p in "${pids[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	pids=(${keep[@]+"${keep[@]}"})
}

# run_bg TIMEOUT_SECONDS CMD...: runs CMD in the background under timeout(1)
# and waits for it, so that a signal to this script is handled at once and
# the child is killed by cleanup. Returns CMD's status.
run_bg() {
	local limit=$1 pid rc=0
	shift
	timeout -k 5 "$limit" "$@" &
	pid=$!
	pids+=("$pid")
	wait "$pid" || rc=$?
	forget "$pid"
	return "$rc"
}

# --- wrk --------------------------------------------------------------------

as_root() {
	if ((EUID == 0)); then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo -n "$@"
	else
		return 1
	fi
}

if ! command -v wrk >/dev/null; then
	log "wrk is missing; installing it from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	if ! as_root timeout 300 apt-get install -y wrk; then
		as_root timeout 300 apt-get update &&
			as_root timeout 300 apt-get install -y wrk ||
			die "could not install wrk (apt-get install -y wrk)"
	fi
	command -v wrk >/dev/null || die "wrk is still missing after apt-get install"
fi

# --- servers ----------------------------------------------------------------

# port_free PORT: nothing accepts connections on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port [EXCLUDED]: a free port below the usual ephemeral range, so that
# it cannot clash with wrk's own client ports.
pick_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12000))
		[[ $p == "${1:-}" ]] && continue
		port_free "$p" && { echo "$p"; return 0; }
	done
	return 1
}

# healthy PORT: GET /healthz answers 200.
healthy() {
	local line
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$1" >&3
		IFS= read -r -t 2 line <&3 || exit 1
		[[ $line == "HTTP/1."?" 200"* ]]
	) 2>/dev/null
}

# wait_healthy NAME PID PORT: bounded wait (30 s) for the server to be up.
wait_healthy() {
	local name=$1 pid=$2 port=$3 i
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || die "$name exited during start-up (log: $OUT_DIR/$name.log)"
		healthy "$port" && return 0
		sleep 0.2
	done
	die "$name did not answer GET /healthz on 127.0.0.1:$port within 30s"
}
