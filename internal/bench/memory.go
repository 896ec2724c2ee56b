package bench

// bench memory: the resident set size (VmRSS in /proc/PID/status) of idle
// daemons with an empty store and after loading K keys, the time from
// process start until the API answers, and, with --max-nodes, whether
// clusters of growing size form and converge on this machine.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

func benchMemoryCommand() *cli.Command {
	return &cli.Command{
		Name:  "memory",
		Usage: "RSS per idle daemon empty and loaded, start-up time, and the largest cluster that converges",
		UsageText: `peerctl bench memory [--nodes N] [--keys K] [--max-nodes 25,50,100] [options]

Examples:
   peerctl bench memory --keys 100000
   peerctl bench memory --keys 0 --max-nodes 25,50,100 --reps 1`,
		Description: `Starts N daemons one after another, timing each from process start until
its API answers. Once all see each other alive and have idled for --idle,
reads each one's RSS; then writes --keys keys spread over the nodes, waits
until all digests agree, idles again and reads RSS again. Reports the
median over the nodes.

--max-nodes then starts clusters of each size in turn, and checks that
within --deadline every node sees every node alive and, after a few
writes, all digests agree. It stops at the first size that fails.`,
		Flags: benchFlags(3,
			&cli.IntFlag{Name: "keys", Value: 100000, Usage: "keys `K` to load (0: skip)"},
			valueSizeFlag(),
			&cli.DurationFlag{Name: "idle", Value: 3 * time.Second, Usage: "idle `D` before reading RSS"},
			&cli.StringFlag{Name: "max-nodes", Usage: "cluster sizes `N,...` to try in turn, e.g. 25,50,100"},
			&cli.DurationFlag{Name: "deadline", Value: 3 * time.Minute, Usage: "time `D` each --max-nodes cluster has to converge"},
		),
		Action: runBenchMemory,
	}
}

type memoryParams struct {
	Nodes     int           `json:"nodes"`
	Keys      int           `json:"keys"`
	ValueSize int           `json:"value_size"`
	Idle      time.Duration `json:"idle_ns"`
	MaxNodes  []int         `json:"max_nodes,omitempty"`
	Deadline  time.Duration `json:"deadline_ns"`
	Profile   string        `json:"profile"`
}

