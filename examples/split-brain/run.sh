#!/usr/bin/env bash
# Split brain and heal, unattended: five nodes, a partition
# node1,node2 / node3,node4,node5, the same key written on both sides with
# different values, then a heal.
# Checks that each side declares the other failed, that both sides accept
# writes (so their data differs), that after the heal every node holds the
# same data, and that the value kept for the key written twice is the write
# with the greater version: last-writer-wins. Exits non-zero, naming the
# step, if something does not hold. README.md explains what happens.
#
#   examples/split-brain/run.sh
#   PEERCTL=./bin/peerctl BASE_PORT=8000 examples/split-brain/run.sh
#
# PEERCTL is the binary (default: peerctl on PATH). Node i gossips on
# BASE_PORT+2(i-1) and serves its API on the port above (default 7946, as
# `peerctl up`). Data dirs and logs go to a temporary directory, removed
# at exit.
set -euo pipefail
export LC_ALL=C # node names compare byte by byte, as the daemons compare them

# ../lib.sh: ports, the temporary directory, starting agents and stopping
# them at exit, wait_for, fail.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
N=5
poll=0.2 # wait_for retries every 0.2 s

# on_exit: heal first, or leaving agents could not tell the other side.
on_exit() {
	if [ "${#pid[@]}" -gt 0 ]; then at 1 heal --all >/dev/null 2>&1 || true; fi
}

# field NAME JSON: the value of a top-level string or number field of the
# indented JSON that --json prints (no jq needed).
field() {
	sed -n "s/^  \"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" <<<"$2"
}

# show I ARGS...: print the client command, then run it against node I.
show() {
	echo "\$ peerctl --addr $(api "$1") ${*:2}    # at node$1"
	at "$@"
}

all=(node1 node2 node3 node4 node5)

echo "== start five nodes; node2..node5 join node1"
start_nodes $N
for i in $(seq $N); do
	wait_for "node$i sees all five alive" 30 sees "$i" alive "${all[@]}"
done
at 1 members

echo
echo "== partition the cluster: node1,node2 / node3,node4,node5"
show 1 partition node1,node2 / node3,node4,node5
echo "-- each side declares the other failed (no answer to probes, suspicion times out)"
started=$SECONDS
for i in 1 2; do
	wait_for "node$i marks node3,node4,node5 failed" 40 sees "$i" failed node3 node4 node5
done
for i in 3 4 5; do
	wait_for "node$i marks node1,node2 failed" 40 sees "$i" failed node1 node2
done
echo "each side sees the other failed after $((SECONDS - started))s"
show 1 members
show 3 members

echo
echo "== both sides accept writes to the same key"
b=$(show 3 put --json color blue) || fail "write at node3 during the partition"
echo "$b"
a=$(show 1 put --json color red) || fail "write at node1 during the partition"
echo "$a"
echo "-- and keys that only one side writes"
show 2 put left/only written-at-node2
show 5 put right/only written-at-node5
echo "-- each side sees its own value (get --all asks the members a node sees alive)"
show 1 get --all color || true
show 4 get --all color || true
[ "$(at 2 get color)" = red ] || fail "node2 does not hold color=red from its own side"
[ "$(at 5 get color)" = blue ] || fail "node5 does not hold color=blue from its own side"
if at 1 get right/only >/dev/null 2>&1; then
	fail "node1 holds right/only: a write crossed the partition"
fi
if at 3 get left/only >/dev/null 2>&1; then
	fail "node3 holds left/only: a write crossed the partition"
fi
echo "-- check cannot vouch for members it cannot reach"
if show 1 check; then
	fail "check says converged during the partition"
fi

echo
echo "== heal the partition"
show 1 heal --all
for i in $(seq $N); do
	wait_for "node$i sees all five alive after the heal" 30 sees "$i" alive "${all[@]}"
done
show 1 check --wait 30s || fail "the nodes did not converge within 30s of the heal"
show 1 get --all color

echo
echo "== which write won?"
# The versions the two puts returned: ts is the hybrid logical clock
# timestamp, wall-clock milliseconds in its upper 48 bits and a counter in
# the lower 16; origin is the writing node, the tie-break.
ts_a=$(field ts "$a") origin_a=$(field origin "$a") ver_a=$(field version "$a")
ts_b=$(field ts "$b") origin_b=$(field origin "$b") ver_b=$(field version "$b")
if [ -z "$ts_a" ] || [ -z "$ts_b" ]; then
	fail "could not read the versions that put --json returned"
fi
if ((ts_a > ts_b)) || { ((ts_a == ts_b)) && [[ "$origin_a" > "$origin_b" ]]; }; then
	win=red win_ver=$ver_a win_node=$origin_a lose=blue lose_ver=$ver_b lose_node=$origin_b
else
	win=blue win_ver=$ver_b win_node=$origin_b lose=red lose_ver=$ver_a lose_node=$origin_a
fi
for i in $(seq $N); do
	got=$(at "$i" get color) || fail "node$i lost the key color"
	[ "$got" = "$win" ] ||
		fail "node$i holds color=$got; want $win, the write with the greater version ($win_ver)"
done
for k in left/only right/only; do
	for i in $(seq $N); do
		at "$i" get "$k" >/dev/null || fail "node$i lacks $k after the heal"
	done
done
ms_a=$((ts_a >> 16)) ms_b=$((ts_b >> 16))
if ((ts_a == ts_b)); then
	why="the timestamps are equal, so the node name decides: $win_node > $lose_node"
elif ((ms_a == ms_b)); then
	why="both are from the same millisecond, and its logical counter is greater"
else
	why="its timestamp is $((ms_a > ms_b ? ms_a - ms_b : ms_b - ms_a)) ms later"
fi
echo "every node holds color=$win:"
printf '  %-5s %s  written at %s  <- kept\n' "$win" "$win_ver" "$win_node"
printf '  %-5s %s  written at %s  <- overwritten\n' "$lose" "$lose_ver" "$lose_node"
cat <<EOF
$win won: $why.

Last-writer-wins: every node keeps the entry with the greater version
(timestamp first, then the writing node's name), so all of them pick the same
one, whatever order the entries reach them in. Neither side had seen the
other's write, so nothing merged them: the $lose write was acknowledged to its
client and is now gone. That is the price of accepting writes on both sides
of a partition. Keys written on one side only (left/only, right/only) are
now on every node.
EOF
echo
echo "ok: split brain healed; every node holds the write with the greater version"
