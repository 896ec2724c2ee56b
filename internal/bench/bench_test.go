package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/cluster"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

func TestBenchPercentile(t *testing.T) {
	vs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		p    float64
		want float64
	}{{50, 5}, {99, 10}, {100, 10}, {10, 1}, {0, 1}} {
		if got := percentile(vs, tc.p); got != tc.want {
			t.Errorf("percentile(1..10, %v) = %v; want %v", tc.p, got, tc.want)
		}
	}
	if got := median([]float64{1, 2, 3, 10}); got != 2.5 {
		t.Errorf("median(1,2,3,10) = %v; want 2.5", got)
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Errorf("percentile(nil) is not NaN")
	}
}

func TestBenchParseProm(t *testing.T) {
	text := `# HELP peerctl_replication_messages_sent_total x
# TYPE peerctl_replication_messages_sent_total counter
peerctl_replication_messages_sent_total{kind="push"} 12
peerctl_replication_messages_sent_total{kind="digest"} 3
peerctl_gossip_packets_sent_total 7.5e+01
peerctl_gossip_packets_sent_totalx 1
`
	p, err := parseProm(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.sum("peerctl_replication_messages_sent_total"); got != 15 {
		t.Errorf("sum = %v; want 15", got)
	}
	if got := p.sum("peerctl_gossip_packets_sent_total"); got != 75 {
		t.Errorf("sum of an unlabelled counter = %v; want 75 (and not the ...x series)", got)
	}
	k := p.byKind("peerctl_replication_messages_sent_total")
	if k["push"] != 12 || k["digest"] != 3 {
		t.Errorf("byKind = %v; want push 12, digest 3", k)
	}
	d := promDelta([]promSample{{"a": 1}}, []promSample{{"a": 4, "b": 2}})
	if d["a"] != 3 || d["b"] != 2 {
		t.Errorf("promDelta = %v; want a 3, b 2", d)
	}
}

// Member events become the benchmark's membership events: a suspicion
// counts when the reporter's own probe failed, a refutation when a member
// it suspected comes back alive.
func TestBenchMemberEvents(t *testing.T) {
	cl := &benchCluster{}
	sus := map[string]bool{}
	for _, ev := range []api.Event{
		{Node: "node1", Kind: api.EventMember, Member: "node2", Status: "suspect", DetectedBy: "node1"},
		{Node: "node1", Kind: api.EventMember, Member: "node3", Status: "suspect", DetectedBy: "node4"},
		{Node: "node1", Kind: api.EventMember, Member: "node2", Status: "alive"},
		{Node: "node1", Kind: api.EventMember, Member: "node3", Status: "failed", DetectedBy: "node4"},
		{Node: "node1", Kind: api.EventMember, Member: "node3", Status: "alive"},
		{Node: "node1", Kind: api.EventWrite, Key: "k"},
	} {
		cl.noteMember(&ev, sus)
	}
	var got []string
	for _, ev := range cl.events {
		got = append(got, ev.Kind+" "+ev.Subject)
	}
	want := "suspect node2,suspect-heard node3,refute node2,failed node3"
	if strings.Join(got, ",") != want {
		t.Fatalf("events %q; want %q", strings.Join(got, ","), want)
	}
}

func TestBenchSummarize(t *testing.T) {
	defs := []metricDef{{"a", "A", "ms"}, {"b", "B", "count"}}
	targets := []benchTarget{{"a", "goal", "<", 10, ""}}
	reps := []benchRep{
		{Metrics: map[string]float64{"a": 12}},
		{Metrics: map[string]float64{"a": 4}},
		{Metrics: map[string]float64{"a": 8, "b": 1}},
	}
	s := summarize(defs, targets, reps)
	if s[0].Median != 8 || s[0].Min != 4 || s[0].Max != 12 || s[0].Runs != 3 {
		t.Errorf("summary of a = %+v; want median 8, range 4-12, 3 runs", s[0])
	}
	if len(s[0].Targets) != 1 || !s[0].Targets[0].Met {
		t.Errorf("target a < 10 on median 8: %+v; want met", s[0].Targets)
	}
	if s[1].Runs != 1 || s[1].Median != 1 {
		t.Errorf("summary of b = %+v; want 1 run, median 1", s[1])
	}
}

// buildPeerctl builds the peerctl binary: the agents are child processes
// of it, while the harness runs in the test.
func buildPeerctl(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds peerctl and starts real agents; skipped in -short mode")
	}
	exe := filepath.Join(t.TempDir(), "peerctl")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = "../.." // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// runBench runs `peerctl bench ARGS` in-process with agents of exe, and
// returns its table and the parsed --out JSON. It checks that no agent
// outlives the run.
func runBench(t *testing.T, ctx context.Context, exe string, args ...string) (string, *benchResult, error) {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.json")
	var stdout bytes.Buffer
	app := &cli.App{
		Name:           "peerctl",
		Commands:       []*cli.Command{Command()},
		Writer:         &stdout,
		ErrWriter:      &cluster.LineWriter{Fn: func(line string) { t.Log(line) }},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	full := append([]string{"peerctl", "bench"}, args...)
	full = append(full, "--peerctl", exe, "--dir", filepath.Join(dir, "clusters"), "--out", out, "--reps", "1")
	err := app.RunContext(ctx, full)
	assertNoAgentsLeft(t, filepath.Join(dir, "clusters"))
	if err != nil {
		return stdout.String(), nil, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("--out file: %v", err)
	}
	var res benchResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("--out is not JSON: %v\n%s", err, b)
	}
	return stdout.String(), &res, nil
}

// assertNoAgentsLeft fails if any process has dir in its command line.
func assertNoAgentsLeft(t *testing.T, dir string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(dir)) {
			t.Errorf("process %s still running after bench returned: %s", p, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}

// checkFigures asserts that each figure was produced and printed. It
// checks no values: timings on a CI machine say nothing.
func checkFigures(t *testing.T, table string, res *benchResult, keys ...string) {
	t.Helper()
	if len(res.Reps) != 1 {
		t.Errorf("reps = %d; want 1", len(res.Reps))
	}
	if res.Method == "" || !strings.Contains(table, res.Method) {
		t.Errorf("table does not start with the method %q:\n%s", res.Method, table)
	}
	got := map[string]benchSummary{}
	for _, s := range res.Summary {
		got[s.Key] = s
	}
	for _, k := range keys {
		s, ok := got[k]
		if !ok || s.Runs != 1 || math.IsNaN(s.Median) {
			t.Errorf("figure %s = %+v; want one run's value", k, s)
			continue
		}
		if !strings.Contains(table, s.Label) {
			t.Errorf("table lacks %q:\n%s", s.Label, table)
		}
	}
}

// TestBenchSmoke runs each workload at the smallest size, once, to keep
// the harness from rotting: it checks that the figures are there and the
// JSON parses, never their values (timings on a CI machine say nothing).
// It takes about half a minute.
func TestBenchSmoke(t *testing.T) {
	exe := buildPeerctl(t)
	bg := context.Background()

	t.Run("propagation", func(t *testing.T) {
		csvPath, svgPath := filepath.Join(t.TempDir(), "lat.csv"), filepath.Join(t.TempDir(), "lat.svg")
		table, res, err := runBench(t, bg, exe, "propagation", "--nodes", "3", "--rate", "20",
			"--duration", "1s", "--delay", "20ms", "--burst", "10", "--csv", csvPath, "--svg", svgPath)
		if err != nil {
			t.Fatal(err)
		}
		checkFigures(t, table, res, "p50_ms", "p99_ms", "max_ms", "msgs_per_op", "bytes_per_op", "acked", "false_failures", "burst_all_ms")
		b, err := os.ReadFile(csvPath)
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Count(string(b), "\n"); lines != 21 {
			t.Errorf("CSV has %d lines; want a header and 20 writes", lines)
		}
		svg, err := os.ReadFile(svgPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := xml.Unmarshal(svg, new(struct{})); err != nil || strings.Count(string(svg), "<circle") != 20 {
			t.Errorf("SVG: %v, %d points; want well-formed XML with 20 points", err, strings.Count(string(svg), "<circle"))
		}
	})
	t.Run("detection", func(t *testing.T) {
		table, res, err := runBench(t, bg, exe, "detection", "--nodes", "3")
		if err != nil {
			t.Fatal(err)
		}
		checkFigures(t, table, res, "first_failed_s", "all_failed_s", "false_alarms")
	})
	t.Run("soak", func(t *testing.T) {
		table, res, err := runBench(t, bg, exe, "detection", "--nodes", "3", "--soak", "1s")
		if err != nil {
			t.Fatal(err)
		}
		checkFigures(t, table, res, "suspicions", "false_failures", "polled_non_alive")
	})
	t.Run("catchup", func(t *testing.T) {
		table, res, err := runBench(t, bg, exe, "catchup", "--nodes", "3", "--keys", "100")
		if err != nil {
			t.Fatal(err)
		}
		checkFigures(t, table, res, "catchup_s", "bytes_in", "floor_bytes", "bytes_ratio")
	})
	t.Run("throughput", func(t *testing.T) {
		table, res, err := runBench(t, bg, exe, "throughput", "--nodes", "2", "--clients", "1,4", "--duration", "300ms")
		if err != nil {
			t.Fatal(err)
		}
		checkFigures(t, table, res, "one_c1_wps", "one_c4_wps", "spread_c4_wps", "spread_c4_converge_ms")
	})
	t.Run("memory", func(t *testing.T) {
		table, res, err := runBench(t, bg, exe, "memory", "--nodes", "2", "--keys", "200", "--idle", "100ms", "--max-nodes", "3")
		if err != nil {
			t.Fatal(err)
		}
		checkFigures(t, table, res, "serve_first_ms", "rss_idle_mb", "rss_loaded_mb", "scale_3_ok", "max_nodes")
	})
	// Ctrl-C in the middle of a run stops every agent it started.
	t.Run("interrupt", func(t *testing.T) {
		ctx, cancel := context.WithCancel(bg)
		defer cancel()
		go func() {
			time.Sleep(2 * time.Second)
			cancel()
		}()
		_, _, err := runBench(t, ctx, exe, "propagation", "--nodes", "3", "--rate", "10", "--duration", "1m")
		if err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Errorf("bench = %v; want interrupted", err)
		}
	})
}
