package bench

// bench failover: kill -9 the Raft leader of a fresh cluster and time
// until a survivor names a new leader, and until the first consistent
// write sent after the kill is acknowledged.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/cluster"
)

func benchFailoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "failover",
		Usage: "kill -9 the Raft leader: time until a new leader, and until consistent writes are acknowledged again",
		UsageText: `peerctl bench failover [--nodes N] [--reps R] [options]

Examples:
   peerctl bench failover --nodes 5 --reps 7
   peerctl bench failover --nodes 3 --reps 7`,
		Description: `Forms a cluster, waits until every node names the same Raft leader, and
starts --writers clients writing consistent keys in closed loops through
the followers (each retries at once after an error). Then it kills the
leader with SIGKILL and polls every survivor's GET /v1/leader every 10 ms.
Reports the time from the kill until the first survivor names a leader
other than the dead one (elected), until every survivor names it, and
until the first consistent write sent after the kill is acknowledged.
Each repetition runs on a fresh cluster.`,
		Flags: benchFlags(5,
			&cli.IntFlag{Name: "writers", Value: 4, Usage: "`W` clients writing through the followers"},
			&cli.DurationFlag{Name: "settle", Value: 2 * time.Second, Usage: "write for `D` before the kill"},
			&cli.DurationFlag{Name: "timeout", Value: 60 * time.Second, Usage: "give up waiting for a new leader or a write after `D`"},
		),
		Action: runBenchFailover,
	}
}

type failoverParams struct {
	Nodes   int           `json:"nodes"`
	Profile string        `json:"profile"`
	Writers int           `json:"writers"`
	Settle  time.Duration `json:"settle_ns"`
	Timeout time.Duration `json:"timeout_ns"`
}

func runBenchFailover(c *cli.Context) error {
	o, err := benchOptions(c)
	if err != nil {
		return err
	}
	p := failoverParams{Nodes: o.nodes, Profile: o.profile, Writers: c.Int("writers"), Settle: c.Duration("settle"), Timeout: c.Duration("timeout")}
	if p.Nodes < 3 {
		return fmt.Errorf("--nodes %d: a leader can fail over only with at least 3 nodes", p.Nodes)
	}
	if p.Writers < 1 {
		return fmt.Errorf("--writers %d: want at least 1", p.Writers)
	}
	res := &benchResult{Workload: "failover", Params: map[string]any{"failover": p},
		Method: fmt.Sprintf("failover N=%d profile=%s kill -9 the raft leader, %d writers through the followers, poll /v1/leader every 10ms, reps=%d (fresh cluster each)",
			p.Nodes, p.Profile, p.Writers, o.reps)}
	res.Notes = append(res.Notes,
		"times from the SIGKILL; new leader = first reply of a survivor's GET /v1/leader naming a leader other than the killed one; write = first consistent put sent after the kill and acknowledged",
		"public figures: etcd's documented defaults are a 100 ms heartbeat and a 1000 ms election timeout (failover >= 1 s); hashicorp/raft's defaults (Consul, raft_multiplier 1) are 1000 ms heartbeat and election timeouts (1-2 s), Consul's default raft_multiplier 5 scales them to 5 s")
	defs := []metricDef{
		{"elected_ms", "a survivor names a new leader", "ms"},
		{"all_know_ms", "every survivor names it", "ms"},
		{"write_ms", "first consistent write acknowledged", "ms"},
		{"new_term", "terms the election took", "count"},
		{"write_errors", "writes refused or failed meanwhile", "count"},
	}
	note := ""
	if p.Nodes != 5 || p.Profile != "local" {
		note = "defined for N=5, local"
	}
	targets := []benchTarget{
		{"write_ms", "goal", "<", 1000, note},
		{"elected_ms", "etcd election timeout", "<", 1000, "etcd default"},
		{"elected_ms", "hashicorp/raft", "<", 2000, "Consul raft_multiplier 1: 1 s heartbeat + up to 1 s election"},
	}
	return finishBench(c, o, res, runReps(c.Context, o, res, defs, targets, func(ctx context.Context, rep int) (*benchRep, error) {
		return failoverRep(ctx, o, p, rep)
	}))
}

// leaderOf asks node i whom it names leader.
func (cl *benchCluster) leaderOf(ctx context.Context, i int, timeout time.Duration) (*api.Leader, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return cl.cs[i].Leader(rctx, "")
}