func runBenchMemory(c *cli.Context) error {
	o, err := benchOptions(c)
	if err != nil {
		return err
	}
	p := memoryParams{Nodes: o.nodes, Keys: c.Int("keys"), ValueSize: c.Int("value-size"), Idle: c.Duration("idle"),
		Deadline: c.Duration("deadline"), Profile: o.profile}
	if s := c.String("max-nodes"); s != "" {
		if p.MaxNodes, err = intList("max-nodes", s); err != nil {
			return err
		}
	}
	method := fmt.Sprintf("memory N=%d keys=%d value=%dB idle=%s profile=%s reps=%d", p.Nodes, p.Keys, p.ValueSize, p.Idle, p.Profile, o.reps)
	if len(p.MaxNodes) > 0 {
		method += fmt.Sprintf(" max-nodes=%s deadline=%s", c.String("max-nodes"), p.Deadline)
	}
	res := &benchResult{Workload: "memory", Method: method, Params: map[string]any{"memory": p}}
	res.Notes = append(res.Notes, "RSS = VmRSS of each agent process, median over the nodes; start → serving from exec until GET /v1/info answers")
	defs := []metricDef{
		{"serve_first_ms", "start → serving, first node", "ms"},
		{"serve_median_ms", "start → serving, median node", "ms"},
		{"rss_idle_mb", "idle RSS, empty store", "MB"},
		{"idle_heap_mb", "  of which Go heap in use", "MB"},
		{"idle_gosys_mb", "  Go runtime total (heap, stacks, ...)", "MB"},
	}
	targets := []benchTarget{{"rss_idle_mb", "goal", "<=", 30, ""}, {"rss_idle_mb", "serf", "<=", 17, "serf agent idle"}}
	if p.Keys > 0 {
		defs = append(defs, metricDef{"rss_loaded_mb", fmt.Sprintf("idle RSS, %d keys", p.Keys), "MB"},
			metricDef{"loaded_heap_mb", "  of which Go heap in use", "MB"},
			metricDef{"loaded_gosys_mb", "  Go runtime total (heap, stacks, ...)", "MB"},
			metricDef{"load_rate", "load write rate", "/s"})
		note := ""
		if p.Keys != 100000 {
			note = "defined for 100,000 keys"
		}
		targets = append(targets, benchTarget{"rss_loaded_mb", "goal", "<=", 80, note})
	}
	for _, n := range p.MaxNodes {
		k := fmt.Sprintf("scale_%d", n)
		defs = append(defs,
			metricDef{k + "_ok", fmt.Sprintf("%d nodes converged", n), "bool"},
			metricDef{k + "_alive_s", fmt.Sprintf("%d nodes: start → all see all alive", n), "s"},
			metricDef{k + "_converged_s", fmt.Sprintf("%d nodes: start → digests equal", n), "s"},
			metricDef{k + "_rss_mb", fmt.Sprintf("%d nodes: median RSS", n), "MB"},
		)
		if n == 100 {
			targets = append(targets, benchTarget{k + "_ok", "goal", "==", 1, ""})
		}
	}
	if len(p.MaxNodes) > 0 {
		defs = append(defs, metricDef{"max_nodes", "largest N converged", "count"})
	}
	return finishBench(c, o, res, runReps(c.Context, o, res, defs, targets, func(ctx context.Context, rep int) (*benchRep, error) {
		m := map[string]float64{}
		var notes []string
		if err := memoryRep(ctx, o, p, rep, m); err != nil {
			return nil, err
		}
		if len(p.MaxNodes) > 0 {
			m["max_nodes"] = 0
		}
		for _, n := range p.MaxNodes {
			ok, note, err := scaleRep(ctx, o, p, n, m)
			if err != nil {
				return nil, err
			}
			if !ok {
				notes = append(notes, fmt.Sprintf("%d nodes did not converge within %s: %s", n, p.Deadline, note))
				break
			}
			m["max_nodes"] = float64(n)
		}
		return &benchRep{Metrics: m, Notes: notes}, nil
	}))
}

// memoryRep measures start-up and RSS of p.Nodes daemons.
func memoryRep(ctx context.Context, o *benchOpts, p memoryParams, rep int, m map[string]float64) error {
	return withCluster(ctx, o, p.Nodes, nil, func(cl *benchCluster) error {
		var serve []float64
		for i := range cl.nodes {
			var join []string
			if i > 0 {
				join = []string{cl.nodes[0].Gossip}
			}
			if err := cl.startNode(i, join); err != nil {
				return err
			}
			if err := cl.waitServing(ctx, i, 30*time.Second); err != nil {
				return err
			}
			if err := cl.exited(); err != nil {
				return err
			}
			serve = append(serve, ms(time.Since(cl.startedAt(i))))
		}
		m["serve_first_ms"] = serve[0]
		sort.Float64s(serve)
		m["serve_median_ms"] = median(serve)
		if err := cl.waitAlive(ctx, cl.all(), cl.names, formTimeout(p.Nodes)); err != nil {
			return err
		}
		rss, err := idleRSS(ctx, o, cl, p.Idle)
		if err != nil {
			return err
		}
		m["rss_idle_mb"] = rss
		heapStats(ctx, cl, m, "idle")
		o.say("  start → serving: first %s, median %s; idle RSS %.1f MB", fmtFigure(m["serve_first_ms"], "ms"), fmtFigure(m["serve_median_ms"], "ms"), rss)
		if p.Keys == 0 {
			return nil
		}
		_, took, err := writeKeys(ctx, o, cl, cl.all(), fmt.Sprintf("bench/m%d/", rep), p.Keys, p.ValueSize, 32)
		if err != nil {
			return err
		}
		m["load_rate"] = float64(p.Keys) / took.Seconds()
		o.say("  wrote %d keys in %s; waiting until all nodes agree", p.Keys, took.Round(time.Millisecond))
		if _, _, err := cl.waitConverged(ctx, cl.all(), 200*time.Millisecond, 5*time.Minute); err != nil {
			return err
		}
		if rss, err = idleRSS(ctx, o, cl, p.Idle); err != nil {
			return err
		}
		m["rss_loaded_mb"] = rss
		heapStats(ctx, cl, m, "loaded")
		o.say("  idle RSS with %d keys: %.1f MB", p.Keys, rss)
		return nil
	})
}

