package bench

import (
	"context"
	"testing"
)

// TestBenchSmokeCoord runs the coordination workloads at the smallest
// size, once, as TestBenchSmoke does the others: the figures must be
// there and the JSON must parse; their values are not checked.
func TestBenchSmokeCoord(t *testing.T) {
	exe := buildPeerctl(t)
	bg := context.Background()
	t.Run("failover", func(t *testing.T) {
		table, res, err := runBench(t, bg, exe, "failover", "--nodes", "3", "--reps", "1", "--settle", "300ms", "--writers", "2")
		if err != nil {
			t.Fatal(err)
		}
		checkFigures(t, table, res, "elected_ms", "all_know_ms", "write_ms", "new_term")
	})
	t.Run("throughput-consistent", func(t *testing.T) {
		table, res, err := runBench(t, bg, exe, "throughput", "--consistent", "--nodes", "3", "--reps", "1", "--clients", "1,4", "--duration", "300ms")
		if err != nil {
			t.Fatal(err)
		}
		checkFigures(t, table, res, "leader_c1_cwps", "leader_c1_cp50_ms", "leader_c4_ratio", "spread_c4_cwps", "spread_c4_gp50_ms")
	})
}
