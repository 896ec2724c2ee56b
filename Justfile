# Recipes for peerctl. `just` is optional: each recipe is one command you
# can run by hand.

# Run every test with the race detector (the README's test command).
test:
    go test -race ./...

# Build the binary to bin/peerctl.
build:
    go build -o bin/peerctl .

# The narrated five-node tour: replication, failure detection, recovery.
demo:
    go run . demo

# Five daemons on this machine with their logs, until Ctrl-C.
up:
    go run . up -n 5

# Run the unattended example scripts against a fresh build.
examples: build
    for s in examples/*/run.sh; do echo "== $s"; PEERCTL=$PWD/bin/peerctl bash "$s" || exit 1; done

# A long nemesis run: faults under load, then check nothing acknowledged was
# lost, the consistent namespace is linearizable, no term had two leaders and
# no two lock holders overlapped; then kill -9 every pair of five nodes.
nemesis duration="10m" seed="":
    NEMESIS_DURATION={{duration}} NEMESIS_SEED={{seed}} NEMESIS_PAIRS=all go test ./e2e/nemesis -run 'Nemesis|TwoKills' -v -timeout 60m

# Benchmarks (see BENCHMARKS.md); e.g. `just bench propagation --preset glomers`.
bench *args: build
    ./bin/peerctl bench {{args}}

# The container image (examples/docker/Dockerfile): a static binary
# (CGO_ENABLED=0, -trimpath), then FROM scratch with the classic builder,
# pulling nothing: builds with no registry.
image tag="peerctl:dev":
    examples/docker/build.sh {{tag}}

# Retake the dashboard screenshots the README shows (headless chromium).
screenshots:
    PEERCTL_SCREENSHOTS=$PWD/docs/screenshots go test ./e2e/browser -run 'TestDashboard$' -count=1 -v
