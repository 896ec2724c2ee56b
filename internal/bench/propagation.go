package bench

// bench propagation: writes of unique keys at random nodes at a fixed rate
// (open loop: a write is sent on schedule whether or not earlier ones were
// acknowledged). Every agent runs with --trace-arrivals, so after the load
// the harness asks each node when each key first became readable there;
// all processes share the machine's clock. A write's stable latency is the
// latest arrival over all nodes minus the time the client received the
// acknowledgement (0 if every node had it by then): from then on every
// read anywhere returns it. Messages per op are every message all nodes
// sent from just before the first write until the last write reached the
// last node, from /metrics: memberlist UDP packets and TCP streams, and
// replication requests and replies, divided by the acknowledged writes.

import (
	"context"
	"encoding/csv"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/cluster"
)

func benchPropagationCommand() *cli.Command {
	return &cli.Command{
		Name:  "propagation",
		Usage: "how fast a write reaches every node, and how many messages that takes",
		UsageText: `peerctl bench propagation [--nodes N] [--rate R] [--duration D] [--delay 100ms] [options]

Examples:
   peerctl bench propagation --nodes 25 --rate 100 --duration 20s --burst 200
   peerctl bench propagation --preset glomers --csv latencies.csv --svg latencies.svg`,
		Description: `Writes unique keys at random nodes at --rate writes/s for --duration (open
loop), then waits until every node holds every acknowledged write. For each
write, the stable latency is the time from its acknowledgement to the
moment the last node could read it (agents run with --trace-arrivals).
Reports p50, p99 and max, messages per write (every message every node
sent, membership gossip included, replication replies included) and bytes
per write, broken down by kind.

--delay D installs a delay fault on every node once the cluster has formed
(every gossip packet, stream and replication message is held D before it
leaves), and the run reports whether any alive node was suspected or
declared failed. --preset glomers is Gossip Glomers' broadcast setup
(challenges 3d and 3e): 25 nodes, 100 ms delay, 100 writes/s for 20 s.

--burst K then writes K keys at node1 as fast as 16 clients can, and
reports the time from the first write until every node had all K.`,
		Flags: benchFlags(5,
			&cli.IntFlag{Name: "rate", Value: 100, Usage: "writes per second `R`, across all nodes"},
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "how long to write, `D`"},
			&cli.DurationFlag{Name: "delay", Usage: "delay every message by `D` (fault injection) during the run"},
			valueSizeFlag(),
			&cli.DurationFlag{Name: "settle", Value: 30 * time.Second, Usage: "wait at most `D` after the load for every node to hold every write"},
			&cli.IntFlag{Name: "burst", Usage: "after the run, write `K` keys at node1 at once and time until all nodes hold them"},
			&cli.StringFlag{Name: "preset", Usage: "`NAME`: glomers = --nodes 25 --delay 100ms --rate 100 --duration 20s (flags given override)"},
			&cli.StringFlag{Name: "csv", Usage: "write every write's latencies to `FILE` as CSV"},
			&cli.StringFlag{Name: "svg", Usage: "plot every write's stable latency over time to `FILE` (SVG)"},
		),
		Action: runBenchPropagation,
	}
}

type propParams struct {
	Nodes     int           `json:"nodes"`
	Rate      int           `json:"rate"`
	Duration  time.Duration `json:"duration_ns"`
	Delay     time.Duration `json:"delay_ns"`
	ValueSize int           `json:"value_size"`
	Settle    time.Duration `json:"settle_ns"`
	Burst     int           `json:"burst"`
	Preset    string        `json:"preset,omitempty"`
	Profile   string        `json:"profile"`
}

// propWrite is one write of a propagation run.
type propWrite struct {
	Rep     int
	Seq     int
	Key     string
	Node    string
	Sent    time.Time
	Ack     time.Time // zero if it failed
	Err     string
	Reached int           // nodes that held it when the run ended
	Stable  time.Duration // -1 if some node never held it
}

