package cli

// Fault injection: pause, partition, isolate, delay and loss order a
// fault, heal removes faults, faults lists them. Each is one call to the
// daemon at --addr (daemon/faultsapi.go), which records the fault in the
// cluster's fault table, applies its part, and pushes the table to every
// member it can find; each node derives and applies its own rules, and a
// node that is down applies them when it returns. This file holds what the
// commands share, and the faults command.

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// faultRule is one rule installed on one node, as fault commands print it
// with --json.
type faultRule struct {
	ID     string     `json:"id"`
	Kind   string     `json:"kind"`   // drop, delay, loss or pause
	Effect string     `json:"effect"` // api.Rule.Describe
	Peers  []string   `json:"peers"`  // empty: all peers
	Delay  string     `json:"delay,omitempty"`
	Jitter string     `json:"jitter,omitempty"`
	Rate   float64    `json:"rate,omitempty"`
	Since  time.Time  `json:"since"`
	Until  *time.Time `json:"until,omitempty"` // absent: until healed
	Reason string     `json:"reason"`
	Nodes  []string   `json:"nodes"` // the nodes the command named
}

func toFaultRule(r api.Rule) faultRule {
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
// rules it applies (or will apply), and, if it could not be reached, why:
// it applies the fault when it returns.
type faultNode struct {
	Node  string      `json:"node"`
	Rules []faultRule `json:"rules"`
	Error string      `json:"error,omitempty"`
}

func toFaultNodes(in []api.NodeFaults) []faultNode {
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
	Until  *time.Time  `json:"until,omitempty"` // absent: until healed
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

// maxFaultFor is the longest --for the daemon accepts.
const maxFaultFor = 7 * 24 * time.Hour

// faultRequest returns the request with the flags every fault command
// shares: --for, --seed, and the command line as Reason.
func faultRequest(c *cli.Context, kind string) (api.FaultRequest, error) {
	d := c.Duration("for")
	if d < 0 || d > maxFaultFor || (d == 0 && c.IsSet("for")) {
		return api.FaultRequest{}, fmt.Errorf("--for %v: want a duration above 0 and at most %v, or none to last until healed", d, maxFaultFor)
	}
	return api.FaultRequest{Kind: kind, For: d, Seed: c.Uint64("seed"), Reason: commandLine(c)}, nil
}

// injectFault sends req and prints, one line per node involved, what it
// now does, or that it is down and will apply the fault when it returns.
// The fault is cluster state once the daemon has recorded it, so a node
// that could not be reached is not an error.
func injectFault(c *cli.Context, req api.FaultRequest) error {
	res, err := client(c).InjectFault(c.Context, req)
	if err != nil {
		return fmt.Errorf("%s: %w", req.Kind, err)
	}
	nodes := toFaultNodes(res.Nodes)
	w := c.App.Writer
	if c.Bool("json") {
		out := faultResult{ID: res.ID, Reason: req.Reason, Nodes: nodes}
		if !res.Until.IsZero() {
			out.Until = &res.Until
		}
		return printJSON(w, out)
	}
	var down []string
	tw := newTable(w)
	for _, n := range nodes {
		effects := make([]string, len(n.Rules))
		for i, r := range n.Rules {
			effects[i] = r.Effect
		}
		what := strings.Join(effects, "; ")
		if n.Error != "" {
			down = append(down, n.Node)
			what = "when back: " + what
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Node, res.ID, what)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range down {
		fmt.Fprintf(w, "%s is down: it will apply this when it returns\n", n)
	}
	lasts := "until healed"
	if req.For > 0 {
		lasts = "for " + req.For.String()
	}
	_, err = fmt.Fprintf(w, "fault %s on %d %s %s; undo with `peerctl heal %s`\n", res.ID, len(nodes), plural(len(nodes), "node"), lasts, res.ID)
	return err
}

func faultsCommand() *cli.Command {
	return &cli.Command{
		Name:     "faults",
		Category: catFaults,
		Usage:    "list the faults in force on the cluster and where each is applied",
		UsageText: `peerctl faults [--json]

Examples:
  peerctl faults
  peerctl faults --json | jq '.faults[].id'`,
		Description: `Prints the cluster's fault table as the daemon at --addr holds it: one row
per fault in force, with its ID, what it does, when it started and ends
("until healed" if only ` + "`peerctl heal`" + ` ends it), the nodes that apply it now and
those that do not yet (a node that is down applies it when it returns; a
node just told applies it within a second or two), and the command that
ordered it. A node that could not be asked is listed below the table.

Faults are cluster state: every node keeps the table in its data dir, so
a restarted node comes back under the faults in force, and ` + "`peerctl heal`" + `
through any node removes them everywhere.`,
		Flags:  []cli.Flag{jsonFlag()},
		Action: runFaults,
	}
}

// faultEntry is a fault in force, as `faults --json` prints it.
type faultEntry struct {
	ID      string     `json:"id"`
	Kind    string     `json:"kind"`  // partition, isolate, pause, delay or loss
	Fault   string     `json:"fault"` // api.FaultRequest.Describe
	Named   []string   `json:"named"` // nodes the command named: heal NODE heals it
	Since   time.Time  `json:"since"`
	Until   *time.Time `json:"until,omitempty"` // absent: until healed
	Applied []string   `json:"applied"`         // nodes that apply it now
	Pending []string   `json:"pending"`         // nodes involved that do not yet
	Reason  string     `json:"reason"`
}

// faultsList is what `faults --json` prints.
type faultsList struct {
	Faults []faultEntry `json:"faults"`
	Nodes  []faultNode  `json:"nodes"` // every member's rules, or why it could not be asked
}

func runFaults(c *cli.Context) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	res, err := client(c).Faults(c.Context)
	if err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	out := faultsList{Faults: []faultEntry{}, Nodes: toFaultNodes(res.Nodes)}
	for _, f := range res.Faults {
		e := faultEntry{ID: f.ID, Kind: f.Request.Kind, Fault: f.Request.Describe(), Named: nonNil(f.Named), Since: f.Created,
			Applied: nonNil(f.Applied), Pending: nonNil(f.Pending), Reason: f.Request.Reason}
		if !f.Until.IsZero() {
			u := f.Until
			e.Until = &u
		}
		out.Faults = append(out.Faults, e)
	}
	w := c.App.Writer
	if c.Bool("json") {
		return printJSON(w, out)
	}
	now := time.Now()
	if len(out.Faults) == 0 {
		fmt.Fprintln(w, "no faults in force")
	} else {
		tw := newTable(w)
		fmt.Fprintln(tw, "ID\tFAULT\tSINCE\tUNTIL\tAPPLIED\tPENDING\tREASON")
		for _, f := range out.Faults {
			until := "until healed"
			if f.Until != nil {
				until = clock(*f.Until, now)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Fault, clock(f.Since, now), until,
				orDash(strings.Join(f.Applied, ",")), orDash(strings.Join(f.Pending, ",")), f.Reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, n := range out.Nodes {
		if n.Error != "" {
			fmt.Fprintf(w, "%s: could not be asked (down?): %s\n", n.Node, n.Error)
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
