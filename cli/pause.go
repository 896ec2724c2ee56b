package cli

import (
	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

func pauseCommand() *cli.Command {
	return &cli.Command{
		Name:      "pause",
		Category:  catFaults,
		Usage:     "freeze nodes as a long GC pause or SIGSTOP would: they send and answer nothing",
		ArgsUsage: "NODE [NODE...]",
		UsageText: `peerctl pause NODE [NODE...] [--for DURATION] [--seed N] [--json]

Examples:
  peerctl pause n2
  peerctl pause n2 --for 10s
  peerctl pause n2,n3 --for 1m`,
		Description: `Freezes each NODE as a stop-the-world garbage collection, a VM being
migrated or a SIGSTOP would: its process keeps its memory and its data, but
it sends nothing and drops everything it receives, so to the others it is
silent. Without --for it stays paused until ` + "`peerctl heal NODE`" + `.

What to watch (peerctl members, from another node): after a few missed
probes the others suspect the node, and if it stays silent past the
suspicion timeout they declare it failed; writes go on without it. When it
resumes, it hears that it was suspected or declared dead and refutes it
(memberlist's Lifeguard: it raises its incarnation number and announces
itself alive), so it comes back without a restart, and anti-entropy brings
it the writes it missed. A pause shorter than the suspicion timeout ends
in a refuted suspicion, not a failure.

Prints one line per node involved: what it now does and the fault ID. The
fault is cluster state: a node that is down applies it when it returns
(the output says so), and a node restarted later comes back under it.`,
		Flags:        faultFlags(),
		Action:       faultAction(nodesFault(api.ReqPause)),
		BashComplete: completeMembers,
	}
}