func runBenchPropagation(c *cli.Context) error {
	o, err := benchOptions(c)
	if err != nil {
		return err
	}
	p := propParams{
		Nodes: o.nodes, Rate: c.Int("rate"), Duration: c.Duration("duration"), Delay: c.Duration("delay"),
		ValueSize: c.Int("value-size"), Settle: c.Duration("settle"), Burst: c.Int("burst"),
		Preset: c.String("preset"), Profile: o.profile,
	}
	switch p.Preset {
	case "":
	case "glomers":
		if !c.IsSet("nodes") {
			p.Nodes = 25
		}
		if !c.IsSet("delay") {
			p.Delay = 100 * time.Millisecond
		}
		if !c.IsSet("rate") {
			p.Rate = 100
		}
		if !c.IsSet("duration") {
			p.Duration = 20 * time.Second
		}
	default:
		return fmt.Errorf("--preset %q: the one preset is glomers", p.Preset)
	}
	if p.Rate < 1 || p.Duration <= 0 || p.Nodes < 1 || p.ValueSize < 0 {
		return fmt.Errorf("--rate, --duration and --nodes must be positive")
	}
	method := fmt.Sprintf("propagation N=%d rate=%d/s dur=%s delay=%s value=%dB profile=%s reps=%d",
		p.Nodes, p.Rate, p.Duration, p.Delay, p.ValueSize, p.Profile, o.reps)
	if p.Burst > 0 {
		method += fmt.Sprintf(" burst=%d", p.Burst)
	}
	if p.Preset != "" {
		method += " (preset " + p.Preset + ")"
	}
	res := &benchResult{Workload: "propagation", Method: method, Params: map[string]any{"propagation": p}}
	res.Notes = append(res.Notes,
		"stable latency = last node's first-readable time − client's ack time (0 if all had it first); figures are medians over runs of each run's percentile",
		"msgs/op = (gossip UDP packets + gossip TCP streams opened + replication messages: pushes, requests and replies) sent by all nodes ÷ acked writes; bytes/op likewise, without gossip TCP stream payloads")
	var writes []propWrite
	var mu sync.Mutex
	err = runReps(c.Context, o, res, propDefs(p), propTargets(p), func(ctx context.Context, rep int) (*benchRep, error) {
		r, ws, err := propagationRep(ctx, o, p, rep)
		mu.Lock()
		writes = append(writes, ws...)
		mu.Unlock()
		return r, err
	})
	if err != nil {
		return err
	}
	if path := c.String("csv"); path != "" {
		if err := writePropCSV(path, writes); err != nil {
			return err
		}
		o.say("per-write latencies written to %s", path)
	}
	if path := c.String("svg"); path != "" {
		if err := writeLatencySVG(path, method, writes); err != nil {
			return err
		}
		o.say("latency plot written to %s", path)
	}
	return writeBench(c, o, res)
}

func propDefs(p propParams) []metricDef {
	d := []metricDef{
		{"p50_ms", "stable latency p50", "ms"},
		{"p99_ms", "stable latency p99", "ms"},
		{"max_ms", "stable latency max", "ms"},
		{"msgs_per_op", "msgs per op (all kinds)", "msgs"},
		{"gossip_msgs_per_op", "  gossip packets+streams per op", "msgs"},
		{"push_msgs_per_op", "  push messages per op", "msgs"},
		{"ae_msgs_per_op", "  anti-entropy digest+sync per op", "msgs"},
		{"bytes_per_op", "bytes per op", "B"},
		{"acked", "writes acknowledged", "count"},
		{"achieved_rate", "achieved write rate", "/s"},
		{"put_p50_ms", "put ack latency p50", "ms"},
		{"incomplete", "writes missing on a node after settle", "count"},
		{"suspicions", "suspicions of alive nodes", "count"},
		{"false_failures", "alive nodes declared failed", "count"},
		{"agents_cpu", "CPU used by all agents (100 = one core)", "%"},
		{"harness_cpu", "CPU used by the harness", "%"},
	}
	if p.Burst > 0 {
		d = append(d, metricDef{"burst_all_ms", fmt.Sprintf("burst of %d at node1: on all nodes", p.Burst), "ms"})
	}
	return d
}

