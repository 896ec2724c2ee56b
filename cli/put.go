package cli

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// maxStdinValue caps what `put KEY -` reads from stdin. The daemon's own
// limit (64 KiB) is lower and it rejects longer values; this cap only
// keeps a runaway pipe from filling memory.
const maxStdinValue = 1 << 20

func putCommand() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Aliases:   []string{"set"},
		Category:  catData,
		Usage:     "write a value at a node; it spreads to every member",
		ArgsUsage: "KEY VALUE|-",
		UsageText: `peerctl put [--node NAME] [--json] KEY VALUE
peerctl put [--node NAME] [--json] KEY -      (the value is read from stdin)

Examples:
  peerctl put greeting hello
  peerctl put --node n2 config/mode fast
  cat notes.txt | peerctl put notes -`,
		Description: `Writes VALUE under KEY at the daemon at --addr, or at member --node, which
stamps it with a new version (a hybrid logical clock) and replicates it to
the other members; the newest version wins everywhere. With "-" the value
is stdin's bytes exactly, a trailing newline included. Values are limited
to 64 KiB. Prints "OK key=KEY version=VERSION origin=NODE".`,
		Flags:  append([]cli.Flag{nodeFlag("write at"), jsonFlag()}, consistentPutFlags()...),
		Action: runPut,
	}
}

func runPut(c *cli.Context) error {
	if err := wantArgs(c, 2, 2); err != nil {
		return err
	}
	key := c.Args().Get(0)
	value := []byte(c.Args().Get(1))
	if c.Args().Get(1) == "-" {
		b, err := io.ReadAll(io.LimitReader(c.App.Reader, maxStdinValue+1))
		if err != nil {
			return fmt.Errorf("read value from stdin: %w", err)
		}
		if len(b) > maxStdinValue {
			return fmt.Errorf("value on stdin is over %d bytes; values are limited to 64 KiB", maxStdinValue)
		}
		value = b
	}
	var res *api.WriteResult
	var err error
	if c.Bool("consistent") {
		res, err = consistentPut(c, key, value) // consistent.go
	} else if err = noCondFlags(c); err == nil {
		res, err = client(c).Put(c.Context, c.String("node"), key, value)
	}
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, writeResult{Key: res.Key, Version: res.Version, TS: res.TS, Origin: res.Origin})
	}
	_, err = fmt.Fprintf(c.App.Writer, "OK key=%s version=%s origin=%s\n", res.Key, res.Version, res.Origin)
	return err
}
