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
    PEERCTL=./bin/peerctl examples/three-nodes/run.sh