func propTargets(p propParams) []benchTarget {
	var ts []benchTarget
	note := func(n int, delay time.Duration, rate int) string {
		if p.Nodes == n && p.Delay == delay && p.Rate == rate {
			return ""
		}
		return fmt.Sprintf("defined for N=%d delay=%s %d/s", n, delay, rate)
	}
	if p.Delay > 0 {
		n := note(25, 100*time.Millisecond, 100)
		ts = append(ts,
			benchTarget{"msgs_per_op", "3d", "<", 30, n},
			benchTarget{"msgs_per_op", "3e", "<", 20, n},
			benchTarget{"p50_ms", "3d", "<", 400, n},
			benchTarget{"p50_ms", "3e", "<", 1000, n},
			benchTarget{"max_ms", "3d", "<", 600, n},
			benchTarget{"max_ms", "3e", "<", 2000, n},
			benchTarget{"false_failures", "goal", "==", 0, ""},
		)
	} else {
		n := note(25, 0, 100)
		ts = append(ts,
			benchTarget{"p99_ms", "goal", "<", 100, n},
			benchTarget{"max_ms", "goal", "<", 500, n},
		)
		if p.Burst > 0 {
			bn := ""
			if p.Nodes != 25 || p.Burst != 200 {
				bn = "defined for N=25, 200 writes"
			}
			ts = append(ts, benchTarget{"burst_all_ms", "goal", "<", 1000, bn})
		}
	}
	return ts
}

