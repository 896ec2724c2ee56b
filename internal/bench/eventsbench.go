package bench

// bench events: what the event stream costs and how fast it tells. On one
// cluster per repetition, with and without W merged streams (?cluster=1,
// every kind, as W dashboards would hold) open at node1, in alternating
// order: the agents' CPU while idle, and write throughput at node1 with C
// closed-loop clients (as bench throughput's "one" mode) in short phase
// pairs. Then, streams
// open, it kills one node and compares, for each survivor, when the
// watchers received its "failed" event with when a 10 ms poll of its member
// list first showed the failure (the daemon has declared it by then).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/cluster"
)

func benchEventsCommand() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "the event stream's cost (idle CPU, write throughput) and how fast it reports a failure",
		UsageText: `peerctl bench events [--watchers W] [--clients C] [--duration D] [--idle D] [options]

Examples:
   peerctl bench events --watchers 10 --reps 4`,
		Description: `Each repetition forms a cluster and measures, without and with W merged
event streams open at node1 (GET /v1/events?cluster=1, every kind, as W
dashboards would hold): the CPU each agent uses over --idle of no traffic
(once each, the order alternating between repetitions), and the writes
per second C closed-loop clients get at node1 over --pairs pairs of
--duration phases, one without and one with the streams, in alternating
order. Then, with the streams open, it kills the last node (SIGKILL) and,
for each survivor, compares when the streams delivered its "failed" event
with when polling its member list every 10 ms first showed the node
failed. The harness runs on the same machine; it reads the streams without
decoding them.`,
		Flags: benchFlags(5,
			&cli.IntFlag{Name: "watchers", Value: 10, Usage: "`W` merged event streams"},
			&cli.IntFlag{Name: "clients", Value: 16, Usage: "`C` closed-loop writers at node1"},
			&cli.DurationFlag{Name: "duration", Value: 3 * time.Second, Usage: "write load `D` per phase"},
			&cli.IntFlag{Name: "pairs", Value: 6, Usage: "`P` pairs of write phases (without and with streams) per repetition"},
			&cli.DurationFlag{Name: "idle", Value: 10 * time.Second, Usage: "idle CPU measured over `D` per phase"},
			valueSizeFlag(),
		),
		Action: runBenchEvents,
	}
}

type eventsParams struct {
	Nodes     int           `json:"nodes"`
	Watchers  int           `json:"watchers"`
	Clients   int           `json:"clients"`
	Duration  time.Duration `json:"duration_ns"`
	Pairs     int           `json:"pairs"`
	Idle      time.Duration `json:"idle_ns"`
	ValueSize int           `json:"value_size"`
	Profile   string        `json:"profile"`
}

