package cli

import (
	"errors"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// keyringView is what `keyring --json` prints.
type keyringView struct {
	Op        string        `json:"op"`
	Keys      []keyringKey  `json:"keys"`
	Nodes     int           `json:"nodes"`
	Responses int           `json:"responses"`
	Errors    int           `json:"errors"`
	Messages  []nodeMessage `json:"messages,omitempty"`
}

type keyringKey struct {
	Key     string `json:"key"`
	Nodes   int    `json:"nodes"`   // members holding it
	Primary int    `json:"primary"` // members sealing with it
}

type nodeMessage struct {
	Node    string `json:"node"`
	Message string `json:"message"`
}

func keyringCommand() *cli.Command {
	sub := func(op, usage string) *cli.Command {
		return &cli.Command{
			Name: op, Usage: usage, ArgsUsage: "KEY",
			Flags:  []cli.Flag{jsonFlag()},
			Action: func(c *cli.Context) error { return runKeyring(c, op) },
		}
	}
	return &cli.Command{
		Name:     "keyring",
		Category: catCluster,
		Usage:    "list, install, use or remove gossip encryption keys on every member",
		UsageText: `peerctl keyring list
peerctl keyring install KEY   every member accepts KEY
peerctl keyring use KEY       every member seals with KEY (it must be installed)
peerctl keyring remove KEY    every member drops KEY (not the one in use)

Rotate with no downtime:
  NEW=$(peerctl keygen)
  peerctl keyring install "$NEW" && peerctl keyring use "$NEW" && peerctl keyring remove "$OLD"`,
		Description: `The keyring encrypts gossip and seals replication between members (agent
--encrypt). Changes go to every member through serf's key manager and are
saved in each member's DATA_DIR/keyring.json, which a restarted agent
uses instead of --encrypt. A member that is down during a change misses
it: it rejoins only if it still holds a key the others accept.`,
		Subcommands: []*cli.Command{
			{Name: "list", Usage: "list the keys and how many members hold each", Flags: []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error { return runKeyring(c, "list") }},
			sub("install", "add KEY to every member's keyring"),
			sub("use", "make KEY the key every member seals with"),
			sub("remove", "remove KEY from every member's keyring"),
		},
	}
}

func runKeyring(c *cli.Context, op string) error {
	var (
		res *api.KeyringResult
		err error
	)
	if op == "list" {
		if err := wantArgs(c, 0, 0); err != nil {
			return err
		}
		res, err = client(c).Keyring(c.Context)
	} else {
		if err := wantArgs(c, 1, 1); err != nil {
			return err
		}
		res, err = client(c).KeyringOp(c.Context, op, c.Args().First())
	}
	var se *api.StatusError
	if err != nil && (!errors.As(err, &se) || res == nil || res.Op == "") {
		return err
	}
	v := keyringView{Op: res.Op, Nodes: res.Nodes, Responses: res.Responses, Errors: res.Errors}
	for k, n := range res.Keys {
		v.Keys = append(v.Keys, keyringKey{Key: k, Nodes: n, Primary: res.PrimaryKeys[k]})
	}
	sort.Slice(v.Keys, func(i, j int) bool { return v.Keys[i].Key < v.Keys[j].Key })
	for _, m := range res.Messages {
		v.Messages = append(v.Messages, nodeMessage{m.Node, m.Message})
	}
	if c.Bool("json") {
		if perr := printJSON(c.App.Writer, v); perr != nil {
			return perr
		}
		return err
	}
	w := c.App.Writer
	if op == "list" {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tMEMBERS\tPRIMARY ON")
		for _, k := range v.Keys {
			fmt.Fprintf(tw, "%s\t%d/%d\t%d\n", k.Key, k.Nodes, v.Nodes, k.Primary)
		}
		tw.Flush()
	} else if err == nil {
		fmt.Fprintf(w, "%s: done on %d of %d members\n", op, v.Responses, v.Nodes)
	}
	for _, m := range v.Messages {
		fmt.Fprintf(w, "  %s: %s\n", m.Node, m.Message)
	}
	if err != nil {
		return fmt.Errorf("keyring %s: %w (%d of %d members answered, %d failed)", op, err, v.Responses, v.Nodes, v.Errors)
	}
	return nil
}
