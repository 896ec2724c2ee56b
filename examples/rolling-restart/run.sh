#!/usr/bin/env bash
# Rolling restart, unattended: while a client keeps writing and reading,
# every node in turn is stopped gracefully (SIGTERM: it leaves the cluster
# and exits) and started again from its data dir alone. The client sends
# each request to a node that is up, so it should never see an error: the
# cluster as a whole stays available while each node is down for a moment.
# Checks that no request to a live node failed and that every acknowledged
# write is on every node at the end. Exits non-zero, naming the step, if
# something does not hold. README.md explains what happens.
#
#   examples/rolling-restart/run.sh
#   PEERCTL=./bin/peerctl BASE_PORT=8000 NODES=5 examples/rolling-restart/run.sh
#
# PEERCTL is the binary (default: peerctl on PATH). NODES is the cluster
# size (default 3). Node i gossips on BASE_PORT+2(i-1) and serves its API on
# the port above (default 7946, as `peerctl up`). Data dirs, logs and the
# client's record go to a temporary directory, removed at exit.
set -euo pipefail
export LC_ALL=C # sort and comm order keys byte by byte, as peerctl keys does

PEERCTL=${PEERCTL:-peerctl}
BASE_PORT=${BASE_PORT:-7946}
N=${NODES:-3}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/peerctl-rolling-restart.XXXXXX")
declare -A pid # node number -> PID of its running agent
client=""      # PID of the background client loop

gossip() { echo "127.0.0.1:$((BASE_PORT + 2 * ($1 - 1)))"; }
api() { echo "127.0.0.1:$((BASE_PORT + 2 * ($1 - 1) + 1))"; }