func runBenchEvents(c *cli.Context) error {
	o, err := benchOptions(c)
	if err != nil {
		return err
	}
	p := eventsParams{Nodes: o.nodes, Watchers: c.Int("watchers"), Clients: c.Int("clients"), Duration: c.Duration("duration"),
		Pairs: c.Int("pairs"), Idle: c.Duration("idle"), ValueSize: c.Int("value-size"), Profile: o.profile}
	if p.Nodes < 2 || p.Watchers < 1 || p.Clients < 1 || p.Duration <= 0 || p.Idle <= 0 || p.Pairs < 1 {
		return fmt.Errorf("bench events needs --nodes >= 2, --watchers and --clients >= 1, --duration and --idle > 0")
	}
	res := &benchResult{Workload: "events", Params: map[string]any{"events": p},
		Method: fmt.Sprintf("events N=%d watchers=%d (cluster streams at node1) clients=%d at node1 %d pairs of %s phases, idle=%s profile=%s reps=%d, off/on order alternating",
			p.Nodes, p.Watchers, p.Clients, p.Pairs, p.Duration, p.Idle, p.Profile, o.reps)}
	res.Notes = append(res.Notes,
		"idle CPU: per agent, % of one core over the idle window, the busiest agent",
		"writes/s: median of the repetition's phases without (with) streams; the phases alternate in pairs, so each with-streams phase sits beside one without; the drop is 1 - the median of the pairs' on/off ratios",
		"agents' CPU per 1000 writes: all agents' CPU time over a phase divided by its writes; less sensitive than writes/s to the machine's other load",
		"the harness reads the streams without decoding them (it decodes member events only), so its own JSON cost stays out of the daemons' figures",
		"failure on the stream: for each survivor, the latest watcher's receipt of its 'failed' event minus the first 10 ms poll reply listing the victim failed at that survivor (negative: the stream was first); median and worst survivor")
	defs := []metricDef{
		{"wps_off", "writes/s at node1, no streams (median phase)", "/s"},
		{"wps_on", fmt.Sprintf("writes/s at node1, %d streams (median phase)", p.Watchers), "/s"},
		{"wps_drop_pct", "throughput drop with the streams (median of the pairs' ratios)", "%"},
		{"cpu_per_kwrite_off", "agents' CPU per 1000 writes, no streams", "ms"},
		{"cpu_per_kwrite_on", "agents' CPU per 1000 writes, streams", "ms"},
		{"cpu_per_write_up_pct", "agents' CPU per write, increase with the streams (median of the pairs' ratios)", "%"},
		{"idle_cpu_off", "idle CPU per agent, no streams (busiest)", "%"},
		{"idle_cpu_on", fmt.Sprintf("idle CPU per agent, %d streams (busiest)", p.Watchers), "%"},
		{"harness_cpu_off", "harness CPU under the load, no streams", "%"},
		{"harness_cpu_on", "harness CPU under the load, streams (it reads them)", "%"},
		{"events_per_s", "events per second per stream under the load", "/s"},
		{"dropped", "streams dropped for falling behind", "count"},
		{"failed_after_poll_ms", "failure on the streams after the poll showed it (median survivor)", "ms"},
		{"failed_after_poll_max_ms", "failure on the streams after the poll showed it (worst survivor)", "ms"},
		{"failed_delivery_ms", "failure event: emitted to received (worst)", "ms"},
	}
	targets := []benchTarget{
		{"wps_drop_pct", "goal", "<", 5, ""},
		{"idle_cpu_on", "goal", "<", 3, ""},
		{"failed_after_poll_max_ms", "goal", "<", 200, "the poll itself lags the declaration by up to 10 ms plus a request"},
	}
	return finishBench(c, o, res, runReps(c.Context, o, res, defs, targets, func(ctx context.Context, rep int) (*benchRep, error) {
		var out *benchRep
		err := withCluster(ctx, o, p.Nodes, nil, func(cl *benchCluster) error {
			if _, err := cl.form(ctx, formTimeout(p.Nodes)); err != nil {
				return err
			}
			m := map[string]float64{}
			var ws *watchers
			defer func() { ws.close() }()
			set := func(on bool) error {
				if on && ws == nil {
					var err error
					ws, err = openWatchers(ctx, cl, p.Watchers)
					return err
				}
				if !on && ws != nil {
					ws.close()
					ws = nil
				}
				return nil
			}
			name := map[bool]string{false: "off", true: "on"}
			// Idle CPU, off and on, in alternating order.
			for _, on := range []bool{rep%2 == 1, rep%2 == 0} {
				if err := set(on); err != nil {
					return err
				}
				cpu, err := idleCPU(ctx, cl, p.Idle)
				if err != nil {
					return err
				}
				m["idle_cpu_"+name[on]] = cpu
				o.say("  streams %-3s: idle CPU %.2f%% (busiest agent)", name[on], cpu)
			}
			// Write throughput in short alternating phases: the machine's
			// load drifts, so each "on" phase sits beside an "off" one.
			wps := map[bool][]float64{}
			hcpu := map[bool][]float64{}
			cpw := map[bool][]float64{} // agents' CPU ms per 1000 writes
			var ratios, cpuRatios []float64
			var evRate []float64
			for k := range p.Pairs {
				for _, on := range []bool{(rep+k)%2 == 1, (rep+k)%2 == 0} {
					if err := set(on); err != nil {
						return err
					}
					var before int
					if ws != nil {
						before = ws.count()
					}
					ph, err := throughputPhase(ctx, cl, throughputParams{Duration: p.Duration, ValueSize: p.ValueSize, Timeout: time.Minute},
						fmt.Sprintf("bench/e%d/%d%s/", rep, k, name[on]), "one", p.Clients)
					if err != nil {
						return err
					}
					if ws != nil {
						evRate = append(evRate, float64(ws.count()-before)/float64(p.Watchers)/p.Duration.Seconds())
					}
					wps[on] = append(wps[on], ph.wps)
					hcpu[on] = append(hcpu[on], ph.harnessCPU)
					cpw[on] = append(cpw[on], 10*ph.agentsCPU/ph.wps*1000)
					o.say("  streams %-3s: %.0f writes/s at node1 (agents' CPU %.0f%%, harness %.0f%%)", name[on], ph.wps, ph.agentsCPU, ph.harnessCPU)
				}
				ratios = append(ratios, wps[true][k]/wps[false][k])
				cpuRatios = append(cpuRatios, cpw[true][k]/cpw[false][k])
			}
			for _, on := range []bool{false, true} {
				sort.Float64s(wps[on])
				sort.Float64s(hcpu[on])
				sort.Float64s(cpw[on])
				m["wps_"+name[on]] = median(wps[on])
				m["harness_cpu_"+name[on]] = median(hcpu[on])
				m["cpu_per_kwrite_"+name[on]] = median(cpw[on])
			}
			sort.Float64s(ratios)
			sort.Float64s(cpuRatios)
			sort.Float64s(evRate)
			m["events_per_s"] = median(evRate)
			m["wps_drop_pct"] = 100 * (1 - median(ratios))
			m["cpu_per_write_up_pct"] = 100 * (median(cpuRatios) - 1)
			if err := set(true); err != nil {
				return err
			}
			if err := failureOnStream(ctx, cl, ws, m); err != nil {
				return err
			}
			m["dropped"] = float64(ws.droppedCount())
			out = &benchRep{Metrics: m}
			return nil
		})
		return out, err
	}))
}

