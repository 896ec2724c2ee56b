#!/usr/bin/env bash
# Catch-up, unattended: three nodes; node3 crashes (kill -9); thousands of keys
# are written at the other two while it is down; node3 is started again from
# its data dir and the script times how long it takes to hold every key,
# then prints its replication counters. Exits non-zero, naming the step, if
# something does not hold. README.md explains what happens.
#
#   examples/catch-up/run.sh
#   PEERCTL=./bin/peerctl BASE_PORT=8000 KEYS=20000 examples/catch-up/run.sh
#
# PEERCTL is the binary (default: peerctl on PATH). KEYS is how many keys
# to write while node3 is down (default 5000), VALUE_SIZE the size of each
# value in bytes (default 1000). Node i gossips on
# BASE_PORT+2(i-1) and serves its API on the port above (default 7946, as
# `peerctl up`). Data dirs and logs go to a temporary directory, removed at
# exit.
set -euo pipefail

PEERCTL=${PEERCTL:-peerctl}
BASE_PORT=${BASE_PORT:-7946}
KEYS=${KEYS:-5000}
VALUE_SIZE=${VALUE_SIZE:-1000}
N=3
DIR=$(mktemp -d "${TMPDIR:-/tmp}/peerctl-catch-up.XXXXXX")
declare -A pid # node number -> PID of its running agent
writers=()     # PIDs of the bulk writers, while they run

gossip() { echo "127.0.0.1:$((BASE_PORT + 2 * ($1 - 1)))"; }
api() { echo "127.0.0.1:$((BASE_PORT + 2 * ($1 - 1) + 1))"; }

# at I ARGS...: run a client command against node I.
at() {
	local i=$1
	shift
	"$PEERCTL" --addr "$(api "$i")" "$@"
}

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
	local status=$?
	if [ "${#writers[@]}" -gt 0 ]; then stop "${writers[@]}"; fi
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
}
trap cleanup EXIT

# start I [FLAGS...]: start node I in the background, logging to DIR/nodeI.log.
start() {
	local i=$1
	shift
	"$PEERCTL" agent "$@" >>"$DIR/node$i.log" 2>&1 &
	pid[$i]=$!
	# Not a job of this shell: bash still reaps it, but does not report
	# "Killed" when node3 is killed on purpose.
	disown "$!"
}

fail() {
	echo "FAIL: $*" >&2
	exit 1
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
		((SECONDS < deadline)) || fail "$what: not within ${secs}s"
		sleep 0.1
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

# counter I NAME: a counter from node I's info --json ("keys", "entries_applied"...).
counter() {
	at "$1" info --json | sed -n "s/^    \"$2\": \([0-9]*\),\{0,1\}$/\1/p"
}

# holds I COUNT: node I holds COUNT live keys.
holds() { [ "$(counter "$1" keys)" = "$2" ]; }

# bulk_put I PREFIX COUNT: write PREFIX00001..PREFIX<COUNT> at node I and
# print how many writes it acknowledged. `peerctl put` is one process per
# write (a few ms of CPU each); this sends the same request it does,
# PUT /v1/kv/KEY with the value as body, COUNT times over one HTTP
# connection (bash's /dev/tcp), reading the answers as they come.
bulk_put() {
	local i=$1 prefix=$2 count=$3 host=127.0.0.1 port r v last pad
	port=$((BASE_PORT + 2 * (i - 1) + 1))
	printf -v pad '%*s' "$VALUE_SIZE" ''
	pad=${pad// /.}
	exec 3<>"/dev/tcp/$host/$port"
	cat <&3 >"$DIR/answers.node$i" &
	local reader=$!
	for ((r = 1; r <= count; r++)); do
		v="value $r written at node$i while node3 was down $pad"
		v=${v:0:VALUE_SIZE}
		last=""
		((r < count)) || last=$'Connection: close\r\n'
		printf 'PUT /v1/kv/%s%05d HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n%s' \
			"$prefix" "$r" "$host:$port" "${#v}" "$last" "$v"
	done >&3
	wait "$reader" # the daemon closes the connection after the last answer
	exec 3>&-
	grep -c '^HTTP/1.1 200 ' "$DIR/answers.node$i" || true
}

echo "== start three nodes; node2 and node3 join node1"
for i in $(seq $N); do
	join=()
	[ "$i" -gt 1 ] && join=(--join "$(gossip 1)")
	start "$i" --name "node$i" --bind "$(gossip "$i")" --api "$(api "$i")" \
		--data-dir "$DIR/node$i" --profile local "${join[@]}"
done
for i in $(seq $N); do
	wait_for "node$i sees all three alive" 30 sees "$i" alive node1 node2 node3
done
at 1 members
at 1 put before "written before the crash"
wait_for "node3 holds the first key" 10 holds 3 1

echo
echo "== crash node3: kill -9 ${pid[3]} (peerctl kill node3 does the same)"
kill -9 "${pid[3]}"
unset 'pid[3]'
started=$(now_ms)
wait_for "node1 marks node3 failed" 20 sees 1 failed node3
wait_for "node2 marks node3 failed" 20 sees 2 failed node3
echo "node1 and node2 declared node3 failed $(($(now_ms) - started)) ms after the crash"

echo
echo "== write $KEYS keys while node3 is down, half at node1, half at node2"
half=$((KEYS / 2))
started=$(now_ms)
bulk_put 1 bulk/a/ "$half" >"$DIR/acked.node1" &
writers+=($!)
bulk_put 2 bulk/b/ "$((KEYS - half))" >"$DIR/acked.node2" &
writers+=($!)
deadline=$((SECONDS + 40))
for w in "${writers[@]}"; do
	while ! gone "$w"; do
		((SECONDS < deadline)) || fail "writing $KEYS keys took over 40s"
		sleep 0.1
	done
done
writers=()
acked=$(($(cat "$DIR/acked.node1") + $(cat "$DIR/acked.node2")))
[ "$acked" -eq "$KEYS" ] || fail "only $acked of $KEYS writes were acknowledged"
echo "$KEYS writes acknowledged in $(($(now_ms) - started)) ms"
want=$((KEYS + 1)) # and the key written before the crash
for i in 1 2; do wait_for "node$i holds all $want keys" 30 holds "$i" "$want"; done
echo "node1 and node2 each hold $want keys; node3, down, holds 1"

echo
echo "== restart node3 from its data dir: peerctl agent --data-dir $DIR/node3"
started=$(now_ms)
start 3 --data-dir "$DIR/node3"
wait_for "node3's API answers" 20 at 3 info
up=$(($(now_ms) - started))
echo "node3's API answered after $up ms; it held $(counter 3 keys) of $want keys"
deadline=$((SECONDS + 30))
until holds 3 "$want"; do
	gone "${pid[3]}" && fail "node3 exited while catching up"
	((SECONDS < deadline)) ||
		fail "node3 holds $(counter 3 keys) keys, not $want, 30s after its restart"
	sleep 0.05
done
caught=$(($(now_ms) - started))
echo "node3 held all $want keys $caught ms after it was started"
at 1 check --wait 20s || fail "the nodes did not converge after node3 came back"
echo "converged $(($(now_ms) - started)) ms after node3 was started (checked through node1)"
applied=$(counter 3 entries_applied)
((applied >= KEYS)) || fail "node3 applied $applied remote entries; want at least $KEYS"

echo
echo "== node3's counters: what catching up took"
at 3 info

echo
echo "ok: node3 missed $KEYS writes and caught up in $caught ms"
