// Package bench is the benchmark harness behind `peerctl bench WORKLOAD`
// (Command). It measures a real cluster: it starts agents of the
// peerctl binary on loopback through the local-cluster launcher (internal/cluster),
// runs a workload against them, and prints every figure with its method
// (N, rate, duration, repetitions) as the median of the repetitions and
// their min–max spread. Each repetition runs on a fresh cluster in a fresh
// temporary directory. Every daemon it starts is killed by PID when the
// repetition ends, also on error or Ctrl-C; the kernel kills them if
// peerctl itself dies (cluster/attr_linux.go).
//
// The workloads live in their own files: propagation, detection, catchup,
// throughput, memory; cluster.go runs one repetition's cluster. Shared
// here: flags, the repetition loop, the result type and its table and JSON
// output.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/figures"
)

// Command is the `bench` command; the caller sets its help category.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure a local cluster: propagation, failure detection, catch-up, throughput, memory",
		UsageText: `peerctl bench WORKLOAD [options]

Examples:
   peerctl bench propagation --nodes 25 --rate 100 --duration 20s
   peerctl bench propagation --preset glomers --csv lat.csv --out prop.json
   peerctl bench detection --nodes 25
   peerctl bench detection --nodes 25 --soak 10m
   peerctl bench catchup --keys 10000
   peerctl bench throughput --clients 1,16,64
   peerctl bench memory --keys 100000 --max-nodes 25,50,100
   peerctl bench failover --nodes 5 --reps 7
   peerctl bench throughput --consistent --clients 1,16,64`,
		Description: `Starts real daemons of the peerctl binary on free cluster.Loopback ports, runs a
workload, shows progress on stderr and prints a results table: each figure
is the median over --reps repetitions (each on a fresh cluster) with the
min–max spread, next to the public targets it is measured against.
--out FILE writes the full results as JSON (--json prints them on stdout
instead of the table, which then goes to stderr). Every daemon started is
stopped (killed by PID) when the run ends, also on failure or Ctrl-C.

See BENCHMARKS.md for the method, the targets and the results on a 2-core
machine.`,
		Subcommands: []*cli.Command{
			benchPropagationCommand(),
			benchDetectionCommand(),
			benchCatchupCommand(),
			benchThroughputCommand(),
			benchMemoryCommand(),
			benchFailoverCommand(),
			benchEventsCommand(),
		},
	}
}

// benchFlags are the flags every workload takes, then its own.
func benchFlags(defNodes int, own ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.IntFlag{Name: "nodes", Aliases: []string{"n"}, Value: defNodes, Usage: "cluster size `N`"},
		&cli.IntFlag{Name: "reps", Value: 3, Usage: "repetitions `R`, each on a fresh cluster; figures are their median and range"},
		&cli.StringFlag{Name: "profile", Value: "local", Usage: "the agents' gossip timing `PROFILE`: local, lan or wan"},
		&cli.BoolFlag{Name: "encrypt", Usage: "start every daemon with --encrypt and a fresh key: gossip encrypted, replication sealed (measures their cost)"},
		&cli.StringSliceFlag{Name: "agent-arg", Usage: "extra agent flag `ARG` for every daemon, e.g. --agent-arg=--push-window=5ms; repeat for more"},
		&cli.StringFlag{Name: "out", Usage: "write the results as JSON to `FILE`"},
		&cli.BoolFlag{Name: "json", Usage: "print the results as JSON on stdout (the table goes to stderr)"},
		&cli.StringFlag{Name: "dir", Usage: "parent `DIR` of the clusters' data dirs and logs (default: a temporary directory)"},
		&cli.BoolFlag{Name: "keep", Usage: "keep the data dirs and logs (otherwise removed unless a repetition failed)"},
		&cli.StringFlag{Name: "peerctl", Usage: "peerctl binary `PATH` to run the agents (default: this one)"},
	}, own...)
}

// valueSizeFlag is --value-size, the size of the values a workload
// writes (benchValue).
func valueSizeFlag() cli.Flag {
	return &cli.IntFlag{Name: "value-size", Value: 100, Usage: "value size in `BYTES`"}
}

// benchValue returns the value the workloads write: n bytes of a to z,
// repeating.
func benchValue(n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	return v
}

// benchOpts are the common options of a run.
type benchOpts struct {
	exe       string
	nodes     int
	reps      int
	profile   string
	agentArgs []string
	dir       string
	keep      bool
	out       io.Writer // the table
	progress  io.Writer // progress lines (stderr)
}

