package cli

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

func partitionCommand() *cli.Command {
	return &cli.Command{
		Name:      "partition",
		Category:  catFaults,
		Usage:     "split the cluster into sides that cannot reach each other",
		ArgsUsage: "A,B / C,D,E",
		UsageText: `peerctl partition NODE,... / NODE,... [/ NODE,...] [--for DURATION] [--seed N] [--json]

Examples:
  peerctl partition n1,n2 / n3,n4,n5
  peerctl partition n1,n2/n3,n4,n5 --for 30s
  peerctl partition n1,n2 n3,n4,n5
  peerctl partition n1 / n2 / n3`,
		Description: `Splits the named nodes into sides, as a failed switch, a firewall rule or a
cut link between two data centres would: every node drops everything it
would send to a node on another side, and keeps talking to its own side.
Sides are separated by "/" (with or without spaces) or given as separate
arguments; nodes within a side by commas. There may be more than two sides.
A node not named keeps talking to every side, like a node that can still
reach both halves of a network: a partial partition.

What to watch: each side soon suspects and then declares the other failed
(peerctl members --node NAME shows each side's view), and both sides keep
accepting writes, so their data diverges (peerctl check). After
` + "`peerctl heal`" + ` the nodes rejoin at once (when --for runs out, at serf's
next reconnect attempt, within seconds), anti-entropy exchanges what each
side missed, and where both sides wrote a key the later write wins.

Prints one line per node involved: what it now does and the fault ID. The
fault is cluster state: a node that is down applies it when it returns
(the output says so), and a node restarted later comes back under it.`,
		Flags:        faultFlags(),
		Action:       faultAction(runPartition),
		BashComplete: completeMembers,
	}
}

func runPartition(c *cli.Context, args []string) error {
	req, err := faultRequest(c, api.ReqPartition)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return missingNodes(c)
	}
	if req.Groups, err = partitionSides(args); err != nil {
		return err
	}
	return injectFault(c, req)
}

// partitionSides parses the sides of a partition from its arguments, in
// any of three forms: "a,b / c,d,e" (three arguments), "a,b/c,d,e" (one),
// or "a,b c,d,e" (one argument per side). With a "/" anywhere, the sides
// are what lies between slashes, and commas or spaces separate nodes;
// without one, each argument is a side with nodes separated by commas.
func partitionSides(args []string) ([][]string, error) {
	typed := strings.Join(args, " ")
	var sides [][]string
	if strings.Contains(typed, "/") {
		for _, part := range strings.Split(typed, "/") {
			sides = append(sides, strings.FieldsFunc(part, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }))
		}
	} else {
		for _, a := range args {
			side, err := nodeList([]string{a})
			if err != nil {
				return nil, fmt.Errorf("partition %q: %w", typed, err)
			}
			sides = append(sides, side)
		}
	}
	if len(sides) < 2 {
		return nil, fmt.Errorf("partition %q has one side: give at least two, e.g. n1,n2 / n3,n4,n5", typed)
	}
	side := map[string]int{}
	for i, s := range sides {
		if len(s) == 0 {
			return nil, fmt.Errorf("partition %q: side %d is empty", typed, i+1)
		}
		for _, n := range s {
			if j, ok := side[n]; ok && j != i {
				return nil, fmt.Errorf("partition %q: node %q is on two sides", typed, n)
			} else if ok {
				return nil, fmt.Errorf("partition %q: node %q is named twice", typed, n)
			}
			side[n] = i
		}
	}
	return sides, nil
}
