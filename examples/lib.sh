# shellcheck shell=bash
# Shared plumbing of the examples/*/run.sh scripts, which source it after
# `set -euo pipefail`:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
#
# Sourcing it reads PEERCTL (the binary, default: peerctl on PATH) and
# BASE_PORT (default 7946, as `peerctl up`), makes the temporary directory
# DIR, named after the script's directory, for data dirs and logs, and
# sets a trap that at exit stops every agent still running, prints the
# last lines of each log if the script failed, and removes DIR.
#
# A script may set, after sourcing:
#   keep_jobs=1   agents stay jobs of the shell, so `wait PID` can read the
#                 exit status of one that was stopped (default: disowned,
#                 so bash does not report "Killed" for one killed on purpose)
#   poll=SECONDS  how often wait_for retries (default 0.1)
# and define:
#   on_exit       run first at exit, before the agents are stopped
#   on_wait WHAT  run at each retry of wait_for; calls fail if something
#                 else the script started has exited

PEERCTL=${PEERCTL:-peerctl}
BASE_PORT=${BASE_PORT:-7946}
example=$(CDPATH="" cd -- "$(dirname -- "$0")" && pwd) # examples/NAME, the script's
DIR=$(mktemp -d "${TMPDIR:-/tmp}/peerctl-${example##*/}.XXXXXX")
declare -A pid # node number -> PID of its running agent
keep_jobs=0
poll=0.1

# Node i gossips on BASE_PORT+2(i-1) and serves its API on the port above.
gossip() { echo "127.0.0.1:$((BASE_PORT + 2 * ($1 - 1)))"; }
api() { echo "127.0.0.1:$((BASE_PORT + 2 * ($1 - 1) + 1))"; }

# at I ARGS...: run a client command against node I.
at() {
	local i=$1
	shift
	"$PEERCTL" --addr "$(api "$i")" "$@"
}

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# gone PID: has the process exited? (bash reaps its children as they exit)
gone() { ! kill -0 "$1" 2>/dev/null; }

# stop PID...: SIGTERM each (an agent then leaves the cluster and exits),
# and SIGKILL any still running 10 s later.
stop() {
	local p alive
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for _ in $(seq 100); do
		alive=0
		for p in "$@"; do gone "$p" || alive=1; done
		[ "$alive" -eq 0 ] && break
		sleep 0.1
	done
	for p in "$@"; do kill -9 "$p" 2>/dev/null || true; done
}

cleanup() {
	local status=$? f
	trap - EXIT
	if declare -F on_exit >/dev/null; then on_exit || true; fi
	# All running agents but one at once, then that one: a leaving agent
	# waits until a live member has heard of its leave.
	local running=("${pid[@]}")
	if [ "${#running[@]}" -gt 1 ]; then stop "${running[@]:1}"; fi
	if [ "${#running[@]}" -gt 0 ]; then stop "${running[0]}"; fi
	if [ "$status" -ne 0 ]; then
		for f in "$DIR"/*.log; do
			[ -e "$f" ] || continue
			echo "--- last lines of $f" >&2
			tail -n 5 "$f" >&2
		done
	fi
	rm -rf "$DIR"
	exit "$status"
}
trap cleanup EXIT

# start I [FLAGS...]: start node I in the background, logging to DIR/nodeI.log.
start() {
	local i=$1
	shift
	"$PEERCTL" agent "$@" >>"$DIR/node$i.log" 2>&1 &
	pid[$i]=$!
	if [ "$keep_jobs" -eq 0 ]; then disown "$!"; fi
}

# start_nodes N: start node1..nodeN on their ports with --profile local and
# data dirs DIR/nodeI; node2..nodeN join node1.
start_nodes() {
	local i join
	for i in $(seq "$1"); do
		join=()
		[ "$i" -gt 1 ] && join=(--join "$(gossip 1)")
		start "$i" --name "node$i" --bind "$(gossip "$i")" --api "$(api "$i")" \
			--data-dir "$DIR/node$i" --profile local "${join[@]}"
	done
}

# wait_for WHAT SECONDS COMMAND...: retry COMMAND until it succeeds; fail
# at once if an agent that should run has exited.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs)) i
	until "$@" >/dev/null 2>&1; do
		for i in "${!pid[@]}"; do
			gone "${pid[$i]}" && fail "$what: node$i exited"
		done
		if declare -F on_wait >/dev/null; then on_wait "$what"; fi
		((SECONDS < deadline)) || fail "$what: not within ${secs}s"
		sleep "$poll"
	done
}

# now_ms: milliseconds since the epoch.
now_ms() {
	if [ -n "${EPOCHREALTIME:-}" ]; then
		local t=${EPOCHREALTIME//[.,]/}
		echo $((t / 1000))
	else
		echo $(($(date +%s) * 1000))
	fi
}

# statuses I: "NAME STATUS" per member, as node I sees them.
statuses() {
	at "$1" members --json |
		sed -n -e 's/^    "name": "\(.*\)",$/\1/p' -e 's/^    "status": "\(.*\)",$/\1/p' |
		paste -d ' ' - -
}

# sees I STATUS NODE...: node I sees every NODE with STATUS.
sees() {
	local i=$1 status=$2 view n
	shift 2
	view=$(statuses "$i") || return 1
	for n in "$@"; do grep -qx "$n $status" <<<"$view" || return 1; done
}
