package bench

// bench detection: kill -9 one daemon and time until the first and until
// every survivor marks it failed, polling every survivor's member list
// every 50 ms (and, as a cross-check, from the survivors' member events,
// timed by the daemons: events.go). --soak D
// instead runs the cluster for D with other work keeping a core busy and
// counts false positives: suspicions and failures of nodes that are alive.

import (
	"context"
	"fmt"
	"github.com/peerctl/peerctl/internal/cluster"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
)

func benchDetectionCommand() *cli.Command {
	return &cli.Command{
		Name:  "detection",
		Usage: "how fast a killed node is declared failed, and false alarms over a soak",
		UsageText: `peerctl bench detection [--nodes N] [--profile local|lan] [options]
peerctl bench detection --soak D [--nodes N] [--busy-cores C] [options]

Examples:
   peerctl bench detection --nodes 25 --profile local
   peerctl bench detection --nodes 25 --soak 10m --reps 1`,
		Description: `Forms a cluster, waits a moment, then kills one node other than node1 (chosen
at random) with SIGKILL, and polls every survivor's member list every 50 ms
until all of them list it as failed. Reports the time from the kill until
the first survivor suspected it, until the first and until the last marked
it failed, and the same from the survivors' event streams (GET /v1/events).

With --soak D it kills nothing: it runs the cluster for D while --busy-cores
goroutines (default 1) spin in the harness to take a core away, and counts
every time a node's probe of an alive node failed (suspicion) and every
time an alive node was declared failed, from the daemons' event streams,
plus every non-alive status seen by polling the member lists every second.`,
		Flags: benchFlags(5,
			&cli.DurationFlag{Name: "soak", Usage: "instead of a kill, run for `D` and count false alarms"},
			&cli.IntFlag{Name: "busy-cores", Value: -1, DefaultText: "1 with --soak, else 0", Usage: "spin `C` goroutines in the harness during the run"},
			&cli.DurationFlag{Name: "timeout", Value: 60 * time.Second, Usage: "give up waiting for detection after `D`"},
		),
		Action: runBenchDetection,
	}
}

type detectParams struct {
	Nodes     int           `json:"nodes"`
	Profile   string        `json:"profile"`
	Soak      time.Duration `json:"soak_ns,omitempty"`
	BusyCores int           `json:"busy_cores"`
	Timeout   time.Duration `json:"timeout_ns"`
}

func runBenchDetection(c *cli.Context) error {
	o, err := benchOptions(c)
	if err != nil {
		return err
	}
	p := detectParams{Nodes: o.nodes, Profile: o.profile, Soak: c.Duration("soak"), BusyCores: c.Int("busy-cores"), Timeout: c.Duration("timeout")}
	if p.BusyCores < 0 {
		p.BusyCores = 0
		if p.Soak > 0 {
			p.BusyCores = 1
		}
	}
	if p.Soak > 0 {
		return runBenchSoak(c, o, p)
	}
	if p.Nodes < 2 {
		return fmt.Errorf("--nodes %d: detection needs at least 2 nodes", p.Nodes)
	}
	res := &benchResult{Workload: "detection", Params: map[string]any{"detection": p},
		Method: fmt.Sprintf("detection N=%d profile=%s kill -9 one node, poll members every 50ms, busy-cores=%d reps=%d", p.Nodes, p.Profile, p.BusyCores, o.reps)}
	res.Notes = append(res.Notes, "times from the SIGKILL; polled: first reply of a survivor's member list (polled every 50 ms) listing the node failed; events: the time of a survivor's member event (GET /v1/events) saying its own probe failed (suspect, detected_by itself) or that it declared the node failed")
	defs := []metricDef{
		{"first_suspect_s", "first survivor suspects it (events)", "s"},
		{"first_failed_s", "first survivor marks it failed", "s"},
		{"median_failed_s", "median survivor marks it failed", "s"},
		{"all_failed_s", "every survivor marks it failed", "s"},
		{"ev_first_failed_s", "first failed (events)", "s"},
		{"ev_all_failed_s", "every survivor failed (events)", "s"},
		{"false_alarms", "suspicions/failures of alive nodes", "count"},
	}
	return finishBench(c, o, res, runReps(c.Context, o, res, defs, detectTargets(p), func(ctx context.Context, rep int) (*benchRep, error) {
		return detectionRep(ctx, o, p)
	}))
}

// finishBench writes the results if the run succeeded.
func finishBench(c *cli.Context, o *benchOpts, res *benchResult, err error) error {
	if err != nil {
		return err
	}
	return writeBench(c, o, res)
}

