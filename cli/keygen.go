package cli

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/urfave/cli/v2"
)

// keyBytes is the size of the keys keygen makes: AES-256.
const keyBytes = 32

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:     "keygen",
		Category: catTools,
		Usage:    "print a new random gossip encryption key for agent --encrypt",
		UsageText: `peerctl keygen [--json]

Example:
  KEY=$(peerctl keygen)
  peerctl agent --name n1 --data-dir /tmp/n1 --encrypt "$KEY"`,
		Description: `Prints a fresh 32-byte key from crypto/rand, base64 (standard encoding).
Give every agent of a cluster the same --encrypt key; it talks to no daemon.`,
		Flags:  []cli.Flag{jsonFlag()},
		Action: runKeygen,
	}
}

func runKeygen(c *cli.Context) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	b := make([]byte, keyBytes)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("read random key: %w", err)
	}
	key := base64.StdEncoding.EncodeToString(b)
	if c.Bool("json") {
		return printJSON(c.App.Writer, struct {
			Key string `json:"key"`
		}{key})
	}
	_, err := fmt.Fprintln(c.App.Writer, key)
	return err
}
