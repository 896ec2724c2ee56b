package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func leaveCommand() *cli.Command {
	return &cli.Command{
		Name:      "leave",
		Category:  catCluster,
		Usage:     "make a member leave the cluster gracefully and exit",
		ArgsUsage: "NODE",
		UsageText: `peerctl leave [--json] NODE

Examples:
  peerctl leave n3`,
		Description: `Asks member NODE, through the daemon at --addr, to leave the cluster
gracefully: it tells the others, which mark it "left" rather than
"failed", flushes its store and its agent process exits with status 0.
The command returns once the request is accepted, not when NODE is gone;
watch with "peerctl members".`,
		Flags:        []cli.Flag{jsonFlag()},
		Action:       runLeave,
		BashComplete: completeMembers,
	}
}

func runLeave(c *cli.Context) error {
	if err := wantArgs(c, 1, 1); err != nil {
		return err
	}
	node := c.Args().First()
	if err := client(c).Leave(c.Context, node); err != nil {
		return fmt.Errorf("leave %s: %w", node, err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, nodeAction{Node: node, Action: "leaving"})
	}
	_, err := fmt.Fprintf(c.App.Writer, "%s is leaving (it tells the others, then its agent exits)\n", node)
	return err
}
