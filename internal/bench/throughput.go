package bench

// bench throughput: C clients in closed loops (each sends its next write
// when the previous one is acknowledged) for a fixed duration, all at
// node1 ("one") or client j at node j mod N ("spread"); then the time from
// the last acknowledgement until every node's digest is the same.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

func benchThroughputCommand() *cli.Command {
	return &cli.Command{
		Name:  "throughput",
		Usage: "acknowledged writes per second, and the time to converge after the load",
		UsageText: `peerctl bench throughput [--clients 1,16,64] [--duration D] [--nodes N] [options]

Examples:
   peerctl bench throughput --clients 1,16,64 --duration 10s`,
		Description: `For each client count, and each mode (one: every client writes at node1;
spread: client j writes at node j mod N), runs that many clients in closed
loops for --duration, each writing unique keys of --value-size bytes, and
reports acknowledged writes per second and the put latency; then polls
every node's digest every 20 ms until all are equal, and reports the time
from the end of the load. All phases of a repetition share one cluster.
The harness runs on the same machine and takes CPU from the daemons.`,
		Flags: benchFlags(5,
			&cli.StringFlag{Name: "clients", Value: "1,16,64", Usage: "comma-separated client counts `C,...`"},
			&cli.StringFlag{Name: "modes", Value: "one,spread", Usage: "`MODES`: one (all clients at node1), spread (over all nodes)"},
			&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "load `D` per phase"},
			valueSizeFlag(),
			&cli.DurationFlag{Name: "timeout", Value: 60 * time.Second, Usage: "give up waiting for convergence after `D`"},
			&cli.BoolFlag{Name: "consistent", Usage: "write the consistent namespace (Raft) instead, each phase followed by a gossip phase for the latency ratio; modes leader, spread (default both) or one"},
		),
		Action: runBenchThroughput,
	}
}

type throughputParams struct {
	Nodes     int           `json:"nodes"`
	Clients   []int         `json:"clients"`
	Modes     []string      `json:"modes"`
	Duration  time.Duration `json:"duration_ns"`
	ValueSize int           `json:"value_size"`
	Timeout   time.Duration `json:"timeout_ns"`
	Profile   string        `json:"profile"`
}

// intList parses "1,16,64".
func intList(flag, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--%s %q: want positive integers separated by commas", flag, s)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--%s is empty", flag)
	}
	return out, nil
}

