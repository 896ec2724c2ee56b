// Package nemesis is a Jepsen-style test of peerctl on real processes: five
// `peerctl agent` daemons of the built binary on loopback, clients writing
// through the HTTP API, and a seeded nemesis that kills and restarts nodes,
// partitions, pauses, drops and delays, then heals. At the end every node
// must hold the same data, every acknowledged write must be there or be
// superseded by a higher version, and no daemon may have died that the
// nemesis did not kill. README.md says how to run it long and replay a seed.
//
// TestMain builds the binary once. Every daemon a test starts is stopped by
// PID when the test ends, pass or fail (SIGTERM, then SIGKILL), and reaped;
// TestMain then checks with pgrep that none is left. `go test -short` skips
// the tests that start processes. The process harness is shared with e2e,
// in e2e/internal/procs.
package nemesis

import (
	"os"
	"testing"

	"github.com/peerctl/peerctl/e2e/internal/procs"
)

// peerctl is the binary under test, built by TestMain; nil in -short mode.
var peerctl *procs.Binary

func TestMain(m *testing.M) {
	// Under -short the checker's own tests run; those that start daemons skip.
	os.Exit(procs.Main(m, "nemesis", "../..", &peerctl))
}

// needBinary skips a test that starts processes in -short mode.
func needBinary(tb testing.TB) {
	tb.Helper()
	if peerctl == nil {
		tb.Skip("starts daemons: skipped in -short mode")
	}
}
