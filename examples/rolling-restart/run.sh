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

# ../lib.sh: ports, the temporary directory, starting agents and stopping
# them at exit, wait_for, fail.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
N=${NODES:-3}
keep_jobs=1 # so that `wait` can read a stopped agent's exit status
client=""   # PID of the background client loop

# on_exit: stop the client first.
on_exit() {
	if [ -n "$client" ]; then
		# Let it finish its round, so no request of its outlives the script.
		touch "$DIR/client.stop"
		for _ in $(seq 50); do gone "$client" && break; sleep 0.1; done
		stop "$client"
	fi
}

# on_wait WHAT: fail if the client loop has exited while it should run.
on_wait() {
	[ -z "$client" ] || ! gone "$client" || fail "$1: the client loop exited"
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
start_nodes "$N"
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
