package cli

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// maxDelay is the longest delay the daemon accepts (api.Rule).
const maxDelay = time.Minute

func delayCommand() *cli.Command {
	return &cli.Command{
		Name:      "delay",
		Category:  catFaults,
		Usage:     "add latency to the traffic of nodes, in both directions",
		ArgsUsage: "NODE [NODE...]|--all",
		UsageText: `peerctl delay NODE [NODE...]|--all --by DURATION [--jitter DURATION] [--to PEER,...] [--for DURATION] [--seed N] [--json]

Examples:
  peerctl delay n3 --by 100ms
  peerctl delay n3 --by 100ms --jitter 20ms --to n1,n2 --for 1m
  peerctl delay --all --by 30ms --jitter 10ms --seed 7`,
		Description: `Delays every message between each NODE and its peers by --by, as a
congested link, a peer in another region or an overloaded host would. It
acts in both directions: NODE delays what it sends to its peers and they
delay what they send to NODE, so a round trip between them grows by twice
--by. --jitter varies each message's delay uniformly within ±JITTER, which
also reorders messages. With --to, only traffic between NODE and those
peers is delayed; with --all, every node delays all it sends.

What to watch: small delays only slow replication (peerctl info shows the
lag). A delay near the probe timeout (250ms with the agent's local profile,
500ms with lan) makes probes time out, so a node that is up gets suspected:
the false positive that memberlist's Lifeguard extensions (local health
awareness, more suspicion confirmations) are there to damp.

Prints one line per node involved: what it now does and the fault ID. The
fault is cluster state: a node that is down applies it when it returns
(the output says so), and a node restarted later comes back under it.`,
		Flags: faultFlags(
			&cli.DurationFlag{Name: "by", Usage: "delay each message by `DURATION`, e.g. 100ms (required; at most 1m)"},
			&cli.DurationFlag{Name: "jitter", Usage: "vary each delay by up to ± `DURATION`, at most --by"},
			toFlag(),
			allNodesFlag(),
		),
		Action:       faultAction(runDelay),
		BashComplete: completeMembers,
	}
}

func runDelay(c *cli.Context, args []string) error {
	req, err := faultRequest(c, api.ReqDelay)
	if err != nil {
		return err
	}
	req.Delay, req.Jitter = c.Duration("by"), c.Duration("jitter")
	switch {
	case !c.IsSet("by"):
		return fmt.Errorf("delay needs --by DURATION, e.g. --by 100ms (see `%s --help`)", c.Command.HelpName)
	case req.Delay <= 0 || req.Delay > maxDelay:
		return fmt.Errorf("--by %v: want a delay above 0 and at most %v", req.Delay, maxDelay)
	case req.Jitter < 0 || req.Jitter > req.Delay:
		return fmt.Errorf("--jitter %v: want 0 to --by (%v), so no message is sent before its time", req.Jitter, req.Delay)
	}
	if req.Nodes, err = faultTargets(c, args); err != nil {
		return err
	}
	if req.Peers, err = peerList(c); err != nil {
		return err
	}
	return injectFault(c, req)
}