func detectTargets(p detectParams) []benchTarget {
	ts := []benchTarget{{"all_failed_s", "goal", "<", 3, ""}}
	if p.Nodes != 5 && p.Nodes != 25 {
		ts[0].Note = "defined for N=5 and 25"
	}
	// hashicorp/serf v0.11.0's own agent on this kind of machine
	// (../shared/FACTS.md): the low end of its range.
	serf := map[string]float64{"5 local": 4.5, "25 local": 5.8, "25 lan": 8.2, "50 lan": 8.4}
	if v, ok := serf[fmt.Sprintf("%d %s", p.Nodes, p.Profile)]; ok {
		ts = append(ts, benchTarget{"all_failed_s", "serf", "<", v, "serf agent's best run"})
	}
	ts = append(ts, benchTarget{"false_alarms", "goal", "==", 0, ""})
	return ts
}

// detectionRep kills one node of a fresh cluster and times its detection.
func detectionRep(ctx context.Context, o *benchOpts, p detectParams) (*benchRep, error) {
	var out *benchRep
	err := withCluster(ctx, o, p.Nodes, nil, func(cl *benchCluster) error {
		took, err := cl.form(ctx, formTimeout(p.Nodes))
		if err != nil {
			return err
		}
		o.say("%d nodes formed a cluster in %s; letting it settle 2s", p.Nodes, took.Round(time.Millisecond))
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		stopBurn := burnCores(p.BusyCores)
		defer stopBurn()
		victim := 1 + rand.IntN(p.Nodes-1)
		vname := cl.names[victim]
		survivors := cl.except(victim)
		tKill, err := cl.kill(victim)
		if err != nil {
			return err
		}
		o.say("killed %s (SIGKILL); polling %d survivors every 50ms", vname, len(survivors))

		failed := make([]time.Duration, len(survivors))
		dctx, cancel := context.WithTimeout(ctx, p.Timeout)
		defer cancel()
		var wg sync.WaitGroup
		var remaining atomic.Int64
		remaining.Store(int64(len(survivors)))
		for k, i := range survivors {
			failed[k] = -1
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.NewTicker(50 * time.Millisecond)
				defer t.Stop()
				for {
					rctx, rcancel := context.WithTimeout(dctx, 2*time.Second)
					ms, err := cl.cs[i].Members(rctx, "")
					rcancel()
					now := time.Since(tKill)
					if st := cluster.StatusIn(ms, vname); err == nil && (st == "failed" || st == "left") {
						failed[k] = now
						remaining.Add(-1)
						return
					}
					select {
					case <-t.C:
					case <-dctx.Done():
						return
					}
				}
			}()
		}
		lastSay := time.Now()
		for remaining.Load() > 0 && dctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			if time.Since(lastSay) >= 2*time.Second {
				lastSay = time.Now()
				o.say("  %s after the kill: %d of %d survivors mark %s failed", time.Since(tKill).Round(100*time.Millisecond),
					len(survivors)-int(remaining.Load()), len(survivors), vname)
			}
		}
		wg.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Give the events of the last detections a moment to arrive.
		time.Sleep(200 * time.Millisecond)

		m := map[string]float64{}
		var fs []float64
		for k := range survivors {
			if failed[k] >= 0 {
				fs = append(fs, failed[k].Seconds())
			}
		}
		sort.Float64s(fs)
		if len(fs) > 0 {
			m["first_failed_s"] = fs[0]
			m["median_failed_s"] = median(fs)
		}
		if len(fs) == len(survivors) {
			m["all_failed_s"] = fs[len(fs)-1]
		}
		// The first suspicion comes from the nodes' event streams (a
		// member list polled every 50 ms would miss short ones), and so,
		// as a cross-check of the polls, do the failures.
		evFailed := map[string]time.Duration{}
		alarms := 0
		for _, ev := range cl.eventsSince(tKill) {
			if ev.Kind == "suspect-heard" {
				continue
			}
			if ev.Subject != vname {
				alarms++
				continue
			}
			if first, ok := m["first_suspect_s"]; ev.Kind == "suspect" && (!ok || ev.At.Sub(tKill).Seconds() < first) {
				m["first_suspect_s"] = ev.At.Sub(tKill).Seconds()
			}
			if _, seen := evFailed[ev.Observer]; ev.Kind == "failed" && !seen {
				evFailed[ev.Observer] = ev.At.Sub(tKill)
			}
		}
		var lf []float64
		for _, d := range evFailed {
			lf = append(lf, d.Seconds())
		}
		sort.Float64s(lf)
		if len(lf) > 0 {
			m["ev_first_failed_s"] = lf[0]
		}
		if len(lf) == len(survivors) {
			m["ev_all_failed_s"] = lf[len(lf)-1]
		}
		m["false_alarms"] = float64(alarms)
		var notes []string
		if len(fs) < len(survivors) {
			notes = append(notes, fmt.Sprintf("only %d of %d survivors marked %s failed within %s", len(fs), len(survivors), vname, p.Timeout))
		}
		o.say("  first suspected %s, first failed %s, all failed %s (events: %s)",
			fmtFigure(valOr(m, "first_suspect_s"), "s"), fmtFigure(valOr(m, "first_failed_s"), "s"),
			fmtFigure(valOr(m, "all_failed_s"), "s"), fmtFigure(valOr(m, "ev_all_failed_s"), "s"))
		out = &benchRep{Metrics: m, Notes: notes, Detail: map[string]any{
			"victim": vname, "failed_s": fs, "event_failed_s": lf,
		}}
		return nil
	})
	return out, err
}

