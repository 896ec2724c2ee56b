package bench

// bench catchup: one node is killed, K keys are written at the others, and
// the node is restarted on its data dir. The figure is the time from the
// restart (process start) until its digest equals the others', and the
// replication bytes it received meanwhile against the floor: the key and
// value bytes of the entries it missed.
//
// The bytes received are the restarted node's own count of replication
// bytes received (requests served, pushes, replies to its calls), which
// starts at zero with the process, read 1 s after its digest matched so
// that what was still in flight because of the catch-up is included.

import (
	"context"
	"fmt"
	"github.com/peerctl/peerctl/internal/cluster"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
)

func benchCatchupCommand() *cli.Command {
	return &cli.Command{
		Name:    "catchup",
		Aliases: []string{"catch-up"},
		Usage:   "how fast a restarted node catches up on the writes it missed, and at what cost in bytes",
		UsageText: `peerctl bench catchup [--keys K] [--nodes N] [options]

Examples:
   peerctl bench catchup --keys 10000
   peerctl bench catchup --keys 100000 --reps 1`,
		Description: `Forms a cluster, kills the last node (SIGKILL) and waits until the others
mark it failed, writes --keys keys (of --value-size bytes) at the other
nodes, waits until they agree, then restarts the node on its data dir and
polls its digest every 20 ms until it equals the others'. Reports that
time (from process start and from the moment its API answered), and the
replication bytes it received against the size of the missed keys and
values.`,
		Flags: benchFlags(5,
			&cli.IntFlag{Name: "keys", Value: 1000, Usage: "keys `K` written while the node is down"},
			valueSizeFlag(),
			&cli.IntFlag{Name: "writers", Value: 16, Usage: "concurrent `C` clients writing the keys"},
			&cli.DurationFlag{Name: "timeout", Value: 120 * time.Second, Usage: "give up on a step after `D`"},
		),
		Action: runBenchCatchup,
	}
}

type catchupParams struct {
	Nodes     int           `json:"nodes"`
	Keys      int           `json:"keys"`
	ValueSize int           `json:"value_size"`
	Writers   int           `json:"writers"`
	Timeout   time.Duration `json:"timeout_ns"`
	Profile   string        `json:"profile"`
}

func runBenchCatchup(c *cli.Context) error {
	o, err := benchOptions(c)
	if err != nil {
		return err
	}
	p := catchupParams{Nodes: o.nodes, Keys: c.Int("keys"), ValueSize: c.Int("value-size"), Writers: c.Int("writers"),
		Timeout: c.Duration("timeout"), Profile: o.profile}
	if p.Nodes < 2 || p.Keys < 1 || p.Writers < 1 {
		return fmt.Errorf("catchup needs --nodes >= 2, --keys >= 1, --writers >= 1")
	}
	res := &benchResult{Workload: "catchup", Params: map[string]any{"catchup": p},
		Method: fmt.Sprintf("catchup N=%d keys=%d value=%dB profile=%s: one node down while the keys are written elsewhere, then restarted; reps=%d",
			p.Nodes, p.Keys, p.ValueSize, p.Profile, o.reps)}
	res.Notes = append(res.Notes, "bytes received = the restarted node's replication bytes received (its /metrics, from process start until 1 s after its digest matched); membership traffic excluded; floor = key+value bytes of the missed writes")
	defs := []metricDef{
		{"catchup_s", "restart → digest equal", "s"},
		{"catchup_serving_s", "API serving → digest equal", "s"},
		{"serve_s", "restart → API serving", "s"},
		{"bytes_in", "replication bytes received", "B"},
		{"floor_bytes", "missed keys+values (floor)", "B"},
		{"bytes_ratio", "received ÷ floor", "x"},
		{"write_rate", "rate the keys were written", "/s"},
	}
	targets := []benchTarget{
		{"catchup_s", "goal", "<", 2, ""},
		{"bytes_ratio", "goal", "<", 1.5, ""},
	}
	if p.Keys != 10000 {
		targets[0].Note, targets[1].Note = "defined for 10,000 keys", "defined for 10,000 keys"
	}
	return finishBench(c, o, res, runReps(c.Context, o, res, defs, targets, func(ctx context.Context, rep int) (*benchRep, error) {
		return catchupRep(ctx, o, p, rep)
	}))
}

