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

# ../lib.sh: ports, the temporary directory, starting agents and stopping
# them at exit, wait_for, fail.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# holds I KEY VALUE: node I holds KEY=VALUE.
holds() { [ "$(at "$1" get "$2")" = "$3" ]; }

echo "== start three nodes; node2 and node3 join node1"
start_nodes 3
for i in 1 2 3; do
	wait_for "node$i sees 3 alive members" 20 sees "$i" alive node1 node2 node3
done
at 1 members

echo "== write at node1, read at node3"
at 1 put greeting hello
wait_for "node3 reads greeting=hello" 10 holds 3 greeting hello
echo "node3: greeting=$(at 3 get greeting)"

echo "== kill node3 (as with kill -9) and wait for the others to mark it failed"
at 1 kill node3
unset 'pid[3]'
wait_for "node1 marks node3 failed" 15 sees 1 failed node3
wait_for "node2 marks node3 failed" 15 sees 2 failed node3
at 1 members

echo "== write while node3 is down"
at 2 put greeting "written while node3 was down"

echo "== restart node3 from its data dir alone; it catches up"
start 3 --data-dir "$DIR/node3"
wait_for "node3 reads the write it missed" 20 holds 3 greeting "written while node3 was down"
wait_for "node1 sees node3 alive again" 20 sees 1 alive node1 node2 node3
at 1 get --all greeting

echo "ok: node3 came back with the latest value"