// propagationRep runs one repetition on a fresh cluster.
func propagationRep(ctx context.Context, o *benchOpts, p propParams, rep int) (*benchRep, []propWrite, error) {
	var out *benchRep
	var writes []propWrite
	err := withCluster(ctx, o, p.Nodes, []string{"--trace-arrivals"}, func(cl *benchCluster) error {
		took, err := cl.form(ctx, formTimeout(p.Nodes))
		if err != nil {
			return err
		}
		o.say("%d nodes formed a cluster in %s", p.Nodes, took.Round(time.Millisecond))
		if p.Delay > 0 {
			if err := injectDelay(ctx, cl, p.Delay); err != nil {
				return err
			}
			o.say("delay of %s installed on every node", p.Delay)
		}
		before, err := cl.metricsAll(ctx, cl.all())
		if err != nil {
			return err
		}
		tBase := time.Now()
		cpuA0, cpuH0 := cl.cpuUsed()
		polled := startStatusPoll(ctx, cl, time.Second)

		prefix := fmt.Sprintf("bench/p%d/", rep)
		writes = openLoopWrites(ctx, o, cl, rep, prefix, p)
		if err := ctx.Err(); err != nil {
			polled()
			return err
		}
		acked := 0
		for _, w := range writes {
			if !w.Ack.IsZero() {
				acked++
			}
		}
		if acked == 0 {
			polled()
			return fmt.Errorf("no write was acknowledged (first error: %s)", firstErr(writes))
		}
		arr, done := awaitArrivals(ctx, o, cl, prefix, writes, p.Settle)
		tEnd := time.Now()
		cpuA1, cpuH1 := cl.cpuUsed()
		after, err := cl.metricsAll(ctx, cl.all())
		nonAlive := polled()
		if err != nil {
			return err
		}
		window := tEnd.Sub(tBase)

		lat, incomplete := stableLatencies(writes, arr, len(cl.nodes))
		var puts []float64
		for _, w := range writes {
			if !w.Ack.IsZero() {
				puts = append(puts, ms(w.Ack.Sub(w.Sent)))
			}
		}
		sort.Float64s(puts)
		tr := trafficOf(promDelta(before, after))
		evs := cl.eventsSince(tBase)
		suspicions, failures := 0, 0
		for _, ev := range evs {
			switch ev.Kind {
			case "suspect":
				suspicions++
			case "failed":
				failures++
			}
		}
		n := float64(acked)
		m := map[string]float64{
			"p50_ms":             percentile(lat, 50),
			"p99_ms":             percentile(lat, 99),
			"max_ms":             percentile(lat, 100),
			"msgs_per_op":        tr.messages() / n,
			"gossip_msgs_per_op": (tr.GossipPackets + tr.GossipStreams) / n,
			"push_msgs_per_op":   tr.ReplSent["push"] / n,
			"ae_msgs_per_op":     (tr.ReplSent["digest"] + tr.ReplSent["sync"]) / n,
			"bytes_per_op":       tr.bytes() / n,
			"acked":              n,
			"achieved_rate":      n / p.Duration.Seconds(),
			"put_p50_ms":         percentile(puts, 50),
			"incomplete":         float64(incomplete),
			"suspicions":         float64(suspicions),
			"false_failures":     float64(failures),
			"agents_cpu":         100 * (cpuA1 - cpuA0).Seconds() / window.Seconds(),
			"harness_cpu":        100 * (cpuH1 - cpuH0).Seconds() / window.Seconds(),
		}
		if len(lat) == 0 {
			for _, k := range []string{"p50_ms", "p99_ms", "max_ms"} {
				delete(m, k)
			}
		}
		detail := map[string]any{
			"window_ms":          ms(window),
			"traffic":            tr,
			"membership_events":  evs,
			"polled_non_alive":   nonAlive,
			"delivered_all":      done,
			"errors":             len(writes) - acked,
			"first_error":        firstErr(writes),
			"membership_per_sec": (tr.GossipPackets + tr.GossipStreams) / window.Seconds(),
		}
		o.say("rep %d: %d acked, p50 %s p99 %s max %s, %.1f msgs/op (gossip %.1f, push %.1f, anti-entropy %.1f), %d incomplete",
			rep+1, acked, fmtFigure(m["p50_ms"], "ms"), fmtFigure(m["p99_ms"], "ms"), fmtFigure(m["max_ms"], "ms"),
			m["msgs_per_op"], m["gossip_msgs_per_op"], m["push_msgs_per_op"], m["ae_msgs_per_op"], incomplete)
		if p.Burst > 0 {
			b, err := burstRun(ctx, o, cl, fmt.Sprintf("bench/b%d/", rep), p)
			if err != nil {
				return err
			}
			m["burst_all_ms"] = b
			o.say("rep %d: burst of %d on all nodes after %s", rep+1, p.Burst, fmtFigure(b, "ms"))
		}
		out = &benchRep{Metrics: m, Detail: detail}
		return nil
	})
	return out, writes, err
}

// formTimeout bounds how long n nodes may take to see each other alive.
func formTimeout(n int) time.Duration { return 60*time.Second + time.Duration(n)*time.Second }

// injectDelay delays every message of every node by d.
func injectDelay(ctx context.Context, cl *benchCluster, d time.Duration) error {
	res, err := cl.cs[0].InjectFault(ctx, api.FaultRequest{Kind: api.ReqDelay, Nodes: []string{"*"}, Delay: d, Reason: "bench"})
	if err != nil {
		return fmt.Errorf("install delay: %w", err)
	}
	if len(res.Nodes) != len(cl.nodes) {
		return fmt.Errorf("install delay: installed on %d nodes, want %d", len(res.Nodes), len(cl.nodes))
	}
	for _, nf := range res.Nodes {
		if nf.Error != "" {
			return fmt.Errorf("install delay on %s: %s", nf.Node, nf.Error)
		}
	}
	return nil
}

