package cli

// Fault injection: pause, partition, isolate, delay and loss install a
// fault, heal removes faults, faults lists them. Each is one call to the
// daemon at --addr (daemon/faultsapi.go), which plans the rules every node
// involved must apply and installs them through those nodes' APIs; this
// file holds what the commands share, and the faults command.

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/daemon"
)

// faultRule is one rule installed on one node, as fault commands print it
// with --json.
type faultRule struct {
	ID     string     `json:"id"`
	Kind   string     `json:"kind"`   // drop, delay, loss or pause
	Effect string     `json:"effect"` // daemon.Rule.Describe
	Peers  []string   `json:"peers"`  // empty: all peers
	Delay  string     `json:"delay,omitempty"`
	Jitter string     `json:"jitter,omitempty"`
	Rate   float64    `json:"rate,omitempty"`
	Since  time.Time  `json:"since"`
	Until  *time.Time `json:"until,omitempty"` // absent: until healed
	Reason string     `json:"reason"`
	Nodes  []string   `json:"nodes"` // the nodes the command named
}

func toFaultRule(r daemon.Rule) faultRule {
	out := faultRule{ID: r.ID, Kind: r.Kind, Effect: r.Describe(), Peers: []string{}, Rate: r.Rate,
		Since: r.Since, Reason: r.Reason, Nodes: []string{}}
	out.Peers = append(out.Peers, r.Peers...)
	out.Nodes = append(out.Nodes, r.Nodes...)
	if r.Delay > 0 {
		out.Delay = r.Delay.String()
	}
	if r.Jitter > 0 {
		out.Jitter = r.Jitter.String()
	}
	if !r.Until.IsZero() {
		u := r.Until
		out.Until = &u
	}
	return out
}

// faultNode is one node's part in a fault command's --json output: the
// rules it holds (or was given), or why it could not be reached.
type faultNode struct {
	Node  string      `json:"node"`
	Rules []faultRule `json:"rules"`
	Error string      `json:"error,omitempty"`
}

