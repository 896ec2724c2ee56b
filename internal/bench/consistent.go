package bench

// bench throughput --consistent: the same closed loops as throughput, on
// the consistent namespace (each write is a Raft entry committed by a
// quorum, fsynced, before it is acknowledged), alternated phase by phase
// with the same load on the gossip store, for the price of coordination:
// the ratio of their latencies.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// loadResult is what one closed-loop phase measured.
type loadResult struct {
	wps, p50, p99 float64 // writes/s; latency in ms
	agentsCPU     float64 // % of one core, all agents
	harnessCPU    float64
	end           time.Time // when the last client stopped
}

// closedLoop runs n clients, client j writing through node nodeOf(j) with
// put, each sending its next write when the previous one is acknowledged,
// for d. It fails at the first error.
func closedLoop(ctx context.Context, cl *benchCluster, n int, d time.Duration, nodeOf func(j int) int, put func(ctx context.Context, c *api.Client, j, seq int) error) (loadResult, error) {
	var stop atomic.Bool
	var acked atomic.Int64
	var firstErr atomic.Value
	lat := make([][]float64, n)
	var wg sync.WaitGroup
	cpuA0, cpuH0 := cl.cpuUsed()
	start := time.Now()
	for j := range n {
		c := cl.cs[nodeOf(j)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; !stop.Load() && ctx.Err() == nil; seq++ {
				t := time.Now()
				if err := put(ctx, c, j, seq); err != nil {
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, err)
					}
					stop.Store(true)
					return
				}
				lat[j] = append(lat[j], ms(time.Since(t)))
				acked.Add(1)
			}
		}()
	}
	timer := time.NewTimer(d)
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
	stop.Store(true)
	wg.Wait()
	end := time.Now()
	took := end.Sub(start).Seconds()
	cpuA1, cpuH1 := cl.cpuUsed()
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return loadResult{}, err
	}
	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Float64s(all)
	return loadResult{
		wps: float64(acked.Load()) / took, p50: percentile(all, 50), p99: percentile(all, 99),
		agentsCPU: 100 * (cpuA1 - cpuA0).Seconds() / took, harnessCPU: 100 * (cpuH1 - cpuH0).Seconds() / took,
		end: end,
	}, nil
}

