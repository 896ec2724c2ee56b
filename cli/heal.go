package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// healNode is one node's row of `heal --json`.
type healNode struct {
	Node   string `json:"node"`
	Healed int    `json:"healed"` // rules removed
	Error  string `json:"error,omitempty"`
}

func healCommand() *cli.Command {
	return &cli.Command{
		Name:      "heal",
		Category:  catFaults,
		Usage:     "remove injected faults: those that named a node, or all of them",
		ArgsUsage: "[NODE]",
		UsageText: `peerctl heal [NODE] [--json]
peerctl heal --all [--json]

Examples:
  peerctl heal n2
  peerctl heal --all`,
		Description: `With NODE, removes on every node the rules of the fault commands that named
NODE (a partition names every node on each side, so heal n1 ends a
partition that n1 is part of; a fault given --all names every node); other
faults stay. With --all, or no
argument, removes every fault on every node. Faults given --for also end
by themselves.

Prints how many rules each node dropped. A node that dropped any contacts
at once the members it had declared failed, so nodes that lost each other
during the fault rejoin within moments rather than at serf's next
reconnect attempt; anti-entropy then exchanges what they missed (watch it
with ` + "`peerctl check --wait 10s`" + `). A node that could not be reached is
listed; a node that is down holds no faults, as rules live in the daemon's
memory.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "remove every fault on every node (the default without NODE)"},
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
		return fmt.Errorf("too many arguments %q: usage: %s [NODE] (see `%s --help`)", args[1:], c.Command.HelpName, c.Command.HelpName)
	case len(args) == 1 && c.Bool("all"):
		return fmt.Errorf("heal NODE removes the faults that named NODE, --all removes every fault: give one, not both")
	case len(args) == 1:
		target = args[0]
	}
	res, err := client(c).Heal(c.Context, target)
	if err != nil {
		return fmt.Errorf("heal: %w", err)
	}
	out := make([]healNode, len(res))
	total, nodes := 0, 0
	for i, nf := range res {
		out[i] = healNode{Node: nf.Node, Healed: nf.Healed, Error: nf.Error}
		total += nf.Healed
		if nf.Healed > 0 {
			nodes++
		}
	}
	w := c.App.Writer
	if c.Bool("json") {
		return printJSON(w, out)
	}
	tw := newTable(w)
	for _, n := range out {
		if n.Error != "" {
			fmt.Fprintf(tw, "%s\tnot reached: %s\n", n.Node, n.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\tremoved %d %s\n", n.Node, n.Healed, plural(n.Healed, "rule"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	named := ""
	if target != "" {
		named = " that named " + target
	}
	if total == 0 {
		_, err = fmt.Fprintf(w, "no active faults%s\n", named)
		return err
	}
	_, err = fmt.Fprintf(w, "healed: removed %d %s%s on %d %s; nodes that declared each other failed rejoin now\n",
		total, plural(total, "rule"), named, nodes, plural(nodes, "node"))
	return err
}