// openStream opens node i's merged event stream (every kind) and returns
// its body.
func openStream(ctx context.Context, cl *benchCluster, i int) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+cl.nodes[i].API+"/v1/events?cluster=1", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(api.HeaderClient, "1")
	resp, err := (&http.Client{Transport: cl.hc.Transport}).Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET /v1/events: %s", resp.Status)
	}
	return resp.Body, nil
}

// idleCPU returns the busiest agent's CPU, in % of one core, over d.
func idleCPU(ctx context.Context, cl *benchCluster, d time.Duration) (float64, error) {
	per := func() []time.Duration {
		out := make([]time.Duration, len(cl.nodes))
		for i := range cl.nodes {
			if p := cl.proc(i); p != nil {
				out[i], _ = procCPU(p.PID())
			}
		}
		return out
	}
	a := per()
	t0 := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	b := per()
	took := time.Since(t0).Seconds()
	busiest := 0.0
	for i := range a {
		busiest = math.Max(busiest, 100*(b[i]-a[i]).Seconds()/took)
	}
	return busiest, nil
}

// watchers holds W merged streams at node1 and what they received.
type watchers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards the fields below
	n       int        // events received, all streams
	joined  []int      // by stream, members' streams joined
	dropped int
	victim  string
	failed  []map[string]time.Time // by stream: observer -> receipt of its "victim failed"
	emitted map[string]time.Time   // observer -> its "victim failed" event's time
}

