package cli

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// memberStatuses are the statuses a member can have, in display order.
var memberStatuses = []string{"alive", "suspect", "leaving", "left", "failed"}

// member is one row of `peerctl members`. Tags leave out "api", which has
// its own field.
type member struct {
	Name   string            `json:"name"`
	Addr   string            `json:"addr"`
	API    string            `json:"api"`
	Status string            `json:"status"` // lower case, one of memberStatuses
	Tags   map[string]string `json:"tags"`
	Fault  string            `json:"fault,omitempty"` // injected faults on the node's traffic toward the member
	Role   string            `json:"role,omitempty"`  // raft role: leader, voter, nonvoter; "" outside the group
}

func membersCommand() *cli.Command {
	return &cli.Command{
		Name:     "members",
		Category: catCluster,
		Usage:    "list the cluster's members as a node sees them",
		UsageText: `peerctl members [--status STATUS] [--node NAME] [--json]

Examples:
  peerctl members
  peerctl members --status failed
  peerctl members --node n2 --json`,
		Description: `Prints one row per member the node knows: NAME, gossip ADDR, HTTP API
address, STATUS (alive, suspect, leaving, left or failed), ROLE in the
raft group (leader, voter, nonvoter, or - outside it: see peerctl leader;
shown once the group has formed) and other serf TAGS as k=v. By default the node is the daemon at --addr; with --node, the
list is the one that member sees, which differs during a partition.

While faults are injected (peerctl partition, pause, delay...), a FAULT
column says what the node does to its traffic toward each member: "cut",
"paused", "delay 100ms", "loss 20%"; --json has it as "fault".`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "status", Usage: "show only members with `STATUS`: " + strings.Join(memberStatuses, ", ")},
			nodeFlag("ask"),
			jsonFlag(),
		},
		Action: runMembers,
	}
}

func runMembers(c *cli.Context) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	status := strings.ToLower(c.String("status"))
	if status != "" && !slices.Contains(memberStatuses, status) {
		return fmt.Errorf("--status %q: want one of %s", c.String("status"), strings.Join(memberStatuses, ", "))
	}
	ms, err := client(c).Members(c.Context, c.String("node"))
	if err != nil {
		return err
	}
	out := []member{}
	for _, m := range ms {
		row := toMember(m)
		if status == "" || row.Status == status {
			out = append(out, row)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	addRoles(c, out)

	w := c.App.Writer
	if c.Bool("json") {
		return printJSON(w, out)
	}
	faulted := slices.ContainsFunc(out, func(m member) bool { return m.Fault != "" })
	roles := slices.ContainsFunc(out, func(m member) bool { return m.Role != "" })
	tw := newTable(w)
	head := []string{"NAME", "ADDR", "API", "STATUS"}
	if roles {
		head = append(head, "ROLE")
	}
	if faulted {
		head = append(head, "FAULT")
	}
	fmt.Fprintln(tw, strings.Join(append(head, "TAGS"), "\t"))
	for _, m := range out {
		row := []string{m.Name, m.Addr, m.API, m.Status}
		if roles {
			row = append(row, roleCell(m.Role))
		}
		if faulted {
			fault := m.Fault
			if fault == "" {
				fault = "-"
			}
			row = append(row, fault)
		}
		fmt.Fprintln(tw, strings.Join(append(row, tagList(m.Tags)), "\t"))
	}
	return tw.Flush()
}

func toMember(m api.Member) member {
	tags := map[string]string{}
	for k, v := range m.Tags {
		if k != "api" {
			tags[k] = v
		}
	}
	return member{Name: m.Name, Addr: m.Addr, API: m.API, Status: strings.ToLower(m.Status), Tags: tags, Fault: m.Fault}
}

// tagList formats tags as k=v,k=v sorted by key.
func tagList(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + tags[k]
	}
	return strings.Join(parts, ",")
}

// addRoles fills in each member's raft role from the same node's view of
// the group; a daemon that cannot say (no raft server, an older version)
// leaves them empty.
func addRoles(c *cli.Context, ms []member) {
	l, err := client(c).Leader(c.Context, c.String("node"))
	if err != nil {
		return
	}
	role := map[string]string{}
	for _, s := range l.Servers {
		role[s.Name] = s.Role
	}
	for i := range ms {
		ms[i].Role = role[ms[i].Name]
	}
}

func roleCell(r string) string {
	if r == "" {
		return "-"
	}
	return r
}