// openLoopWrites sends rate writes per second for the duration, each at a
// random node, each from its own goroutine (at most 1024 in flight), and
// returns them all once every one has been answered.
func openLoopWrites(ctx context.Context, o *benchOpts, cl *benchCluster, rep int, prefix string, p propParams) []propWrite {
	total := int(float64(p.Rate) * p.Duration.Seconds())
	writes := make([]propWrite, total)
	value := benchValue(p.ValueSize)
	var wg sync.WaitGroup
	var acked, failed atomic.Int64
	sem := make(chan struct{}, 1024)
	start := time.Now()
	lastSay := start
	for i := range total {
		due := start.Add(time.Duration(i) * time.Second / time.Duration(p.Rate))
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			writes = writes[:i]
			break
		}
		if time.Since(lastSay) >= 2*time.Second {
			lastSay = time.Now()
			o.say("  %s/%s: %d sent, %d acked, %d failed", time.Since(start).Round(time.Second), p.Duration, i, acked.Load(), failed.Load())
		}
		sem <- struct{}{}
		wg.Add(1)
		node := rand.IntN(len(cl.nodes))
		w := &writes[i]
		*w = propWrite{Rep: rep, Seq: i, Key: fmt.Sprintf("%s%07d", prefix, i), Node: cl.names[node], Stable: -1}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w.Sent = time.Now()
			_, err := cl.cs[node].Put(ctx, "", w.Key, value)
			if err != nil {
				w.Err = err.Error()
				failed.Add(1)
				return
			}
			w.Ack = time.Now()
			acked.Add(1)
		}()
	}
	wg.Wait()
	return writes
}

func firstErr(ws []propWrite) string {
	for _, w := range ws {
		if w.Err != "" {
			return w.Err
		}
	}
	return ""
}

// arrivalsAt asks node i when each key with the prefix first became
// readable there (unix nanos).
func arrivalsAt(ctx context.Context, cl *benchCluster, i int, prefix string) (map[string]int64, error) {
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var out map[string]int64
	u := "http://" + cl.nodes[i].API + "/v1/debug/arrivals?prefix=" + url.QueryEscape(prefix)
	if err := getJSON(rctx, cl, u, &out); err != nil {
		return nil, fmt.Errorf("%s: arrivals: %w", cl.names[i], err)
	}
	return out, nil
}

