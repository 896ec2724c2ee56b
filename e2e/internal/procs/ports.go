package procs

import (
	"testing"

	"github.com/peerctl/peerctl/internal/cluster"
)

// FreePorts returns the first of n consecutive ports, free on loopback
// for TCP and UDP when checked, and not handed out before by this
// process (cluster.FreePortRange). It is safe for concurrent use.
func FreePorts(tb testing.TB, n int) int {
	tb.Helper()
	base, err := cluster.FreePortRange(n)
	if err != nil {
		tb.Fatal(err)
	}
	return base
}
