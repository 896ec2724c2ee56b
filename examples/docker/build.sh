#!/usr/bin/env bash
# Builds the peerctl image with no registry: a static binary first, then
# examples/docker/Dockerfile FROM scratch, in a temporary build context.
#   examples/docker/build.sh [TAG]      (default peerctl:dev)
set -euo pipefail
tag=${1:-peerctl:dev}
root=$(cd "$(dirname "$0")/../.." && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$ctx/peerctl" .)
cp "$root/examples/docker/Dockerfile" "$ctx/"
mkdir "$ctx/data"
# The classic builder (DOCKER_BUILDKIT=0) needs no frontend image; --pull
# is off by default there, and FROM scratch pulls nothing anyway.
DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$ctx"
