package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

func lockCommand() *cli.Command {
	return &cli.Command{
		Name:      "lock",
		Category:  catData,
		Usage:     "run a command while holding a cluster-wide lock (raft), as consul lock does",
		ArgsUsage: "NAME -- CMD [ARGS...]",
		UsageText: `peerctl lock [--ttl 10s] [--wait D] [--node NAME] NAME -- CMD [ARGS...]

Examples:
  peerctl lock backup -- ./backup.sh
  peerctl lock --ttl 5s --wait 1m deploy -- make deploy`,
		Description: `Acquires the lock NAME through the daemon at --addr (any node: followers
forward to the raft leader), waiting while another session holds it (for
ever, or --wait), then runs CMD with PEERCTL_FENCE set to the lock's
fencing token: the raft index of the acquire, strictly increasing over the
lock's holders, so a resource can refuse a write carrying an older token.
The lock is renewed every TTL/3; if a holder dies (kill -9) its lock
expires TTL after its last renew and the next waiter gets it.

When CMD exits the lock is released and peerctl exits with CMD's status.
If the lock is lost (not renewed within its TTL: a partition, no quorum),
CMD is sent SIGTERM (SIGKILL 5 s later) and peerctl exits with status 1.
Without a quorum the acquire fails with exit status 3.`,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "ttl", Value: 10 * time.Second, Usage: "the lock expires `D` after its last renew"},
			&cli.DurationFlag{Name: "wait", Usage: "give up after waiting `D` for the lock (0: wait for ever)"},
			nodeFlag("lock through"),
		},
		Action: runLock,
	}
}

// lockWaitChunk bounds one acquire request: below the client's timeout.
const lockWaitChunk = 20 * time.Second

func runLock(c *cli.Context) error {
	if c.NArg() < 2 {
		return fmt.Errorf("want NAME -- CMD [ARGS...]")
	}
	name, argv := c.Args().First(), c.Args().Slice()[1:]
	if argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return fmt.Errorf("no command to run: want NAME -- CMD [ARGS...]")
	}
	ttl, wait, node := c.Duration("ttl"), c.Duration("wait"), c.String("node")
	if ttl < 100*time.Millisecond || ttl > time.Hour {
		return fmt.Errorf("--ttl %v: want 100ms to 1h", ttl)
	}
	cl := client(c)
	var deadline time.Time
	if wait > 0 {
		deadline = time.Now().Add(wait)
	}
	var g *api.LockGrant
	for {
		chunk := lockWaitChunk
		if !deadline.IsZero() {
			chunk = min(chunk, max(time.Until(deadline), 0))
		}
		var err error
		g, err = cl.Lock(c.Context, node, name, ttl, chunk)
		if err == nil {
			break
		}
		if !errors.Is(err, api.ErrLockHeld) || (!deadline.IsZero() && time.Now().After(deadline)) || c.Context.Err() != nil {
			return quorumExit(fmt.Errorf("lock %q: %w", name, err))
		}
	}
	fmt.Fprintf(c.App.ErrWriter, "peerctl: lock %q acquired (fence %d)\n", name, g.Fence)

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.App.Reader, c.App.Writer, c.App.ErrWriter
	cmd.Env = append(os.Environ(), "PEERCTL_FENCE="+strconv.FormatUint(g.Fence, 10), "PEERCTL_LOCK_SESSION="+g.Session)
	if err := cmd.Start(); err != nil {
		cl.Unlock(context.Background(), node, name, g.Session)
		return fmt.Errorf("lock %q: start %s: %w", name, argv[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	renew := time.NewTicker(ttl / 3)
	defer renew.Stop()
	lastRenew := time.Now()
	stop := func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		return nil
	}
	for {
		select {
		case err := <-exited:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			uerr := cl.Unlock(ctx, node, name, g.Session)
			cancel()
			if uerr != nil && !errors.Is(uerr, api.ErrLockLost) {
				fmt.Fprintf(c.App.ErrWriter, "peerctl: release lock %q: %v (it expires in %v)\n", name, uerr, ttl)
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return cli.Exit("", max(ee.ExitCode(), 1))
			}
			return err
		case <-c.Context.Done():
			stop()
			cl.Unlock(context.Background(), node, name, g.Session)
			return c.Context.Err()
		case <-renew.C:
			ctx, cancel := context.WithTimeout(c.Context, ttl/3)
			_, err := cl.RenewLock(ctx, node, name, g.Session)
			cancel()
			switch {
			case err == nil:
				lastRenew = time.Now()
			case errors.Is(err, api.ErrLockLost) || time.Since(lastRenew) >= ttl:
				stop()
				return fmt.Errorf("lock %q lost (%v): stopped %s", name, err, argv[0])
			}
		}
	}
}
