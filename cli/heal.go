package cli

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// healedFault is a fault `heal --json` removed.
type healedFault struct {
	ID     string `json:"id"`
	Fault  string `json:"fault"` // api.FaultRequest.Describe
	Reason string `json:"reason"`
}

// healOutput is what `heal --json` prints.
type healOutput struct {
	Healed []healedFault `json:"healed"`
	Down   []string      `json:"down"` // members not reached: they lift the faults when they return
}

func healCommand() *cli.Command {
	return &cli.Command{
		Name:      "heal",
		Category:  catFaults,
		Usage:     "remove faults from the cluster: one by ID, those that named a node, or all",
		ArgsUsage: "[NODE|ID]",
		UsageText: `peerctl heal [NODE|ID] [--json]
peerctl heal --all [--json]

Examples:
  peerctl heal f-1a2b3c4d
  peerctl heal n2
  peerctl heal --all`,
		Description: `Removes faults from the cluster's fault table, through any node: with ID,
that fault; with NODE, the faults whose command named NODE (a partition
names every node on each side, so heal n1 ends a partition that n1 is part
of; a fault given --all names every node); with --all, or no argument,
every fault. Faults given --for also end by themselves, on every node, at
the time set when they were ordered.

Every node lifts its rules for the faults removed: the daemon at --addr
tells every member it can find at once, over the HTTP API, which faults
never block; a node that is down lifts them when it returns (it learns the
heal from the first member it reaches). A node that lifted a rule contacts
at once the members it had declared failed, so nodes that lost each other
rejoin within moments; anti-entropy then exchanges what they missed (watch
it with ` + "`peerctl check --wait 30s`" + `).

A NODE or ID that no node knows is an error (exit 1), so a typo does not
look like a heal.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "remove every fault (the default without NODE or ID)"},
			jsonFlag(),
		},
		Action:       faultAction(runHeal),
		BashComplete: completeMembers,
	}
}

func runHeal(c *cli.Context, args []string) error {
	var target string
	switch {
	case len(args) > 1:
		return fmt.Errorf("too many arguments %q: usage: %s [NODE|ID] (see `%s --help`)", args[1:], c.Command.HelpName, c.Command.HelpName)
	case len(args) == 1 && c.Bool("all"):
		return fmt.Errorf("heal NODE|ID removes some faults, --all removes every fault: give one, not both")
	case len(args) == 1:
		target = args[0]
	}
	res, err := client(c).Heal(c.Context, target)
	if err != nil {
		return fmt.Errorf("heal: %w", err)
	}
	out := healOutput{Healed: []healedFault{}, Down: []string{}}
	for _, r := range res.Healed {
		out.Healed = append(out.Healed, healedFault{ID: r.ID, Fault: r.Request.Describe(), Reason: r.Request.Reason})
	}
	for _, n := range res.Nodes {
		if n.Error != "" {
			out.Down = append(out.Down, n.Node)
		}
	}
	w := c.App.Writer
	if c.Bool("json") {
		return printJSON(w, out)
	}
	named := ""
	if target != "" {
		named = " that named " + target
	}
	if len(out.Healed) == 0 {
		_, err = fmt.Fprintf(w, "no faults in force%s\n", named)
		return err
	}
	tw := newTable(w)
	for _, h := range out.Healed {
		fmt.Fprintf(tw, "healed\t%s\t%s\n", h.ID, h.Fault)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch len(out.Down) {
	case 0:
	case 1:
		fmt.Fprintf(w, "%s is down: it will lift this when it returns\n", out.Down[0])
	default:
		fmt.Fprintf(w, "%s are down: they will lift this when they return\n", strings.Join(out.Down, ", "))
	}
	what := fmt.Sprintf("%d %s%s", len(out.Healed), plural(len(out.Healed), "fault"), named)
	if len(out.Healed) == 1 && out.Healed[0].ID == target { // heal ID
		what = "fault " + target
	}
	_, err = fmt.Fprintf(w, "removed %s from the cluster; nodes that declared each other failed rejoin now\n", what)
	return err
}
