package cli

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Category:  catData,
		Usage:     "print a key's value as a node holds it, or as every node does (--all)",
		ArgsUsage: "KEY",
		UsageText: `peerctl get [--node NAME] [--json] KEY
peerctl get --all [--json] KEY

Examples:
  peerctl get greeting
  peerctl get --node n3 greeting > value.bin
  peerctl get --all greeting`,
		Description: `Prints KEY's value as the daemon at --addr, or member --node, holds it:
the value's bytes exactly, then a newline unless the value already ends
with one (so "put k -" followed by "get k" round-trips text files). A
missing or deleted key is an error (exit status 1).

With --json, prints {key, value, version, ts, origin, time}; a value that
is not valid UTF-8 is given as value_base64 instead of value.

With --all, asks every alive member through the daemon at --addr and prints
NODE STATUS VALUE VERSION ORIGIN, then a line saying whether the members
have converged ("converged: all N alive nodes hold version V") or not
("diverged: ..."). A member that could not be asked shows the error.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "ask every alive member and report whether they agree"},
			nodeFlag("read from"),
			jsonFlag(),
			consistentFlag(),
		},
		Action: runGet,
	}
}

// keyNotFoundError reports a missing key; it wraps api.ErrKeyNotFound.
type keyNotFoundError struct{ key, node string }

func (e *keyNotFoundError) Error() string {
	if e.node != "" {
		return fmt.Sprintf("key %q not found at node %s", e.key, e.node)
	}
	return fmt.Sprintf("key %q not found", e.key)
}

func (e *keyNotFoundError) Unwrap() error { return api.ErrKeyNotFound }

func runGet(c *cli.Context) error {
	if err := wantArgs(c, 1, 1); err != nil {
		return err
	}
	key, node := c.Args().First(), c.String("node")
	if c.Bool("all") {
		if node != "" {
			return fmt.Errorf("--all asks every member; it cannot be combined with --node")
		}
		return getAll(c, key)
	}
	var e *api.KV
	var err error
	if c.Bool("consistent") {
		e, err = consistentGet(c, key) // consistent.go
	} else {
		e, err = client(c).Get(c.Context, node, key)
	}
	if errors.Is(err, api.ErrKeyNotFound) {
		return &keyNotFoundError{key: key, node: node}
	}
	if err != nil {
		return fmt.Errorf("get %q: %w", key, err)
	}
	w := c.App.Writer
	if c.Bool("json") {
		return printJSON(w, toKV(e))
	}
	if _, err := w.Write(e.Value); err != nil {
		return err
	}
	if len(e.Value) == 0 || e.Value[len(e.Value)-1] != '\n' {
		_, err = fmt.Fprintln(w)
	}
	return err
}

// nodeKV is one member's row of `get --all --json`: KV is null if the
// member lacks the key, Error is set if it could not be asked.
type nodeKV struct {
	Node   string `json:"node"`
	Status string `json:"status"`
	KV     *kv    `json:"kv"`
	Error  string `json:"error,omitempty"`
}

func getAll(c *cli.Context, key string) error {
	rows, err := client(c).GetAll(c.Context, key)
	if err != nil {
		return fmt.Errorf("get --all %q: %w", key, err)
	}
	out := make([]nodeKV, len(rows))
	for i, r := range rows {
		out[i] = nodeKV{Node: r.Node, Status: strings.ToLower(r.Status), KV: toKV(r.KV), Error: r.Error}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })

	w := c.App.Writer
	if c.Bool("json") {
		return printJSON(w, out)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "NODE\tSTATUS\tVALUE\tVERSION\tORIGIN")
	for _, r := range out {
		value, version, origin := "(missing)", "-", "-"
		switch {
		case r.Error != "":
			value = "error: " + r.Error
		case r.KV != nil && r.KV.Deleted:
			value, version, origin = "(deleted)", r.KV.Version, r.KV.Origin
		case r.KV != nil:
			value, version, origin = previewKV(r.KV), r.KV.Version, r.KV.Origin
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Node, r.Status, value, version, origin)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, convergence(out))
	return err
}

func previewKV(k *kv) string {
	if k.Value != nil {
		return preview([]byte(*k.Value))
	}
	return preview(k.ValueBase64)
}

// convergence is the last line of `get --all`. The alive members have
// converged when every one answered and all hold the same version (or all
// lack the key); members in other states are not counted.
func convergence(rows []nodeKV) string {
	type group struct {
		state string // "version V", "version V (deleted)", "missing", "error"
		nodes []string
	}
	var groups []*group
	byState := map[string]*group{}
	alive := 0
	for _, r := range rows {
		if r.Status != "alive" {
			continue
		}
		alive++
		var state string
		switch {
		case r.Error != "":
			state = "error"
		case r.KV == nil:
			state = "missing"
		case r.KV.Deleted:
			state = "version " + r.KV.Version + " (deleted)"
		default:
			state = "version " + r.KV.Version
		}
		g := byState[state]
		if g == nil {
			g = &group{state: state}
			byState[state] = g
			groups = append(groups, g)
		}
		g.nodes = append(g.nodes, r.Node)
	}
	if alive == 0 {
		return "diverged: no alive member answered"
	}
	if len(groups) == 1 && groups[0].state != "error" {
		holds := "hold " + groups[0].state
		if groups[0].state == "missing" {
			holds = "lack the key"
		}
		if alive == 1 {
			holds = strings.Replace(holds, " ", "s ", 1) // hold -> holds, lack -> lacks
		}
		return fmt.Sprintf("converged: all %d alive %s %s", alive, plural(alive, "node"), holds)
	}
	parts := make([]string, len(groups))
	for i, g := range groups {
		nodes := strings.Join(g.nodes, ", ")
		switch g.state {
		case "error":
			parts[i] = "no answer from " + nodes
		case "missing":
			parts[i] = "missing on " + nodes
		default:
			parts[i] = g.state + " on " + nodes
		}
	}
	return fmt.Sprintf("diverged: %s", strings.Join(parts, "; "))
}

// plural returns word, with an "s" unless n is 1.
func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