func benchOptions(c *cli.Context) (*benchOpts, error) {
	if c.NArg() > 0 { // as cli's wantArgs(c, 0, 0)
		usage := c.Command.HelpName
		if c.Command.ArgsUsage != "" {
			usage += " " + c.Command.ArgsUsage
		}
		return nil, fmt.Errorf("too many arguments %q: usage: %s (see `%s --help`)", c.Args().Slice(), usage, c.Command.HelpName)
	}
	o := &benchOpts{
		nodes: c.Int("nodes"), reps: c.Int("reps"), profile: c.String("profile"),
		agentArgs: c.StringSlice("agent-arg"), dir: c.String("dir"), keep: c.Bool("keep"),
		out: c.App.Writer, progress: c.App.ErrWriter,
	}
	if o.progress == nil {
		o.progress = os.Stderr
	}
	if c.Bool("json") {
		o.out = o.progress
	}
	if c.Bool("encrypt") {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, fmt.Errorf("--encrypt: %w", err)
		}
		o.agentArgs = append(o.agentArgs, "--encrypt="+base64.StdEncoding.EncodeToString(k))
	}
	if o.reps < 1 {
		return nil, fmt.Errorf("--reps %d: want at least 1", o.reps)
	}
	if !slices.Contains(api.Profiles, o.profile) {
		return nil, fmt.Errorf("--profile %q: want one of %s", o.profile, strings.Join(api.Profiles, ", "))
	}
	o.exe = c.String("peerctl")
	if o.exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the peerctl binary to start agents with (set --peerctl): %w", err)
		}
		o.exe = exe
	}
	return o, nil
}

// say prints a progress line on stderr.
func (o *benchOpts) say(format string, args ...any) {
	fmt.Fprintf(o.progress, "bench | "+format+"\n", args...)
}

// metricDef describes one figure a workload reports.
type metricDef struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	Unit  string `json:"unit"` // ms, s, msgs, B, MB, /s, count, bool
}

// benchTarget is a public target or goal for a figure, checked against the
// median.
type benchTarget struct {
	Metric string  `json:"metric"`
	Name   string  `json:"name"` // "3d", "goal", ...
	Op     string  `json:"op"`   // <, <=, >=, ==
	Value  float64 `json:"value"`
	Note   string  `json:"note,omitempty"` // e.g. "defined for N=25"
}

func (t benchTarget) holds(v float64) bool {
	switch t.Op {
	case "<":
		return v < t.Value
	case "<=":
		return v <= t.Value
	case ">=":
		return v >= t.Value
	case "==":
		return v == t.Value
	}
	return false
}

// benchRep is one repetition's figures.
type benchRep struct {
	Metrics map[string]float64 `json:"metrics"`
	Detail  any                `json:"detail,omitempty"`
	Notes   []string           `json:"notes,omitempty"`
}

// benchSummary is one figure over all repetitions.
type benchSummary struct {
	metricDef
	Runs    int               `json:"runs"` // repetitions that produced it
	Median  float64           `json:"median"`
	Min     float64           `json:"min"`
	Max     float64           `json:"max"`
	Targets []benchTargetEval `json:"targets,omitempty"`
}

type benchTargetEval struct {
	benchTarget
	Met bool `json:"met"`
}