// runBenchConsistentThroughput is `bench throughput --consistent`.
func runBenchConsistentThroughput(c *cli.Context, o *benchOpts, p throughputParams) error {
	if !c.IsSet("modes") {
		p.Modes = []string{"leader", "spread"}
	}
	for _, m := range p.Modes {
		if m != "leader" && m != "spread" && m != "one" {
			return fmt.Errorf("--modes %q: with --consistent want leader, spread or one", c.String("modes"))
		}
	}
	res := &benchResult{Workload: "throughput-consistent", Params: map[string]any{"throughput": p},
		Method: fmt.Sprintf("throughput --consistent N=%d clients=%s modes=%s dur=%s/phase value=%dB profile=%s reps=%d (closed loop; consistent and gossip phases alternated)",
			p.Nodes, c.String("clients"), strings.Join(p.Modes, ","), p.Duration, p.ValueSize, p.Profile, o.reps)}
	res.Notes = append(res.Notes,
		"leader: every client writes through the Raft leader; spread: client j through node j mod N (followers forward to the leader); one: through node1",
		"each consistent phase is followed by a gossip phase with the same clients and nodes; ratio = consistent p50 / gossip p50 of that pair",
		"public figures: etcd's performance guide: a 3-member cluster on GCE n-4 machines finishes a request in under 1 ms under light load and completes over 30,000 requests/s under heavy load; etcd v2.1.0 on 2-CPU GCE machines with SSDs: 60 writes/s with 1 client, 1,742 with 64 (leader only); here the harness and all agents share one machine's 2 cores")
	var defs []metricDef
	var targets []benchTarget
	for _, mode := range p.Modes {
		for _, n := range p.Clients {
			k := fmt.Sprintf("%s_c%d", mode, n)
			who := fmt.Sprintf("%s, %d %s", mode, n, plural(n, "client"))
			defs = append(defs,
				metricDef{k + "_cwps", who + ": consistent writes", "/s"},
				metricDef{k + "_cp50_ms", who + ": consistent put p50", "ms"},
				metricDef{k + "_cp99_ms", who + ": consistent put p99", "ms"},
				metricDef{k + "_gwps", who + ": gossip writes", "/s"},
				metricDef{k + "_gp50_ms", who + ": gossip put p50", "ms"},
				metricDef{k + "_ratio", who + ": consistent/gossip p50", "x"},
				metricDef{k + "_agents_cpu", who + ": CPU of all agents (consistent)", "%"},
			)
			note := ""
			if p.Nodes != 5 {
				note = "defined for N=5"
			}
			if n == 1 {
				targets = append(targets, benchTarget{k + "_cp50_ms", "goal", "<", 5, note})
			}
			if n == 64 {
				targets = append(targets, benchTarget{k + "_cwps", "goal", ">=", 3000, note})
			}
		}
	}
	value := benchValue(p.ValueSize)
	return finishBench(c, o, res, runReps(c.Context, o, res, defs, targets, func(ctx context.Context, rep int) (*benchRep, error) {
		var out *benchRep
		err := withCluster(ctx, o, p.Nodes, nil, func(cl *benchCluster) error {
			if _, err := cl.form(ctx, formTimeout(p.Nodes)); err != nil {
				return err
			}
			leader, _, err := cl.waitLeader(ctx, cl.all(), 60*time.Second)
			if err != nil {
				return fmt.Errorf("no leader known to all: %w", err)
			}
			o.say("leader %s", cl.names[leader])
			m := map[string]float64{}
			for _, mode := range p.Modes {
				nodeOf := func(j int) int {
					switch mode {
					case "leader":
						return leader
					case "spread":
						return j % len(cl.nodes)
					}
					return 0
				}
				for _, n := range p.Clients {
					k := fmt.Sprintf("%s_c%d", mode, n)
					prefix := fmt.Sprintf("bench/t%d/%s/", rep, k)
					cr, err := closedLoop(ctx, cl, n, p.Duration, nodeOf, func(ctx context.Context, c *api.Client, j, seq int) error {
						// Each client overwrites its own few keys: the
						// consistent namespace is bounded (6 MiB), and an
						// overwrite costs Raft what a new key does.
						_, err := c.ConsistentPut(ctx, "", fmt.Sprintf("bench/c/%d/%d", j, seq%consistentKeysPerClient), value, api.PutOptions{})
						return err
					})
					if err != nil {
						return fmt.Errorf("consistent, %s with %d clients: %w", mode, n, err)
					}
					gr, err := closedLoop(ctx, cl, n, p.Duration, nodeOf, func(ctx context.Context, c *api.Client, j, seq int) error {
						_, err := c.Put(ctx, "", fmt.Sprintf("%sg/%d/%d", prefix, j, seq), value)
						return err
					})
					if err != nil {
						return fmt.Errorf("gossip, %s with %d clients: %w", mode, n, err)
					}
					if _, _, err := cl.waitConverged(ctx, cl.all(), 20*time.Millisecond, p.Timeout); err != nil {
						return fmt.Errorf("nodes did not converge after the gossip phase: %w", err)
					}
					m[k+"_cwps"], m[k+"_cp50_ms"], m[k+"_cp99_ms"] = cr.wps, cr.p50, cr.p99
					m[k+"_gwps"], m[k+"_gp50_ms"], m[k+"_ratio"] = gr.wps, gr.p50, cr.p50/gr.p50
					m[k+"_agents_cpu"] = cr.agentsCPU
					o.say("  %s, %d clients: consistent %.0f writes/s p50 %s p99 %s; gossip %.0f writes/s p50 %s; ratio %.2fx; agents CPU %.0f%%",
						mode, n, cr.wps, fmtFigure(cr.p50, "ms"), fmtFigure(cr.p99, "ms"), gr.wps, fmtFigure(gr.p50, "ms"), cr.p50/gr.p50, cr.agentsCPU)
				}
			}
			out = &benchRep{Metrics: m}
			return nil
		})
		return out, err
	}))
}

// consistentKeysPerClient is how many keys each client of a consistent
// phase overwrites in turn: 64 clients hold at most 2,048 keys, far below
// the consistent namespace's bound whatever the run's length.
const consistentKeysPerClient = 32