func runBenchThroughput(c *cli.Context) error {
	o, err := benchOptions(c)
	if err != nil {
		return err
	}
	clients, err := intList("clients", c.String("clients"))
	if err != nil {
		return err
	}
	p := throughputParams{Nodes: o.nodes, Clients: clients, Duration: c.Duration("duration"),
		ValueSize: c.Int("value-size"), Timeout: c.Duration("timeout"), Profile: o.profile}
	for _, m := range strings.Split(c.String("modes"), ",") {
		switch m = strings.TrimSpace(m); m {
		case "leader":
			if !c.Bool("consistent") {
				return fmt.Errorf("--modes leader needs --consistent")
			}
			p.Modes = append(p.Modes, m)
		case "one", "spread":
			p.Modes = append(p.Modes, m)
		case "":
		default:
			return fmt.Errorf("--modes %q: want one, spread or both", c.String("modes"))
		}
	}
	if len(p.Modes) == 0 || p.Duration <= 0 {
		return fmt.Errorf("--modes and --duration must be given")
	}
	if c.Bool("consistent") {
		return runBenchConsistentThroughput(c, o, p)
	}
	res := &benchResult{Workload: "throughput", Params: map[string]any{"throughput": p},
		Method: fmt.Sprintf("throughput N=%d clients=%s modes=%s dur=%s/phase value=%dB profile=%s reps=%d (closed loop)",
			p.Nodes, c.String("clients"), strings.Join(p.Modes, ","), p.Duration, p.ValueSize, p.Profile, o.reps)}
	res.Notes = append(res.Notes, "converged after load = from the end of the load until a check of every node's digest (GET /v1/info on each, every 20 ms) returned them equal")
	var defs []metricDef
	var targets []benchTarget
	for _, mode := range p.Modes {
		where := "at node1"
		if mode == "spread" {
			where = "over all nodes"
		}
		for _, n := range p.Clients {
			k := fmt.Sprintf("%s_c%d", mode, n)
			defs = append(defs,
				metricDef{k + "_wps", fmt.Sprintf("%s, %d %s: acked writes", where, n, plural(n, "client")), "/s"},
				metricDef{k + "_p99_ms", fmt.Sprintf("%s, %d %s: put p99", where, n, plural(n, "client")), "ms"},
				metricDef{k + "_converge_ms", fmt.Sprintf("%s, %d %s: converged after load", where, n, plural(n, "client")), "ms"},
				metricDef{k + "_agents_cpu", fmt.Sprintf("%s, %d %s: CPU of all agents", where, n, plural(n, "client")), "%"},
				metricDef{k + "_harness_cpu", fmt.Sprintf("%s, %d %s: CPU of the harness", where, n, plural(n, "client")), "%"},
			)
			if n == 64 {
				note := ""
				if p.Nodes != 5 {
					note = "defined for N=5"
				}
				if mode == "one" {
					targets = append(targets, benchTarget{k + "_wps", "goal", ">=", 10000, ""})
				}
				targets = append(targets, benchTarget{k + "_converge_ms", "goal", "<", 1000, note})
			}
		}
	}
	return finishBench(c, o, res, runReps(c.Context, o, res, defs, targets, func(ctx context.Context, rep int) (*benchRep, error) {
		var out *benchRep
		err := withCluster(ctx, o, p.Nodes, nil, func(cl *benchCluster) error {
			if _, err := cl.form(ctx, formTimeout(p.Nodes)); err != nil {
				return err
			}
			m := map[string]float64{}
			var notes []string
			for _, mode := range p.Modes {
				for _, n := range p.Clients {
					k := fmt.Sprintf("%s_c%d", mode, n)
					ph, err := throughputPhase(ctx, cl, p, fmt.Sprintf("bench/t%d/%s/", rep, k), mode, n)
					if err != nil {
						return fmt.Errorf("%s with %d clients: %w", mode, n, err)
					}
					if ph.firstCheck {
						notes = append(notes, fmt.Sprintf("%s: converged by the first check; %s is the check's own duration", k, fmtFigure(ph.converge, "ms")))
					}
					m[k+"_wps"], m[k+"_p99_ms"], m[k+"_converge_ms"] = ph.wps, ph.p99, ph.converge
					m[k+"_agents_cpu"], m[k+"_harness_cpu"] = ph.agentsCPU, ph.harnessCPU
					o.say("  %s, %d clients: %.0f writes/s, put p99 %s, converged %s after the load; CPU: agents %.0f%%, harness %.0f%% (100%% = one core)",
						mode, n, ph.wps, fmtFigure(ph.p99, "ms"), fmtFigure(ph.converge, "ms"), ph.agentsCPU, ph.harnessCPU)
				}
			}
			out = &benchRep{Metrics: m, Notes: notes}
			return nil
		})
		return out, err
	}))
}

// phaseResult is what one phase of the throughput workload measured.
type phaseResult struct {
	wps        float64 // acknowledged writes per second
	p99        float64 // put latency p99, ms
	converge   float64 // ms from the end of the load until a check saw all digests equal
	firstCheck bool    // the first check did: converge is that check's duration
	agentsCPU  float64 // % of one core used by all agents during the load
	harnessCPU float64 // % of one core used by the harness
}

// throughputPhase runs n closed-loop clients for the duration, then waits
// until every node's digest is the same.
func throughputPhase(ctx context.Context, cl *benchCluster, p throughputParams, prefix, mode string, n int) (phaseResult, error) {
	value := benchValue(p.ValueSize)
	nodeOf := func(int) int { return 0 }
	if mode == "spread" {
		nodeOf = func(j int) int { return j % len(cl.nodes) }
	}
	lr, err := closedLoop(ctx, cl, n, p.Duration, nodeOf, func(ctx context.Context, c *api.Client, j, seq int) error {
		_, err := c.Put(ctx, "", fmt.Sprintf("%s%d/%d", prefix, j, seq), value)
		return err
	})
	if err != nil {
		return phaseResult{}, err
	}
	at, checks, err := cl.waitConverged(ctx, cl.all(), 20*time.Millisecond, p.Timeout)
	if err != nil {
		return phaseResult{}, fmt.Errorf("nodes did not converge: %w", err)
	}
	return phaseResult{
		wps: lr.wps, p99: lr.p99, converge: ms(at.Sub(lr.end)), firstCheck: checks == 1,
		agentsCPU: lr.agentsCPU, harnessCPU: lr.harnessCPU,
	}, nil
}