// heapStats records the median over the nodes of the Go heap in use and
// of all memory the Go runtime holds, from /metrics, as WHEN_heap_mb and
// WHEN_gosys_mb: what RSS holds beyond them is off the Go heap (mmapped
// files, C allocations).
func heapStats(ctx context.Context, cl *benchCluster, m map[string]float64, when string) {
	ps, err := cl.metricsAll(ctx, cl.all())
	if err != nil {
		return
	}
	var heap, sys []float64
	for _, p := range ps {
		heap = append(heap, p["go_memstats_heap_inuse_bytes"]/(1<<20))
		sys = append(sys, p["go_memstats_sys_bytes"]/(1<<20))
	}
	sort.Float64s(heap)
	sort.Float64s(sys)
	m[when+"_heap_mb"], m[when+"_gosys_mb"] = median(heap), median(sys)
}

// idleRSS waits d and returns the median RSS of the nodes in MB (2^20).
func idleRSS(ctx context.Context, o *benchOpts, cl *benchCluster, d time.Duration) (float64, error) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	var rs []float64
	for i := range cl.nodes {
		b, err := rssBytes(cl.proc(i).PID())
		if err != nil {
			return 0, err
		}
		rs = append(rs, float64(b)/(1<<20))
	}
	sort.Float64s(rs)
	return median(rs), nil
}

// scaleRep starts n daemons and checks that they converge within the
// deadline. It reports false, and why, if they did not.
func scaleRep(ctx context.Context, o *benchOpts, p memoryParams, n int, m map[string]float64) (bool, string, error) {
	k := fmt.Sprintf("scale_%d", n)
	m[k+"_ok"] = 0
	ok, why := false, ""
	err := withCluster(ctx, o, n, nil, func(cl *benchCluster) error {
		o.say("starting %d nodes", n)
		t0 := time.Now()
		if err := cl.start(ctx); err != nil {
			return err
		}
		dctx, cancel := context.WithDeadline(ctx, t0.Add(p.Deadline))
		defer cancel()
		if err := cl.waitAlive(dctx, cl.all(), cl.names, p.Deadline); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			why = err.Error()
			return nil
		}
		m[k+"_alive_s"] = time.Since(t0).Seconds()
		o.say("  all %d see all alive after %s; writing 10 keys", n, time.Since(t0).Round(time.Millisecond))
		for i := range 10 {
			node := rand.IntN(n)
			if _, err := cl.cs[node].Put(dctx, "", fmt.Sprintf("bench/s%d/%d", n, i), []byte("x")); err != nil {
				why = err.Error()
				return nil
			}
		}
		at, _, err := cl.waitConverged(dctx, cl.all(), 500*time.Millisecond, time.Until(t0.Add(p.Deadline)))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			why = err.Error()
			return nil
		}
		m[k+"_converged_s"] = at.Sub(t0).Seconds()
		var rs []float64
		for i := range cl.nodes {
			if b, err := rssBytes(cl.proc(i).PID()); err == nil {
				rs = append(rs, float64(b)/(1<<20))
			}
		}
		slices.Sort(rs)
		m[k+"_rss_mb"] = median(rs)
		m[k+"_ok"] = 1
		ok = true
		o.say("  %d nodes converged after %s; median RSS %.1f MB", n, at.Sub(t0).Round(time.Millisecond), median(rs))
		return nil
	})
	if err != nil {
		return false, "", err
	}
	return ok, strings.TrimSpace(why), nil
}
