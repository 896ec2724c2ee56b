package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// keyInfo is one key as `keys --json` prints it.
type keyInfo struct {
	Key     string `json:"key"`
	Version string `json:"version"`
	TS      uint64 `json:"ts,string"` // HLC timestamp as a string: JavaScript loses precision above 2^53
	Origin  string `json:"origin"`
}

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:      "keys",
		Aliases:   []string{"ls"},
		Category:  catData,
		Usage:     "list the live keys a node holds, optionally under a prefix",
		ArgsUsage: "[PREFIX]",
		UsageText: `peerctl keys [--node NAME] [--json] [PREFIX]

Examples:
  peerctl keys
  peerctl keys config/
  peerctl keys --node n2 --json`,
		Description: `Prints the live (not deleted) keys that start with PREFIX, one per line,
sorted, as the daemon at --addr or member --node holds them. With --json,
an array of {key, version, ts, origin}.`,
		Flags:  []cli.Flag{nodeFlag("list the keys of"), jsonFlag(), consistentFlag()},
		Action: runKeys,
	}
}

func runKeys(c *cli.Context) error {
	if err := wantArgs(c, 0, 1); err != nil {
		return err
	}
	var list []api.KeyInfo
	var err error
	if c.Bool("consistent") {
		list, err = consistentList(c, c.Args().First()) // consistent.go
	} else {
		list, err = client(c).List(c.Context, c.String("node"), c.Args().First())
	}
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	if c.Bool("json") {
		out := make([]keyInfo, len(list))
		for i, k := range list {
			out[i] = keyInfo{Key: k.Key, Version: k.Version, TS: k.TS, Origin: k.Origin}
		}
		return printJSON(c.App.Writer, out)
	}
	for _, k := range list {
		if _, err := fmt.Fprintln(c.App.Writer, k.Key); err != nil {
			return err
		}
	}
	return nil
}