# at I ARGS...: run a client command against node I.
at() {
	local i=$1
	shift
	"$PEERCTL" --addr "$(api "$i")" "$@"
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
	local status=$? i
	trap - EXIT
	if [ -n "$client" ]; then
		# Let it finish its round, so no request of its outlives the script.
		touch "$DIR/client.stop"
		for _ in $(seq 50); do gone "$client" && break; sleep 0.1; done
		stop "$client"
	fi
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
# It stays a job of this shell, so `wait` can read its exit status.
start() {
	local i=$1
	shift
	"$PEERCTL" agent "$@" >>"$DIR/node$i.log" 2>&1 &
	pid[$i]=$!
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
		[ -z "$client" ] || ! gone "$client" || fail "$what: the client loop exited"
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

all_nodes=()
for i in $(seq "$N"); do all_nodes+=("node$i"); done

# all_see_all_alive: every node sees every node alive.
all_see_all_alive() {
	local i
	for i in $(seq "$N"); do sees "$i" alive "${all_nodes[@]}" || return 1; done
}

# The client. Each round it reads DIR/down, the node being restarted (0:
# none), writes key roll/R at one of the other nodes, taking them in turn,
# and reads it back at the next; it logs one line per request to
# DIR/ops: "ok put|get KEY NODE", "stale get KEY NODE" (the write had not
# reached that node yet: allowed, eventual consistency), or "FAIL ...".
# Then it writes what it read from DIR/down to DIR/seen: once DIR/seen
# shows a node, the client sends it nothing until DIR/down changes.
client_loop() {
	local r=0 down live a b i key got err=$DIR/client.err
	until [ -e "$DIR/client.stop" ]; do
		down=$(cat "$DIR/down")
		live=()
		for i in $(seq "$N"); do
			if [ "$i" -ne "$down" ]; then live+=("$i"); fi
		done
		a=${live[$((r % ${#live[@]}))]}
		b=${live[$(((r + 1) % ${#live[@]}))]}
		key=roll/$(printf '%05d' "$r")
		if at "$a" put "$key" "v$r" >/dev/null 2>"$err"; then
			echo "ok put $key node$a" >>"$DIR/ops"
			if got=$(at "$b" get "$key" 2>"$err"); then
				if [ "$got" = "v$r" ]; then
					echo "ok get $key node$b" >>"$DIR/ops"
				else
					echo "FAIL get $key node$b: read \"$got\", want \"v$r\"" >>"$DIR/ops"
				fi
			elif grep -q 'not found' "$err"; then
				echo "stale get $key node$b" >>"$DIR/ops"
			else
				echo "FAIL get $key node$b: $(cat "$err")" >>"$DIR/ops"
			fi
		else
			echo "FAIL put $key node$a: $(cat "$err")" >>"$DIR/ops"
		fi
		echo "$down" >"$DIR/seen"
		r=$((r + 1))
		sleep 0.02 # leave some CPU to the agents on a small machine
	done
}

# route I: tell the client to avoid node I (0: none). The file is replaced
# in one step, so the client never reads it half-written.
route() {
	echo "$1" >"$DIR/down.new"
	mv "$DIR/down.new" "$DIR/down"
}

# client_avoids I: the client has finished a round that avoided node I.
client_avoids() { [ "$(cat "$DIR/seen" 2>/dev/null)" = "$1" ]; }

# tally: counts of the client's requests so far.
count() { grep -c "$1" "$DIR/ops" || true; }
tally() {
	echo "client so far: $(count '^ok put') writes, $(count '^ok get') reads ok," \
		"$(count '^stale') stale reads, $(count '^FAIL') failed"
}

echo "== start $N nodes; node2..node$N join node1"
for i in $(seq "$N"); do
	join=()
	[ "$i" -gt 1 ] && join=(--join "$(gossip 1)")
	start "$i" --name "node$i" --bind "$(gossip "$i")" --api "$(api "$i")" \
		--data-dir "$DIR/node$i" --profile local "${join[@]}"
done
wait_for "every node sees all $N alive" 30 all_see_all_alive
at 1 members

echo
echo "== start a client: write roll/R at one node, read it back at the next, round after round"
route 0
touch "$DIR/ops"
client_loop &
client=$!
wait_for "the client's first round" 10 grep -q '^ok get' "$DIR/ops"
tally

for k in $(seq "$N"); do
	other=$((k % N + 1)) # a node that stays up while node$k restarts
	echo
	echo "== restart node$k"
	echo "-- the client stops sending requests to node$k"
	route "$k"
	wait_for "the client routes around node$k" 10 client_avoids "$k"
	echo "-- SIGTERM node$k (pid ${pid[$k]}): it leaves the cluster and exits"
	p=${pid[$k]}
	unset "pid[$k]"
	before=$(count '^ok put')
	stopped=$(now_ms)
	kill "$p"
	wait_for "node$k exits after SIGTERM" 15 gone "$p"
	code=0
	wait "$p" || code=$?
	[ "$code" -eq 0 ] || fail "node$k exited with status $code after SIGTERM; want 0"
	echo "node$k exited with status 0 after $(($(now_ms) - stopped)) ms"
	wait_for "node$other sees node$k left" 10 sees "$other" left "node$k"
	at "$other" members --status left
	echo "-- start node$k again: peerctl agent --data-dir $DIR/node$k"
	start "$k" --data-dir "$DIR/node$k"
	wait_for "every node sees node$k alive again" 30 all_see_all_alive
	at "$other" check --wait 20s || fail "the nodes did not converge after node$k restarted"
	echo "-- node$k is back after $(($(now_ms) - stopped)) ms; the client made" \
		"$(($(count '^ok put') - before)) writes meanwhile, at the other nodes"
	route 0
	tally
done

echo
echo "== stop the client and check its record"
touch "$DIR/client.stop"
wait_for "the client loop ends" 20 gone "$client"
client=""
tally
if grep '^FAIL' "$DIR/ops" >&2; then
	fail "requests to live nodes failed during the rolling restart (above)"
fi
writes=$(count '^ok put')
[ "$writes" -gt 0 ] || fail "the client made no write"

echo
echo "== every acknowledged write is on every node"
at 1 check --wait 20s || fail "the nodes did not converge after the last restart"
sed -n 's/^ok put \([^ ]*\) .*/\1/p' "$DIR/ops" | sort >"$DIR/acked"
for i in $(seq "$N"); do
	at "$i" keys roll/ >"$DIR/keys.node$i" || fail "cannot list the keys of node$i"
	missing=$(comm -23 "$DIR/acked" "$DIR/keys.node$i" | wc -l)
	if [ "$missing" -gt 0 ]; then
		fail "node$i lacks $missing acknowledged writes, such as" \
			"$(comm -23 "$DIR/acked" "$DIR/keys.node$i" | head -n 3 | tr '\n' ' ')"
	fi
	echo "node$i holds all $writes acknowledged writes"
done

echo
echo "ok: every node restarted once; no request to a live node failed; nothing was lost"
