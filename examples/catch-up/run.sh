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

# ../lib.sh: ports, the temporary directory, starting agents and stopping
# them at exit, wait_for, fail.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
KEYS=${KEYS:-5000}
VALUE_SIZE=${VALUE_SIZE:-1000}
N=3
writers=() # PIDs of the bulk writers, while they run

# on_exit: stop the bulk writers first.
on_exit() {
	if [ "${#writers[@]}" -gt 0 ]; then stop "${writers[@]}"; fi
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
# PUT /v1/kv/KEY with the value as body and the X-Peerctl-Client header
# the API requires of writes, COUNT times over one HTTP
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
		printf 'PUT /v1/kv/%s%05d HTTP/1.1\r\nHost: %s\r\nX-Peerctl-Client: 1\r\nContent-Length: %d\r\n%s\r\n%s' \
			"$prefix" "$r" "$host:$port" "${#v}" "$last" "$v"
	done >&3
	wait "$reader" # the daemon closes the connection after the last answer
	exec 3>&-
	grep -c '^HTTP/1.1 200 ' "$DIR/answers.node$i" || true
}

echo "== start three nodes; node2 and node3 join node1"
start_nodes $N
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