// waitLeader waits until every node in idx names the same leader and
// returns its index.
func (cl *benchCluster) waitLeader(ctx context.Context, idx []int, timeout time.Duration) (int, *api.Leader, error) {
	leader := -1
	var info *api.Leader
	var exitErr error
	err := cluster.WaitFor(ctx, timeout, 20*time.Millisecond, func(ctx context.Context) (bool, string) {
		if exitErr = cl.exited(); exitErr != nil {
			return true, ""
		}
		name := ""
		for _, i := range idx {
			l, err := cl.leaderOf(ctx, i, 2*time.Second)
			if err != nil {
				return false, fmt.Sprintf("%s: leader: %v", cl.names[i], err)
			}
			if l.Leader == "" || name != "" && l.Leader != name {
				return false, fmt.Sprintf("%s names leader %q in term %d", cl.names[i], l.Leader, l.Term)
			}
			name, info = l.Leader, l
		}
		for i, n := range cl.names {
			if n == name {
				leader = i
				return true, ""
			}
		}
		return false, fmt.Sprintf("leader %q is no node of the cluster", name)
	})
	if exitErr != nil {
		return -1, nil, exitErr
	}
	return leader, info, err
}

// failoverRep kills the leader of a fresh cluster and times the recovery.
func failoverRep(ctx context.Context, o *benchOpts, p failoverParams, rep int) (*benchRep, error) {
	var out *benchRep
	err := withCluster(ctx, o, p.Nodes, nil, func(cl *benchCluster) error {
		took, err := cl.form(ctx, formTimeout(p.Nodes))
		if err != nil {
			return err
		}
		leader, info, err := cl.waitLeader(ctx, cl.all(), p.Timeout)
		if err != nil {
			return fmt.Errorf("no leader known to all: %w", err)
		}
		old := cl.names[leader]
		o.say("%d nodes formed a cluster in %s; leader %s in term %d", p.Nodes, took.Round(time.Millisecond), old, info.Term)
		survivors := cl.except(leader)

		// Writers through the followers, from before the kill.
		var killAt atomic.Int64 // unix nanos of the kill, 0 before
		var firstWrite atomic.Int64
		var errs atomic.Int64
		wctx, wcancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for w := range p.Writers {
			node := survivors[w%len(survivors)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := 0; wctx.Err() == nil; seq++ {
					sent := time.Now()
					rctx, cancel := context.WithTimeout(wctx, 10*time.Second)
					_, err := cl.cs[node].ConsistentPut(rctx, "", fmt.Sprintf("bench/f%d/%d/%d", rep, w, seq), []byte("x"), api.PutOptions{})
					cancel()
					k := killAt.Load()
					if err != nil {
						if k != 0 && wctx.Err() == nil {
							errs.Add(1)
							time.Sleep(time.Millisecond) // do not spin on a refusing node
						}
						continue
					}
					if k != 0 && sent.UnixNano() >= k {
						firstWrite.CompareAndSwap(0, time.Now().UnixNano())
					}
				}
			}()
		}
		defer func() { wcancel(); wg.Wait() }()
		select {
		case <-time.After(p.Settle):
		case <-ctx.Done():
			return ctx.Err()
		}

		tKill := time.Now()
		killAt.Store(tKill.UnixNano())
		if _, err := cl.kill(leader); err != nil {
			return err
		}
		o.say("killed leader %s (SIGKILL); polling %d survivors every 10ms", old, len(survivors))

		elected, allKnow := time.Duration(-1), time.Duration(-1)
		var newName string
		var newTerm uint64
		err = cluster.WaitFor(ctx, p.Timeout, 10*time.Millisecond, func(ctx context.Context) (bool, string) {
			know := 0
			for _, i := range survivors {
				l, err := cl.leaderOf(ctx, i, time.Second)
				if err != nil || l.Leader == "" || l.Leader == old {
					continue
				}
				if elected < 0 {
					elected, newName, newTerm = time.Since(tKill), l.Leader, l.Term
				}
				if l.Leader == newName {
					know++
				}
			}
			if know == len(survivors) && allKnow < 0 {
				allKnow = time.Since(tKill)
			}
			return allKnow >= 0 && firstWrite.Load() != 0, fmt.Sprintf("%d of %d survivors name a new leader; write acknowledged: %v", know, len(survivors), firstWrite.Load() != 0)
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("after killing leader %s: %w", old, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		write := time.Duration(firstWrite.Load() - tKill.UnixNano())
		m := map[string]float64{
			"elected_ms": ms(elected), "all_know_ms": ms(allKnow), "write_ms": ms(write),
			"new_term": float64(newTerm - info.Term), "write_errors": float64(errs.Load()),
		}
		o.say("  new leader %s (term %d) named after %s, by all after %s; first write acknowledged after %s",
			newName, newTerm, fmtFigure(ms(elected), "ms"), fmtFigure(ms(allKnow), "ms"), fmtFigure(ms(write), "ms"))
		out = &benchRep{Metrics: m, Detail: map[string]any{"old_leader": old, "new_leader": newName, "old_term": info.Term, "new_term": newTerm}}
		return nil
	})
	return out, err
}
