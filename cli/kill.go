package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
)

func killCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Category:  catCluster,
		Usage:     "make a member's daemon exit at once, as with kill -9 (to test failure detection)",
		ArgsUsage: "NODE",
		UsageText: `peerctl kill [--json] NODE

Examples:
  peerctl kill n2
  peerctl --addr 127.0.0.1:7957 kill n1`,
		Description: `Asks member NODE, through the daemon at --addr, to end its own process at
once without leaving the cluster or flushing anything, as a crash or
kill -9 would. The other members then detect the failure and mark it
failed; restart it with the same --data-dir to bring it back.`,
		Flags:        []cli.Flag{jsonFlag()},
		Action:       runKill,
		BashComplete: completeMembers,
	}
}

func runKill(c *cli.Context) error {
	if err := wantArgs(c, 1, 1); err != nil {
		return err
	}
	node := c.Args().First()
	if err := client(c).Kill(c.Context, node); err != nil {
		return fmt.Errorf("kill %s: %w", node, err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, nodeAction{Node: node, Action: "killed"})
	}
	_, err := fmt.Fprintf(c.App.Writer, "killed %s (it exits at once, without leaving; the others will mark it failed)\n", node)
	return err
}

// nodeAction is what kill and leave print with --json.
type nodeAction struct {
	Node   string `json:"node"`
	Action string `json:"action"` // "killed" or "leaving"
}

// completeMembers prints member names for shell completion of a NODE
// argument. It is best effort: if the daemon is not there it prints
// nothing.
func completeMembers(c *cli.Context) {
	if c.NArg() > 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.Context, 2*time.Second)
	defer cancel()
	ms, err := client(c).Members(ctx, "")
	if err != nil {
		return
	}
	for _, m := range ms {
		fmt.Fprintln(c.App.Writer, m.Name)
	}
}
