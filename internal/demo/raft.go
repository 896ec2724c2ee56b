package demo

// What the consistency and coordination chapters share: the Raft group's
// leader as the nodes see it, write latencies, and partitions.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/cluster"
	"github.com/peerctl/peerctl/internal/figures"
)

const (
	leaderTimeout = 30 * time.Second // a Raft leader known to every node
	// opTimeout bounds one consistent operation: a node without a quorum
	// refuses within 5 s (internal/api/raft.go).
	opTimeout = 15 * time.Second
)

// slowClient returns a client for node i whose requests may take up to
// opTimeout, for consistent operations.
func (g *group) slowClient(i int) *api.Client {
	return api.NewClientWith(g.nodes[i].API, &http.Client{Timeout: opTimeout})
}

// leaders asks each node at idx whom it sees as the Raft leader.
func (g *group) leaders(ctx context.Context, idx []int) ([]*api.Leader, []error) {
	out := make([]*api.Leader, len(idx))
	errs := make([]error, len(idx))
	for k, i := range idx {
		out[k], errs[k] = g.client(i).Leader(ctx, "")
	}
	return out, errs
}

// waitLeader waits until every node at idx names the same leader, one of
// the nodes at idx, and returns it with its term.
func (g *group) waitLeader(idx []int, timeout time.Duration, not string) (leader string, term uint64, err error) {
	in := map[string]bool{}
	for _, i := range idx {
		in[g.nodes[i].Name] = true
	}
	err = g.waitFor(timeout, func(ctx context.Context) (bool, string) {
		ls, errs := g.leaders(ctx, idx)
		leader, term = "", 0
		for k, l := range ls {
			name := g.nodes[idx[k]].Name
			switch {
			case errs[k] != nil:
				return false, fmt.Sprintf("%s: %v", name, errs[k])
			case l.Leader == "" || l.Leader == not || !in[l.Leader]:
				return false, fmt.Sprintf("%s sees leader %q", name, l.Leader)
			case leader != "" && l.Leader != leader:
				return false, fmt.Sprintf("%s sees %s, another sees %s", name, l.Leader, leader)
			}
			leader, term = l.Leader, max(term, l.Term)
		}
		return true, ""
	})
	return leader, term, err
}

// index returns the position of the node called name.
func (g *group) index(name string) int {
	return slices.IndexFunc(g.nodes, func(n cluster.Node) bool { return n.Name == name })
}

// latencies times count sequential writes through node i: consistent ones
// if consistent, else gossip ones. It returns the sorted latencies in ms.
func (g *group) latencies(ctx context.Context, i, count int, consistent bool, prefix string) ([]float64, error) {
	c := g.slowClient(i)
	var out []float64
	for k := range count {
		key := fmt.Sprintf("%s/%d", prefix, k)
		t0 := time.Now()
		var err error
		if consistent {
			_, err = c.ConsistentPut(ctx, "", key, []byte(key), api.PutOptions{})
		} else {
			_, err = c.Put(ctx, "", key, []byte(key))
		}
		if err != nil {
			return nil, fmt.Errorf("write %s at %s: %w", key, g.nodes[i].Name, err)
		}
		out = append(out, ms(time.Since(t0)))
	}
	sort.Float64s(out)
	return out, nil
}

// price measures gossip and consistent write latency through node i and
// records the figures.
func (r *run) price(g *group, i, count int) (gossipP50, consistentP50 float64, err error) {
	gl, err := g.latencies(r.ctx, i, count, false, "price/gossip")
	if err != nil {
		return 0, 0, err
	}
	cl, err := g.latencies(r.ctx, i, count, true, "price/consistent")
	if err != nil {
		return 0, 0, err
	}
	gp, cp := figures.Median(gl), figures.Median(cl)
	r.table([][]string{
		{"WRITE", "P50", "P99", "WHAT IT WAITS FOR"},
		{"gossip", figures.Format(gp, "ms"), figures.Format(figures.Percentile(gl, 99), "ms"), "this node's disk; peers get it afterwards"},
		{"consistent", figures.Format(cp, "ms"), figures.Format(figures.Percentile(cl, 99), "ms"), "the leader and a majority of voters, each on disk"},
	})
	r.figure("gossip write p50", gp, "ms")
	r.figure("consistent write p50", cp, "ms")
	r.figure("consistent / gossip write latency", cp/gp, "x")
	return gp, cp, nil
}

// partition splits the group into the two sides through node via's API and
// returns once every node applies the rules.
func (g *group) partition(via int, a, b []int) error {
	req := api.FaultRequest{Kind: api.ReqPartition, Groups: [][]string{g.names(a...), g.names(b...)}, Reason: "demo " + g.r.chapter}
	res, err := g.client(via).InjectFault(g.r.ctx, req)
	if err != nil {
		return fmt.Errorf("partition %s: %w", req.Describe(), err)
	}
	var missed []string
	for _, n := range res.Nodes {
		if n.Error != "" {
			missed = append(missed, n.Node+": "+n.Error)
		}
	}
	if len(missed) > 0 {
		return fmt.Errorf("partition %s: not applied at %s", req.Describe(), strings.Join(missed, "; "))
	}
	return nil
}

// heal lifts every fault through node via.
func (g *group) heal(via int) error {
	if _, err := g.client(via).Heal(g.r.ctx, ""); err != nil {
		return fmt.Errorf("heal: %w", err)
	}
	return nil
}

// refused tries a consistent write through node i and expects a "no
// quorum" refusal; it returns how long the refusal took.
func (g *group) refused(i int, key, value string) (time.Duration, error) {
	t0 := time.Now()
	wr, err := g.slowClient(i).ConsistentPut(g.r.ctx, "", key, []byte(value), api.PutOptions{})
	took := time.Since(t0)
	switch {
	case err == nil:
		return took, fmt.Errorf("%s acknowledged a consistent write (index %s) on the minority side", g.nodes[i].Name, wr.Version)
	case !errors.Is(err, api.ErrNoQuorum):
		return took, fmt.Errorf("consistent write at %s: want a no-quorum refusal, got: %w", g.nodes[i].Name, err)
	}
	return took, nil
}

// acked writes key through node i in the consistent namespace, retrying
// while the group has no leader (an election after a partition), and
// returns the acknowledgement and how long it took.
func (g *group) acked(i int, key, value string, timeout time.Duration) (*api.WriteResult, time.Duration, error) {
	t0 := time.Now()
	var wr *api.WriteResult
	err := g.waitFor(timeout, func(ctx context.Context) (bool, string) {
		var err error
		wr, err = g.slowClient(i).ConsistentPut(ctx, "", key, []byte(value), api.PutOptions{})
		if err != nil {
			return false, fmt.Sprintf("consistent write at %s: %v", g.nodes[i].Name, err)
		}
		return true, ""
	})
	return wr, time.Since(t0), err
}