func toFaultNodes(in []daemon.NodeFaults) []faultNode {
	out := make([]faultNode, len(in))
	for i, nf := range in {
		out[i] = faultNode{Node: nf.Node, Rules: []faultRule{}, Error: nf.Error}
		for _, r := range nf.Rules {
			out[i].Rules = append(out[i].Rules, toFaultRule(r))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// faultResult is what pause, partition, isolate, delay and loss print with
// --json.
type faultResult struct {
	ID     string      `json:"id"`
	Reason string      `json:"reason"`
	Nodes  []faultNode `json:"nodes"`
}

// Flags shared by the fault commands. Each call returns a new flag: flags
// hold parse state.

func forFlag() cli.Flag {
	return &cli.DurationFlag{Name: "for", Usage: "remove the fault by itself after `DURATION`, e.g. 30s", DefaultText: "until `peerctl heal`"}
}

func seedFlag() cli.Flag {
	return &cli.Uint64Flag{Name: "seed", Usage: "seed `N` for the random choices (which messages are lost, each message's jitter), so a scenario replays the same way", DefaultText: "each node's own generator"}
}

func toFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "to", Usage: "only traffic between the nodes and these `PEER,...`", DefaultText: "all their peers"}
}

func allNodesFlag() cli.Flag {
	return &cli.BoolFlag{Name: "all", Usage: "every node, instead of naming them"}
}

// faultFlags returns a fault command's own flags followed by --for, --seed
// and --json.
func faultFlags(own ...cli.Flag) []cli.Flag {
	return append(own, forFlag(), seedFlag(), jsonFlag())
}

// faultAction adapts run to a cli.ActionFunc for the fault commands. It
// applies flags typed after the arguments, as in "pause n1 --for 10s" (urfave
// cli v2 stops reading flags at the first argument), handles --help there
// too, and passes run the remaining arguments.
func faultAction(run func(c *cli.Context, args []string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		args, help, err := trailingFlags(c)
		if err != nil {
			return err
		}
		if help { // as urfave does for a --help before the arguments
			cli.HelpPrinter(c.App.Writer, cli.CommandHelpTemplate, c.Command)
			return nil
		}
		return run(c, args)
	}
}

// trailingFlags sets the command's flags found among its positional
// arguments and returns the other arguments; help reports a --help or -h.
// Everything after "--" is an argument. Errors read like urfave's own.
func trailingFlags(c *cli.Context) (args []string, help bool, err error) {
	in := c.Args().Slice()
	for i := 0; i < len(in); i++ {
		a := in[i]
		if a == "--" {
			return append(args, in[i+1:]...), false, nil
		}
		if len(a) < 2 || a[0] != '-' {
			args = append(args, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "help" || name == "h" {
			return nil, true, nil
		}
		f := commandFlag(c.Command, name)
		if f == nil {
			return nil, false, usageError(c, fmt.Errorf("flag provided but not defined: -%s", name), false)
		}
		if _, isBool := f.(*cli.BoolFlag); isBool && !hasValue {
			value, hasValue = "true", true
		}
		if !hasValue {
			if i+1 == len(in) {
				return nil, false, usageError(c, fmt.Errorf("flag needs an argument: -%s", name), false)
			}
			i++
			value = in[i]
		}
		if err := c.Set(name, value); err != nil {
			return nil, false, usageError(c, fmt.Errorf("invalid value %q for flag -%s: %v", value, name, err), false)
		}
	}
	return args, false, nil
}

// commandFlag returns the command's flag called name, or nil.
func commandFlag(cmd *cli.Command, name string) cli.Flag {
	for _, f := range cmd.Flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// commandLine is the command as typed, from its name on: the Reason a
// fault request carries, so `peerctl faults` shows what made each rule.
func commandLine(c *cli.Context) string {
	if typed, ok := c.App.Metadata[TypedCommand].(string); ok && typed != "" {
		return typed
	}
	for _, p := range c.Lineage()[1:] {
		if a := p.Args().Slice(); len(a) > 0 && a[0] == c.Command.Name {
			return strings.Join(a, " ")
		}
	}
	return strings.Join(append([]string{c.Command.Name}, c.Args().Slice()...), " ")
}

// nodeList splits NODE arguments, each a name or a comma-separated list,
// into names. A name may appear once.
// nodesFault runs a fault command whose arguments are the nodes it acts
// on (pause, isolate).
func nodesFault(kind string) func(c *cli.Context, args []string) error {
	return func(c *cli.Context, args []string) error {
		req, err := faultRequest(c, kind)
		if err != nil {
			return err
		}
		if len(args) == 0 {
			return missingNodes(c)
		}
		if req.Nodes, err = nodeList(args); err != nil {
			return err
		}
		return injectFault(c, req)
	}
}

func nodeList(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		for _, n := range strings.Split(a, ",") {
			n = strings.TrimSpace(n)
			if n == "" {
				return nil, fmt.Errorf("empty node name in %q", a)
			}
			if slices.Contains(out, n) {
				return nil, fmt.Errorf("node %q is named twice", n)
			}
			out = append(out, n)
		}
	}
	return out, nil
}

// faultTargets reads the NODE arguments of delay and loss, or --all.
func faultTargets(c *cli.Context, args []string) ([]string, error) {
	if c.Bool("all") {
		if len(args) > 0 {
			return nil, fmt.Errorf("name nodes or give --all, not both")
		}
		return []string{"*"}, nil
	}
	if len(args) == 0 {
		return nil, missingNodes(c)
	}
	return nodeList(args)
}

// missingNodes is the error for a fault command run without its NODE
// arguments.
func missingNodes(c *cli.Context) error {
	return fmt.Errorf("missing arguments: usage: %s %s (see `%s --help`)", c.Command.HelpName, c.Command.ArgsUsage, c.Command.HelpName)
}

// faultRequest returns the request with the flags every fault command
// shares: --for, --seed, and the command line as Reason.
func faultRequest(c *cli.Context, kind string) (daemon.FaultRequest, error) {
	d := c.Duration("for")
	if d < 0 {
		return daemon.FaultRequest{}, fmt.Errorf("--for %v: want a positive duration, or none to last until healed", d)
	}
	return daemon.FaultRequest{Kind: kind, For: d, Seed: c.Uint64("seed"), Reason: commandLine(c)}, nil
}

// injectFault sends req and prints, one line per node involved, what was
// installed there or why it could not be. The error names the nodes that
// did not get the fault.
func injectFault(c *cli.Context, req daemon.FaultRequest) error {
	res, err := client(c).InjectFault(c.Context, req)
	if err != nil {
		return fmt.Errorf("%s: %w", req.Kind, err)
	}
	nodes := toFaultNodes(res.Nodes)
	var failed []string
	for _, n := range nodes {
		if n.Error != "" {
			failed = append(failed, n.Node)
		}
	}
	w := c.App.Writer
	if c.Bool("json") {
		if err := printJSON(w, faultResult{ID: res.ID, Reason: req.Reason, Nodes: nodes}); err != nil {
			return err
		}
	} else {
		tw := newTable(w)
		for _, n := range nodes {
			what := "not installed: " + n.Error
			if n.Error == "" {
				effects := make([]string, len(n.Rules))
				for i, r := range n.Rules {
					effects[i] = r.Effect
				}
				what = strings.Join(effects, "; ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Node, res.ID, what)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(failed) == 0 {
			lasts := "until healed"
			if req.For > 0 {
				lasts = "for " + req.For.String()
			}
			fmt.Fprintf(w, "fault %s on %d %s %s; undo with `%s`\n", res.ID, len(nodes), plural(len(nodes), "node"), lasts, healHint(req))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("fault %s not installed on %s (could not be reached); the other nodes have it: undo with `%s`",
			res.ID, strings.Join(failed, ", "), healHint(req))
	}
	return nil
}

// healHint is the heal command that undoes req.
func healHint(req daemon.FaultRequest) string {
	var first string
	switch {
	case len(req.Groups) > 0 && len(req.Groups[0]) > 0:
		first = req.Groups[0][0]
	case len(req.Nodes) > 0 && req.Nodes[0] != "*":
		first = req.Nodes[0]
	default:
		return "peerctl heal --all"
	}
	return "peerctl heal " + first
}

func faultsCommand() *cli.Command {
	return &cli.Command{
		Name:     "faults",
		Category: catFaults,
		Usage:    "list the active faults on every node",
		UsageText: `peerctl faults [--json]

Examples:
  peerctl faults
  peerctl faults --json | jq '.[].rules[].effect'`,
		Description: `Asks every member that has not left, through the daemon at --addr, for the
fault rules it applies, and prints one row per rule: the NODE that applies
it, the fault ID (shared by the rules one command installed), what it does
to that node's traffic, when it started, when it ends ("healed" if only
` + "`peerctl heal`" + ` ends it) and the command that installed it. Rules act where a
node sends, so a partition shows up as a rule on each side.

A node that could not be asked is listed below the table; a node that is
down holds no faults, as rules live in the daemon's memory.`,
		Flags:  []cli.Flag{jsonFlag()},
		Action: runFaults,
	}
}

func runFaults(c *cli.Context) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	res, err := client(c).Faults(c.Context)
	if err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	nodes := toFaultNodes(res)
	w := c.App.Writer
	if c.Bool("json") {
		return printJSON(w, nodes)
	}
	now := time.Now()
	rows := 0
	tw := newTable(w)
	for _, n := range nodes {
		for _, r := range n.Rules {
			if rows == 0 {
				fmt.Fprintln(tw, "NODE\tID\tFAULT\tSINCE\tUNTIL\tREASON")
			}
			rows++
			until := "healed"
			if r.Until != nil {
				until = clock(*r.Until, now)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Node, r.ID, r.Effect, clock(r.Since, now), until, r.Reason)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rows == 0 {
		fmt.Fprintln(w, "no active faults")
	}
	for _, n := range nodes {
		if n.Error != "" {
			fmt.Fprintf(w, "%s: could not be asked: %s\n", n.Node, n.Error)
		}
	}
	return nil
}

// clock formats t as a local time of day, with the date if it is not
// today.
func clock(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format(time.TimeOnly)
	}
	return t.Format(time.DateTime)
}

// peerList reads --to.
func peerList(c *cli.Context) ([]string, error) {
	if !c.IsSet("to") {
		return nil, nil
	}
	peers, err := nodeList(c.StringSlice("to"))
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	return peers, nil
}
