#!/usr/bin/env bash
# Three nodes on this machine, unattended: start them, join, write at one
# node and read at another, kill one, write while it is down, restart it
# from its data dir alone, and check it caught up. Exits non-zero, naming
# the step, if something does not hold. README.md has the same by hand.
#
#   examples/three-nodes/run.sh
#   PEERCTL=./bin/peerctl BASE_PORT=8000 examples/three-nodes/run.sh
#
# PEERCTL is the binary (default: peerctl on PATH). Node i gossips on
# BASE_PORT+2(i-1) and serves its API on the port above (default 7946, as
# `peerctl up`). Data dirs and logs go to a temporary directory, removed
# at exit.
set -euo pipefail

PEERCTL=${PEERCTL:-peerctl}
BASE_PORT=${BASE_PORT:-7946}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/peerctl-three-nodes.XXXXXX")
pids=()        # every agent started, for cleanup
declare -A pid # node number -> PID of its running agent

gossip() { echo "127.0.0.1:$((BASE_PORT + 2 * ($1 - 1)))"; }
api() { echo "127.0.0.1:$((BASE_PORT + 2 * ($1 - 1) + 1))"; }

# at I ARGS...: run a client command against node I.
at() {
	local i=$1
	shift
	"$PEERCTL" --addr "$(api "$i")" "$@"
}

# stop PID...: SIGTERM each (an agent then leaves the cluster and exits),
# and SIGKILL any still running 10 s later.
stop() {
	local pid alive
	for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
	for _ in $(seq 100); do
		alive=0
		for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		[ "$alive" -eq 0 ] && break
		sleep 0.1
	done
	for pid in "$@"; do kill -9 "$pid" 2>/dev/null || true; done
}

cleanup() {
	local status=$?
	# All but the first at once, then the first: a leaving agent waits
	# until a live member has heard of its leave.
	if [ "${#pids[@]}" -gt 0 ]; then
		stop "${pids[@]:1}"
		stop "${pids[0]}"
	fi
	if [ "$status" -ne 0 ]; then
		for f in "$DIR"/*.log; do
			[ -e "$f" ] || continue
			echo "--- last lines of $f" >&2
			tail -n 5 "$f" >&2
		done
	fi
	rm -rf "$DIR"
}
trap cleanup EXIT

# start I [FLAGS...]: start node I in the background, logging to DIR/nodeI.log.
start() {
	local i=$1
	shift
	"$PEERCTL" agent "$@" >>"$DIR/node$i.log" 2>&1 &
	pids+=($!)
	pid[$i]=$!
	# Not a job of this shell: bash still reaps it, but does not report
	# "Killed" when node3 is killed on purpose.
	disown "$!"
}

# wait_for WHAT SECONDS COMMAND...: retry COMMAND until it succeeds; fail
# at once if a node that should run has exited.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		for i in "${!pid[@]}"; do
			if ! kill -0 "${pid[$i]}" 2>/dev/null; then
				echo "FAIL: $what: node$i exited" >&2
				exit 1
			fi
		done
		if ((SECONDS >= deadline)); then
			echo "FAIL: $what: not within ${secs}s" >&2
			exit 1
		fi
		sleep 0.1
	done
}

sees_alive() { [ "$(at "$1" members --status alive | grep -c '^node')" -eq "$2" ]; }
sees_failed() { at "$1" members --status failed | grep -q "^$2 "; }
holds() { [ "$(at "$1" get "$2")" = "$3" ]; }

echo "== start three nodes; node2 and node3 join node1"
for i in 1 2 3; do
	join=()
	[ "$i" -gt 1 ] && join=(--join "$(gossip 1)")
	start "$i" --name "node$i" --bind "$(gossip "$i")" --api "$(api "$i")" \
		--data-dir "$DIR/node$i" --profile local "${join[@]}"
done
for i in 1 2 3; do wait_for "node$i sees 3 alive members" 20 sees_alive "$i" 3; done
at 1 members

echo "== write at node1, read at node3"
at 1 put greeting hello
wait_for "node3 reads greeting=hello" 10 holds 3 greeting hello
echo "node3: greeting=$(at 3 get greeting)"

echo "== kill node3 (as with kill -9) and wait for the others to mark it failed"
at 1 kill node3
unset 'pid[3]'
wait_for "node1 marks node3 failed" 15 sees_failed 1 node3
wait_for "node2 marks node3 failed" 15 sees_failed 2 node3
at 1 members

echo "== write while node3 is down"
at 2 put greeting "written while node3 was down"

echo "== restart node3 from its data dir alone; it catches up"
start 3 --data-dir "$DIR/node3"
wait_for "node3 reads the write it missed" 20 holds 3 greeting "written while node3 was down"
wait_for "node1 sees node3 alive again" 20 sees_alive 1 3
at 1 get --all greeting

echo "ok: node3 came back with the latest value"
