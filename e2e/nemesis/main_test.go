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
// the tests that start processes.
package nemesis

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// peerctl is the path of the binary under test, built by TestMain; "" in
// -short mode.
var peerctl string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run() // the checker's own tests need no binary
	}
	dir, err := os.MkdirTemp("", "peerctl-nemesis-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "nemesis:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	peerctl = filepath.Join(dir, "peerctl")
	// Built without -race even under `go test -race`, as e2e does: the
	// daemons are separate processes whose timing the test measures. The
	// clients and the nemesis run in this (race-checked) test binary.
	build := exec.Command("go", "build", "-o", peerctl, ".")
	build.Dir = "../.." // the module root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "nemesis: build peerctl: %v\n%s", err, out)
		return 1
	}
	code := m.Run()
	if left := leftovers(peerctl); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "nemesis: processes of %s still running after the tests: %s\n", peerctl, strings.Join(left, ", "))
		return 1
	}
	return code
}

// leftovers returns the PIDs of running processes whose command line
// contains pattern (pgrep -f).
func leftovers(pattern string) []string {
	out, err := exec.Command("pgrep", "-f", pattern).Output()
	if err != nil {
		return nil // exit 1: none; pgrep missing: nothing to report
	}
	return strings.Fields(string(out))
}

// needBinary skips a test that starts processes in -short mode.
func needBinary(tb testing.TB) {
	tb.Helper()
	if peerctl == "" {
		tb.Skip("starts daemons: skipped in -short mode")
	}
}
