package daemon

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

// TestRaftMeasure measures, with PEERCTL_RAFT_MEASURE=1, five agents in
// one process (real serf, HTTP and raft-wal on disk): consistent and
// gossip write latency with one client, consistent writes/s with 16
// clients, and elections (term changes) during the run, which should be
// none: a false election under load is a timing problem. Figures quoted
// in BENCHMARKS.md.
func TestRaftMeasure(t *testing.T) {
	if os.Getenv("PEERCTL_RAFT_MEASURE") == "" {
		t.Skip("set PEERCTL_RAFT_MEASURE=1 to measure raft latency and throughput (~1 min)")
	}
	nodes := startCluster(t, 5)
	leader := waitLeader(t, nodes)
	waitFor(t, 30*time.Second, "five voters", func() error {
		l := nodes[0].coord.leaderInfo(context.Background())
		v := 0
		for _, s := range l.Servers {
			if s.Role != RoleNonvoter {
				v++
			}
		}
		if v != 5 {
			return fmt.Errorf("%d voters", v)
		}
		return nil
	})
	var follower *testNode
	for _, n := range nodes {
		if n.Name() != leader {
			follower = n
			break
		}
	}
	ctx := context.Background()
	term0 := nodes[0].coord.r.CurrentTerm()
	lat := func(name string, put func(i int) error) {
		var ds []time.Duration
		for i := 0; i < 500; i++ {
			s := time.Now()
			if err := put(i); err != nil {
				t.Fatal(err)
			}
			ds = append(ds, time.Since(s))
		}
		slices.Sort(ds)
		t.Logf("%s: 500 writes, 1 client: p50 %v p99 %v", name, ds[len(ds)/2].Round(10*time.Microsecond), ds[len(ds)*99/100].Round(10*time.Microsecond))
	}
	for _, via := range []*testNode{follower, nodes[0]} {
		c := clientOf(via)
		lat("gossip put via "+via.Name(), func(i int) error { _, err := c.Put(ctx, "", fmt.Sprint("g", i), []byte("v")); return err })
		lat("consistent put via "+via.Name()+" (leader "+leader+")", func(i int) error {
			_, err := c.ConsistentPut(ctx, "", fmt.Sprint("c", i), []byte("v"), api.PutOptions{})
			return err
		})
	}
	for _, clients := range []int{16, 64} {
		var n atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(5 * time.Second)
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				via := nodes[i%len(nodes)]
				if os.Getenv("PEERCTL_RAFT_MEASURE") == "leader" {
					via = nodes[slices.IndexFunc(nodes, func(n *testNode) bool { return n.Name() == leader })]
				}
				c := clientOf(via)
				for j := 0; time.Now().Before(stop); j++ {
					if _, err := c.ConsistentPut(ctx, "", fmt.Sprintf("t%d/%d", i, j), []byte("v"), api.PutOptions{}); err == nil {
						n.Add(1)
					}
				}
			}(i)
		}
		wg.Wait()
		t.Logf("consistent puts, %d clients (PEERCTL_RAFT_MEASURE=leader: all through the leader; else spread over the 5 nodes), 5 s: %.0f acknowledged/s", clients, float64(n.Load())/5)
	}
	t.Logf("elections during the run: term %d -> %d", term0, nodes[0].coord.r.CurrentTerm())
}