func valOr(m map[string]float64, k string) float64 {
	if v, ok := m[k]; ok {
		return v
	}
	return math.NaN()
}

// burnCores spins n goroutines, each locked to an OS thread, until the
// returned function is called.
func burnCores(n int) func() {
	if n <= 0 {
		return func() {}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			x := uint64(1)
			for !stop.Load() {
				for range 1 << 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			_ = x
		}()
	}
	return func() {
		stop.Store(true)
		wg.Wait()
	}
}

// runBenchSoak counts false alarms over --soak.
func runBenchSoak(c *cli.Context, o *benchOpts, p detectParams) error {
	res := &benchResult{Workload: "detection-soak", Params: map[string]any{"detection": p},
		Method: fmt.Sprintf("detection soak N=%d profile=%s dur=%s busy-cores=%d (harness spins) reps=%d", p.Nodes, p.Profile, p.Soak, p.BusyCores, o.reps)}
	res.Notes = append(res.Notes, "from the daemons' member events (GET /v1/events): suspicions = a node's own failed probe of an alive node (suspect, detected_by itself), failures = alive nodes declared failed, refutations = first-hand suspicions that ended with the node alive again; polled = non-alive statuses seen in 1 s polls of every member list")
	defs := []metricDef{
		{"suspicions", "suspicions of alive nodes", "count"},
		{"false_failures", "alive nodes declared failed", "count"},
		{"refutations", "suspicions refuted by the suspect", "count"},
		{"polled_non_alive", "non-alive statuses seen by polling", "count"},
	}
	targets := []benchTarget{
		{"suspicions", "goal", "==", 0, "defined for N=25, 10 min"},
		{"false_failures", "goal", "==", 0, "defined for N=25, 10 min"},
	}
	if p.Nodes == 25 && p.Soak >= 10*time.Minute {
		targets[0].Note, targets[1].Note = "", ""
	}
	return finishBench(c, o, res, runReps(c.Context, o, res, defs, targets, func(ctx context.Context, rep int) (*benchRep, error) {
		var out *benchRep
		err := withCluster(ctx, o, p.Nodes, nil, func(cl *benchCluster) error {
			took, err := cl.form(ctx, formTimeout(p.Nodes))
			if err != nil {
				return err
			}
			o.say("%d nodes formed a cluster in %s; soaking for %s with %d busy cores", p.Nodes, took.Round(time.Millisecond), p.Soak, p.BusyCores)
			stopBurn := burnCores(p.BusyCores)
			defer stopBurn()
			t0 := time.Now()
			polled := startStatusPoll(ctx, cl, time.Second)
			tick := time.NewTicker(10 * time.Second)
			defer tick.Stop()
			end := time.NewTimer(p.Soak)
			defer end.Stop()
		loop:
			for {
				select {
				case <-end.C:
					break loop
				case <-ctx.Done():
					polled()
					return ctx.Err()
				case <-tick.C:
					if err := cl.exited(); err != nil {
						polled()
						return err
					}
					evs := cl.eventsSince(t0)
					o.say("  %s/%s: %d membership events so far", time.Since(t0).Round(time.Second), p.Soak, len(evs))
				}
			}
			obs := polled()
			stopBurn()
			m := map[string]float64{"polled_non_alive": float64(len(obs))}
			evs := cl.eventsSince(t0)
			for _, ev := range evs {
				switch ev.Kind {
				case "suspect":
					m["suspicions"]++
				case "failed":
					m["false_failures"]++
				case "refute":
					m["refutations"]++
				}
			}
			for _, k := range []string{"suspicions", "false_failures", "refutations"} {
				m[k] += 0
			}
			out = &benchRep{Metrics: m, Detail: map[string]any{"events": evs, "polled": obs}}
			return nil
		})
		return out, err
	}))
}