// awaitArrivals waits up to settle until every node holds every
// acknowledged write, checking key counts cheaply first, and returns each
// node's arrivals (by node index) and whether all arrived.
func awaitArrivals(ctx context.Context, o *benchOpts, cl *benchCluster, prefix string, writes []propWrite, settle time.Duration) ([]map[string]int64, bool) {
	var want []string
	for _, w := range writes {
		if !w.Ack.IsZero() {
			want = append(want, w.Key)
		}
	}
	deadline := time.Now().Add(settle)
	arr := make([]map[string]int64, len(cl.nodes))
	lastSay := time.Now()
	for {
		ready := true
		if infos, err := cl.infos(ctx, cl.all()); err == nil {
			for _, in := range infos {
				if in.Store.Keys < len(want) {
					ready = false
				}
			}
		} else {
			ready = false
		}
		last := time.Now().After(deadline) || ctx.Err() != nil
		if ready || last {
			missing := 0
			errs := cl.eachNode(cl.all(), func(_, i int) error {
				var err error
				arr[i], err = arrivalsAt(ctx, cl, i, prefix)
				return err
			})
			for i, err := range errs {
				if err != nil {
					arr[i] = nil
					missing += len(want)
					continue
				}
				for _, k := range want {
					if _, ok := arr[i][k]; !ok {
						missing++
					}
				}
			}
			if missing == 0 {
				return arr, true
			}
			if last {
				o.say("  %d (node, write) pairs still missing after %s", missing, settle)
				return arr, false
			}
		}
		if time.Since(lastSay) >= 2*time.Second {
			lastSay = time.Now()
			o.say("  waiting for every node to hold every write")
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// stableLatencies fills each acknowledged write's Stable and Reached and
// returns the sorted stable latencies (ms) of those on every node, and how
// many were missing somewhere.
func stableLatencies(writes []propWrite, arr []map[string]int64, nodes int) ([]float64, int) {
	var lat []float64
	incomplete := 0
	for i := range writes {
		w := &writes[i]
		if w.Ack.IsZero() {
			continue
		}
		var last int64
		for _, a := range arr {
			if t, ok := a[w.Key]; ok {
				w.Reached++
				last = max(last, t)
			}
		}
		if w.Reached < nodes {
			incomplete++
			continue
		}
		w.Stable = max(0, time.Duration(last-w.Ack.UnixNano()))
		lat = append(lat, ms(w.Stable))
	}
	sort.Float64s(lat)
	return lat, incomplete
}

// startStatusPoll polls every node's member list every interval and
// records each time an alive node is seen in another state. The returned
// function stops polling and returns the observations ("node2 saw node5
// suspect").
func startStatusPoll(ctx context.Context, cl *benchCluster, interval time.Duration) func() []string {
	pctx, cancel := context.WithCancel(ctx)
	var obs []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
			views, errs := cl.members(pctx, cl.all())
			for i, v := range views {
				if errs[i] != nil {
					continue
				}
				for _, m := range v {
					if m.Status != "alive" && slices.Contains(cl.names, m.Name) {
						obs = append(obs, fmt.Sprintf("%s %s saw %s %s", time.Now().Format("15:04:05.000"), cl.names[i], m.Name, m.Status))
					}
				}
			}
		}
	}()
	return func() []string {
		cancel()
		<-done
		return obs
	}
}

// burstRun writes p.Burst keys at node1 with 16 concurrent clients and
// returns the time (ms) from the first send until every node held all.
func burstRun(ctx context.Context, o *benchOpts, cl *benchCluster, prefix string, p propParams) (float64, error) {
	value := make([]byte, p.ValueSize)
	keys := make(chan int)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range keys {
				if _, err := cl.cs[0].Put(ctx, "", fmt.Sprintf("%s%06d", prefix, i), value); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for i := range p.Burst {
		keys <- i
	}
	close(keys)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, fmt.Errorf("burst: %w", err)
	}
	var last int64
	err := cluster.WaitFor(ctx, p.Settle, 100*time.Millisecond, func(ctx context.Context) (bool, string) {
		last = 0
		for i := range cl.nodes {
			a, err := arrivalsAt(ctx, cl, i, prefix)
			if err != nil {
				return false, err.Error()
			}
			if len(a) < p.Burst {
				return false, fmt.Sprintf("%s holds %d of %d", cl.names[i], len(a), p.Burst)
			}
			for _, t := range a {
				last = max(last, t)
			}
		}
		return true, ""
	})
	if err != nil {
		return math.NaN(), fmt.Errorf("burst did not reach every node: %w", err)
	}
	return ms(time.Duration(last - start.UnixNano())), nil
}

// writePropCSV writes one row per write.
func writePropCSV(path string, ws []propWrite) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--csv: %w", err)
	}
	w := csv.NewWriter(f)
	w.Write([]string{"rep", "seq", "key", "node", "sent_unix_ns", "ack_unix_ns", "put_ms", "stable_ms", "nodes_reached", "error"})
	for _, x := range ws {
		ack, put, stable := "", "", ""
		if !x.Ack.IsZero() {
			ack = strconv.FormatInt(x.Ack.UnixNano(), 10)
			put = strconv.FormatFloat(ms(x.Ack.Sub(x.Sent)), 'f', 3, 64)
		}
		if x.Stable >= 0 {
			stable = strconv.FormatFloat(ms(x.Stable), 'f', 3, 64)
		}
		w.Write([]string{strconv.Itoa(x.Rep + 1), strconv.Itoa(x.Seq), x.Key, x.Node,
			strconv.FormatInt(x.Sent.UnixNano(), 10), ack, put, stable, strconv.Itoa(x.Reached), x.Err})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return fmt.Errorf("--csv: %w", err)
	}
	return f.Close()
}
