package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

func delCommand() *cli.Command {
	return &cli.Command{
		Name:      "del",
		Aliases:   []string{"delete", "rm"},
		Category:  catData,
		Usage:     "delete a key at a node; the deletion spreads to every member",
		ArgsUsage: "KEY",
		UsageText: `peerctl del [--node NAME] [--json] KEY

Examples:
  peerctl del greeting
  peerctl rm --node n3 config/mode`,
		Description: `Deletes KEY at the daemon at --addr, or at member --node. The deletion is
a versioned tombstone that replicates like a write, so a delete newer than
a write wins on every member; tombstones are purged after the agents'
--tombstone-ttl. Deleting a missing key is not an error: it still writes a
tombstone, and the output says no value was there.`,
		Flags:  []cli.Flag{nodeFlag("delete at"), jsonFlag(), consistentFlag(), ifVersionFlag()},
		Action: runDel,
	}
}

func runDel(c *cli.Context) error {
	if err := wantArgs(c, 1, 1); err != nil {
		return err
	}
	key := c.Args().First()
	var res *api.WriteResult
	var err error
	if c.Bool("consistent") {
		res, err = consistentDelete(c, key) // consistent.go
	} else if err = noCondFlags(c); err == nil {
		res, err = client(c).Delete(c.Context, c.String("node"), key)
	}
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	if c.Bool("json") {
		existed := res.Existed
		return printJSON(c.App.Writer, writeResult{Key: res.Key, Version: res.Version, TS: res.TS, Origin: res.Origin, Existed: &existed})
	}
	note := ""
	if !res.Existed {
		note = " (no live value was there)"
	}
	_, err = fmt.Fprintf(c.App.Writer, "OK deleted key=%s version=%s origin=%s%s\n", res.Key, res.Version, res.Origin, note)
	return err
}