func catchupRep(ctx context.Context, o *benchOpts, p catchupParams, rep int) (*benchRep, error) {
	var out *benchRep
	err := withCluster(ctx, o, p.Nodes, nil, func(cl *benchCluster) error {
		if _, err := cl.form(ctx, formTimeout(p.Nodes)); err != nil {
			return err
		}
		victim := p.Nodes - 1
		vname := cl.names[victim]
		others := cl.except(victim)
		if _, err := cl.kill(victim); err != nil {
			return err
		}
		o.say("killed %s; waiting until the others mark it failed", vname)
		if err := cluster.WaitFor(ctx, p.Timeout, 100*time.Millisecond, func(ctx context.Context) (bool, string) {
			views, errs := cl.members(ctx, others)
			for k, v := range views {
				if errs[k] != nil {
					return false, errs[k].Error()
				}
				if st := cluster.StatusIn(v, vname); st != "failed" {
					return false, fmt.Sprintf("%s sees %s as %s", cl.names[others[k]], vname, st)
				}
			}
			return true, ""
		}); err != nil {
			return err
		}

		prefix := fmt.Sprintf("bench/c%d/", rep)
		floor, took, err := writeKeys(ctx, o, cl, others, prefix, p.Keys, p.ValueSize, p.Writers)
		if err != nil {
			return err
		}
		o.say("wrote %d keys at %d nodes in %s (%.0f/s); waiting until they agree", p.Keys, len(others), took.Round(time.Millisecond), float64(p.Keys)/took.Seconds())
		if _, _, err := cl.waitConverged(ctx, others, 100*time.Millisecond, p.Timeout); err != nil {
			return fmt.Errorf("the other nodes did not converge: %w", err)
		}
		infos, err := cl.infos(ctx, others)
		if err != nil {
			return err
		}
		ref := infos[0].Store.Digest

		before, err := cl.metricsAll(ctx, others)
		if err != nil {
			return err
		}
		if err := cl.restart(victim); err != nil {
			return err
		}
		t0 := cl.startedAt(victim)
		o.say("restarted %s; polling its digest every 20ms", vname)
		if err := cl.waitServing(ctx, victim, p.Timeout); err != nil {
			return err
		}
		tServe := time.Now()
		var tEq time.Time
		err = cluster.WaitFor(ctx, p.Timeout, 20*time.Millisecond, func(ctx context.Context) (bool, string) {
			if err := cl.exited(); err != nil {
				return true, ""
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			in, err := cl.cs[victim].Info(rctx, "")
			if err != nil {
				return false, err.Error()
			}
			if in.Store.Digest != ref {
				return false, fmt.Sprintf("%s holds %d of %d keys", vname, in.Store.Keys, p.Keys)
			}
			tEq = time.Now()
			return true, ""
		})
		if err == nil {
			err = cl.exited()
		}
		if err != nil {
			return fmt.Errorf("%s did not catch up: %w", vname, err)
		}
		// Count what is still in flight because of the catch-up, such as
		// the same entries pushed by several peers.
		time.Sleep(time.Second)
		after, err := cl.metricsAll(ctx, others)
		if err != nil {
			return err
		}
		vm, err := cl.metrics(ctx, victim)
		if err != nil {
			return err
		}
		ot := trafficOf(promDelta(before, after))
		own := trafficOf(promDelta(nil, []promSample{vm}))
		in := sumMap(own.ReplBytesRecv)
		m := map[string]float64{
			"catchup_s":         tEq.Sub(t0).Seconds(),
			"catchup_serving_s": tEq.Sub(tServe).Seconds(),
			"serve_s":           tServe.Sub(t0).Seconds(),
			"bytes_in":          in,
			"floor_bytes":       float64(floor),
			"bytes_ratio":       in / float64(floor),
			"write_rate":        float64(p.Keys) / took.Seconds(),
		}
		o.say("  caught up %s after restart (%s after serving); received %s for a floor of %s (%.2fx)",
			fmtFigure(m["catchup_s"], "s"), fmtFigure(m["catchup_serving_s"], "s"),
			fmtFigure(in, "B"), fmtFigure(float64(floor), "B"), m["bytes_ratio"])
		out = &benchRep{Metrics: m, Detail: map[string]any{
			"victim":         vname,
			"own_traffic":    own,
			"others_traffic": ot,
		}}
		return nil
	})
	return out, err
}

// writeKeys writes n keys with the prefix at the nodes in idx, round
// robin, from c concurrent clients, and returns the key and value bytes
// written and how long it took.
func writeKeys(ctx context.Context, o *benchOpts, cl *benchCluster, idx []int, prefix string, n, valueSize, c int) (int64, time.Duration, error) {
	value := benchValue(valueSize)
	var next, done atomic.Int64
	var floor atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	stopSay := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				o.say("  %d of %d keys written", done.Load(), n)
			case <-stopSay:
				return
			}
		}
	}()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && firstErr.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				key := fmt.Sprintf("%s%08d", prefix, i)
				node := idx[i%len(idx)]
				if _, err := cl.cs[node].Put(ctx, "", key, value); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("put %s at %s: %w", key, cl.names[node], err))
					return
				}
				floor.Add(int64(len(key) + len(value)))
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stopSay)
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	return floor.Load(), time.Since(start), nil
}
