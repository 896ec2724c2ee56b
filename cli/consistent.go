package cli

// The --consistent parts of put, get, del and keys: the Raft-backed
// namespace beside the gossip store (internal/api/raft.go). Without a
// quorum they fail with exit status 3 (quorumExit).

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// exitNoQuorum is the exit status of a consistent operation refused for
// want of a quorum (README: exit codes).
const exitNoQuorum = 3

// quorumError is an error that wraps api.ErrNoQuorum: main.go exits with
// its ExitCode.
type quorumError struct{ err error }

func (e *quorumError) Error() string { return e.err.Error() }
func (e *quorumError) Unwrap() error { return e.err }
func (e *quorumError) ExitCode() int { return exitNoQuorum }

// quorumExit gives a no-quorum error exit status 3; others pass unchanged.
func quorumExit(err error) error {
	if err != nil && errors.Is(err, api.ErrNoQuorum) {
		return &quorumError{err: err}
	}
	return err
}

func consistentFlag() cli.Flag {
	return &cli.BoolFlag{Name: "consistent", Aliases: []string{"c"},
		Usage: "use the consistent namespace (Raft: linearizable, refused without a quorum, exit status 3)"}
}

func ifVersionFlag() cli.Flag {
	return &cli.Uint64Flag{Name: "if-version", Usage: "with --consistent: only if the key is at version `V` (0: absent)"}
}

func consistentPutFlags() []cli.Flag {
	return []cli.Flag{consistentFlag(), ifVersionFlag(),
		&cli.BoolFlag{Name: "if-absent", Usage: "with --consistent: only if the key is absent"}}
}

// noCondFlags refuses --if-version and --if-absent without --consistent.
func noCondFlags(c *cli.Context) error {
	if c.IsSet("if-version") || c.Bool("if-absent") {
		return fmt.Errorf("--if-version and --if-absent need --consistent: the gossip store has no compare-and-set")
	}
	return nil
}

func ifVersion(c *cli.Context) *uint64 {
	if !c.IsSet("if-version") {
		return nil
	}
	v := c.Uint64("if-version")
	return &v
}

func consistentPut(c *cli.Context, key string, value []byte) (*api.WriteResult, error) {
	opts := api.PutOptions{IfVersion: ifVersion(c), IfAbsent: c.Bool("if-absent")}
	if opts.IfVersion != nil && opts.IfAbsent && *opts.IfVersion != 0 {
		return nil, fmt.Errorf("--if-absent and --if-version %d contradict each other", *opts.IfVersion)
	}
	res, err := client(c).ConsistentPut(c.Context, c.String("node"), key, value, opts)
	return res, quorumExit(err)
}

func consistentGet(c *cli.Context, key string) (*api.KV, error) {
	kv, err := client(c).ConsistentGet(c.Context, c.String("node"), key)
	return kv, quorumExit(err)
}

func consistentDelete(c *cli.Context, key string) (*api.WriteResult, error) {
	res, err := client(c).ConsistentDelete(c.Context, c.String("node"), key, ifVersion(c))
	return res, quorumExit(err)
}

func consistentList(c *cli.Context, prefix string) ([]api.KeyInfo, error) {
	list, err := client(c).ConsistentList(c.Context, c.String("node"), prefix)
	return list, quorumExit(err)
}
