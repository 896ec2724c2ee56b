package cli

import (
	"fmt"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

func leaderCommand() *cli.Command {
	return &cli.Command{
		Name:     "leader",
		Category: catCluster,
		Usage:    "show the raft group: its leader, term, commit index and each server's role",
		UsageText: `peerctl leader [--node NAME] [--json]

Examples:
  peerctl leader
  peerctl leader --node n3 --json`,
		Description: `Prints the raft group (the consistent namespace and locks) as the daemon
at --addr, or member --node, sees it: the leader's name (or "none"), the
term and commit index, then one row per server: NAME, ROLE (leader, voter,
nonvoter), ALIVE (serf's view) and LAST CONTACT, how long ago the server
last heard from its leader as the server itself reports it ("?" when this
node cannot reach it: down, or across a partition).

--json prints {leader, leader_api, term, commit_index, last_index,
servers: [{name, id, role, last_contact_ms, alive}], node, state}, with
leader "" when there is none.`,
		Flags:  []cli.Flag{nodeFlag("ask"), jsonFlag()},
		Action: runLeader,
	}
}

func runLeader(c *cli.Context) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	l, err := client(c).Leader(c.Context, c.String("node"))
	if err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	w := c.App.Writer
	if c.Bool("json") {
		return printJSON(w, l)
	}
	name := l.Leader
	if name == "" {
		name = "none"
	}
	if len(l.Servers) == 0 {
		fmt.Fprintf(w, "leader: none (the raft group has not formed as %s sees it; state %s)\n", l.Node, l.State)
		return nil
	}
	fmt.Fprintf(w, "leader: %s  term: %d  commit index: %d  (as %s sees it)\n", name, l.Term, l.CommitIndex, l.Node)
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tROLE\tALIVE\tLAST CONTACT")
	for _, s := range l.Servers {
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\n", s.Name, s.Role, s.Alive, contact(s))
	}
	return tw.Flush()
}

func contact(s api.RaftServer) string {
	switch {
	case s.Role == api.RoleLeader:
		return "-"
	case s.LastContactMs < 0:
		return "?"
	}
	return strconv.FormatInt(s.LastContactMs, 10) + "ms"
}
