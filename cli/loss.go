package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

func lossCommand() *cli.Command {
	return &cli.Command{
		Name:      "loss",
		Category:  catFaults,
		Usage:     "drop a share of the traffic of nodes at random, in both directions",
		ArgsUsage: "NODE [NODE...]|--all",
		UsageText: `peerctl loss NODE [NODE...]|--all --rate RATE [--to PEER,...] [--for DURATION] [--seed N] [--json]

Examples:
  peerctl loss n2 --rate 0.2
  peerctl loss n2 --rate 0.5 --to n1 --for 30s --seed 42
  peerctl loss --all --rate 0.05`,
		Description: `Drops each message between each NODE and its peers with probability
--rate (0.2 = 20%), as a flaky NIC, a bad cable, a congested link or a
lossy wireless hop would. It acts in both directions: NODE loses what it
sends to its peers and they lose what they send to NODE. With --to, only
traffic between NODE and those peers is affected; with --all, every node
loses that share of all it sends. A rate of 1 drops everything, like a
one-node partition. The membership and replication channels lose alike.

What to watch: gossip tolerates a lot. Before suspecting a node, memberlist
probes it indirectly through other nodes, so moderate loss rarely causes a
false failure; replication pushes that are lost are repaired by the next
anti-entropy round (peerctl info counts them), so the data still converges
(peerctl check --wait). With --seed, the nodes draw the same sequence of
choices each run, so a scenario can be replayed.

Prints one line per node involved: what it now does and the fault ID. The
fault is cluster state: a node that is down applies it when it returns
(the output says so), and a node restarted later comes back under it.`,
		Flags: faultFlags(
			&cli.Float64Flag{Name: "rate", Usage: "drop each message with probability `RATE`, above 0 and at most 1, e.g. 0.2 (required)"},
			toFlag(),
			allNodesFlag(),
		),
		Action:       faultAction(runLoss),
		BashComplete: completeMembers,
	}
}

func runLoss(c *cli.Context, args []string) error {
	req, err := faultRequest(c, api.ReqLoss)
	if err != nil {
		return err
	}
	req.Rate = c.Float64("rate")
	switch {
	case !c.IsSet("rate"):
		return fmt.Errorf("loss needs --rate RATE, e.g. --rate 0.2 (see `%s --help`)", c.Command.HelpName)
	case !(req.Rate > 0 && req.Rate <= 1): // also rejects NaN
		return fmt.Errorf("--rate %v: want a probability above 0 and at most 1, e.g. 0.2 for 20%%", req.Rate)
	}
	if req.Nodes, err = faultTargets(c, args); err != nil {
		return err
	}
	if req.Peers, err = peerList(c); err != nil {
		return err
	}
	return injectFault(c, req)
}