// benchMachine describes where the figures were measured.
type benchMachine struct {
	NumCPU    int    `json:"nproc"`
	CPU       string `json:"cpu,omitempty"`
	MemTotal  string `json:"mem_total,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
	Peerctl   string `json:"peerctl"`
	Revision  string `json:"revision,omitempty"`
	// LoadStart and LoadEnd are /proc/loadavg when the run started and
	// ended: other work on the machine skews the figures.
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// benchResult is the output of one `peerctl bench` run.
type benchResult struct {
	Workload string         `json:"workload"`
	Method   string         `json:"method"` // one line: the workload and its parameters
	Params   map[string]any `json:"params"`
	Machine  benchMachine   `json:"machine"`
	Started  time.Time      `json:"started"`
	Took     string         `json:"took"`
	Summary  []benchSummary `json:"summary"`
	Reps     []benchRep     `json:"reps"`
	Notes    []string       `json:"notes,omitempty"`
}

// benchRepFunc runs repetition rep (from 0) and returns its figures.
type benchRepFunc func(ctx context.Context, rep int) (*benchRep, error)

// runReps runs fn reps times and summarises the figures in defs. It stops
// at the first error or when ctx ends.
func runReps(ctx context.Context, o *benchOpts, res *benchResult, defs []metricDef, targets []benchTarget, fn benchRepFunc) error {
	res.Started = time.Now()
	res.Machine = machineInfo()
	o.say("%s", res.Method)
	for rep := range o.reps {
		if err := ctx.Err(); err != nil {
			return err
		}
		o.say("repetition %d/%d", rep+1, o.reps)
		r, err := fn(ctx, rep)
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted in repetition %d: %w", rep+1, ctx.Err())
		}
		if err != nil {
			return fmt.Errorf("repetition %d: %w", rep+1, err)
		}
		res.Reps = append(res.Reps, *r)
	}
	res.Took = time.Since(res.Started).Round(time.Millisecond).String()
	res.Machine.LoadEnd = loadAvg()
	res.Summary = summarize(defs, targets, res.Reps)
	return nil
}

// summarize computes each figure's median and range over the repetitions
// and checks the targets against the median.
func summarize(defs []metricDef, targets []benchTarget, reps []benchRep) []benchSummary {
	var out []benchSummary
	for _, d := range defs {
		var vs []float64
		for _, r := range reps {
			if v, ok := r.Metrics[d.Key]; ok && !math.IsNaN(v) {
				vs = append(vs, v)
			}
		}
		s := benchSummary{metricDef: d, Runs: len(vs)}
		if len(vs) > 0 {
			sort.Float64s(vs)
			s.Median, s.Min, s.Max = median(vs), vs[0], vs[len(vs)-1]
			for _, t := range targets {
				if t.Metric == d.Key {
					s.Targets = append(s.Targets, benchTargetEval{benchTarget: t, Met: t.holds(s.Median)})
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// The shared figure helpers (internal/figures), by the names bench uses.
var (
	median     = figures.Median
	percentile = figures.Percentile
	fmtFigure  = figures.Format
)

// writeBench prints the table and writes the JSON where asked.
func writeBench(c *cli.Context, o *benchOpts, res *benchResult) error {
	printBenchTable(o.out, res)
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, res); err != nil {
			return err
		}
	}
	if path := c.String("out"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if err := printJSON(f, res); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		o.say("results written to %s", path)
	}
	return nil
}

// printBenchTable prints the method line, then one row per figure:
// median, range over the repetitions, and the targets with ✓ or ✗.
func printBenchTable(w io.Writer, res *benchResult) {
	fmt.Fprintf(w, "%s\n", res.Method)
	n := len(res.Reps)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) // as the CLI's tables
	fmt.Fprintf(tw, "FIGURE\tMEDIAN\tRANGE (%d %s)\tTARGETS\n", n, plural(n, "run"))
	for _, s := range res.Summary {
		if s.Runs == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t\n", s.Label)
			continue
		}
		rng := fmtFigure(s.Min, s.Unit) + " – " + fmtFigure(s.Max, s.Unit)
		if s.Min == s.Max {
			rng = "-"
		}
		var ts []string
		for _, t := range s.Targets {
			mark := "✗"
			if t.Met {
				mark = "✓"
			}
			txt := fmt.Sprintf("%s %s %s %s", mark, t.Name, t.Op, fmtFigure(t.Value, s.Unit))
			if t.Note != "" {
				txt += " (" + t.Note + ")"
			}
			ts = append(ts, txt)
		}
		runs := ""
		if s.Runs < n {
			runs = fmt.Sprintf(" [%d of %d runs]", s.Runs, n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s%s\t%s\n", s.Label, fmtFigure(s.Median, s.Unit), rng, runs, strings.Join(ts, ", "))
	}
	tw.Flush()
	for _, note := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", note)
	}
	for i, r := range res.Reps {
		for _, note := range r.Notes {
			fmt.Fprintf(w, "run %d: %s\n", i+1, note)
		}
	}
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s, %s; load %s at start, %s at end; took %s\n", res.Machine.NumCPU, res.Machine.CPU,
		res.Machine.GoVersion, res.Machine.OS, res.Machine.LoadStart, res.Machine.LoadEnd, res.Took)
}

// machineInfo reads what describes this machine.
func machineInfo() benchMachine {
	m := benchMachine{
		NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, Peerctl: api.Version, LoadStart: loadAvg(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				m.MemTotal = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				m.Revision = s.Value
			}
		}
	}
	return m
}

// errIncomplete marks a figure that could not be measured in time; the
// repetition still reports the others.
var errIncomplete = errors.New("incomplete")

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// boolFigure is 1 for true.
func boolFigure(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// printJSON writes the results as indented JSON and a newline, as the
// CLI's --json does.
func printJSON(w io.Writer, res *benchResult) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err == nil {
		_, err = w.Write(append(b, '\n'))
	}
	if err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// plural returns word, with an "s" unless n is 1.
func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
