package cli

import (
	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

func isolateCommand() *cli.Command {
	return &cli.Command{
		Name:      "isolate",
		Category:  catFaults,
		Usage:     "cut nodes off from every other node, as pulling their network cable would",
		ArgsUsage: "NODE [NODE...]",
		UsageText: `peerctl isolate NODE [NODE...] [--for DURATION] [--seed N] [--json]

Examples:
  peerctl isolate n3
  peerctl isolate n3 --for 20s`,
		Description: `Cuts each NODE off from the network, as an unplugged cable, a dead NIC or
a host firewall gone wrong would: NODE drops everything it would send to
any other node, and every other node drops what it would send to NODE.
Several NODEs are each cut off alone, from each other too; to cut a group
off together, use ` + "`peerctl partition`" + `.

Unlike pause, an isolated node keeps running: it declares all the others
failed while they declare it failed (a partition of one against the rest),
and it still serves its API, so writes made at it (peerctl put --node NODE)
stay there until the heal. After ` + "`peerctl heal NODE`" + ` they rejoin at once and
anti-entropy exchanges what each side missed.

Prints one line per node involved: what it now does and the fault ID. The
fault is cluster state: a node that is down applies it when it returns
(the output says so), and a node restarted later comes back under it.`,
		Flags:        faultFlags(),
		Action:       faultAction(nodesFault(api.ReqIsolate)),
		BashComplete: completeMembers,
	}
}