// openWatchers opens w merged streams at node1 and waits until each has
// joined every other member's stream.
func openWatchers(ctx context.Context, cl *benchCluster, w int) (*watchers, error) {
	wctx, cancel := context.WithCancel(ctx)
	ws := &watchers{cancel: cancel, joined: make([]int, w), failed: make([]map[string]time.Time, w), emitted: map[string]time.Time{}}
	for k := range w {
		ws.failed[k] = map[string]time.Time{}
		body, err := openStream(wctx, cl, 0)
		if err != nil {
			ws.close()
			return nil, fmt.Errorf("open event stream %d: %w", k+1, err)
		}
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			defer body.Close()
			api.ReadEventData(body, func(data []byte) error {
				now := time.Now()
				ws.mu.Lock()
				defer ws.mu.Unlock()
				ws.n++
				switch {
				case bytes.Contains(data, []byte(`"kind":"stream"`)) && bytes.Contains(data, []byte(`"status":"joined"`)):
					ws.joined[k]++
				case bytes.Contains(data, []byte(`"kind":"dropped"`)):
					ws.dropped++
				case bytes.Contains(data, []byte(`"kind":"member"`)) && ws.victim != "":
					var ev api.Event
					if json.Unmarshal(data, &ev) == nil && ev.Status == "failed" && ev.Member == ws.victim {
						if _, ok := ws.failed[k][ev.Node]; !ok {
							ws.failed[k][ev.Node] = now
							ws.emitted[ev.Node] = ev.When()
						}
					}
				}
				return nil
			})
		}()
	}
	err := cluster.WaitFor(ctx, 20*time.Second, 20*time.Millisecond, func(context.Context) (bool, string) {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		for k, j := range ws.joined {
			if j < len(cl.nodes)-1 {
				return false, fmt.Sprintf("stream %d joined %d of %d members' streams", k+1, j, len(cl.nodes)-1)
			}
		}
		return true, ""
	})
	if err != nil {
		ws.close()
		return nil, err
	}
	return ws, nil
}

func (ws *watchers) count() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.n
}

func (ws *watchers) droppedCount() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.dropped
}

// close ends the streams; nil-safe.
func (ws *watchers) close() {
	if ws == nil {
		return
	}
	ws.cancel()
	ws.wg.Wait()
}

// failureOnStream kills the last node and times its failure on the
// streams against a 10 ms poll of each survivor's member list.
func failureOnStream(ctx context.Context, cl *benchCluster, ws *watchers, m map[string]float64) error {
	victim := len(cl.nodes) - 1
	vname := cl.names[victim]
	ws.mu.Lock()
	ws.victim = vname
	ws.mu.Unlock()
	survivors := cl.except(victim)
	if _, err := cl.kill(victim); err != nil {
		return err
	}
	polled := make([]time.Time, len(survivors))
	var wg sync.WaitGroup
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for k, i := range survivors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dctx.Err() == nil {
				rctx, rcancel := context.WithTimeout(dctx, 2*time.Second)
				ms, err := cl.cs[i].Members(rctx, "")
				rcancel()
				if st := cluster.StatusIn(ms, vname); err == nil && st == "failed" {
					polled[k] = time.Now()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	err := cluster.WaitFor(ctx, 10*time.Second, 20*time.Millisecond, func(context.Context) (bool, string) {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		for k, f := range ws.failed {
			if len(f) < len(survivors) {
				return false, fmt.Sprintf("stream %d has %d of %d survivors' failed events", k+1, len(f), len(survivors))
			}
		}
		return true, ""
	})
	if err != nil {
		return err
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var after []float64
	worstDelivery := 0.0
	for k, i := range survivors {
		if polled[k].IsZero() {
			return fmt.Errorf("%s never listed %s failed", cl.names[i], vname)
		}
		var latest time.Time
		for _, f := range ws.failed {
			if t := f[cl.names[i]]; t.After(latest) {
				latest = t
			}
		}
		after = append(after, ms(latest.Sub(polled[k])))
		worstDelivery = math.Max(worstDelivery, ms(latest.Sub(ws.emitted[cl.names[i]])))
	}
	sort.Float64s(after)
	m["failed_after_poll_ms"] = median(after)
	m["failed_after_poll_max_ms"] = after[len(after)-1]
	m["failed_delivery_ms"] = worstDelivery
	return nil
}
