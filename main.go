// Command peerctl is a peer-to-peer gossip key-value store in one binary:
// `peerctl agent` runs a daemon, the other commands are clients of a
// daemon's HTTP API. The commands live in package cli.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	ucli "github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default: a second one kills.
		<-ctx.Done()
		stop()
	}()
	err := cli.Run(ctx, cli.NewApp(), os.Args)
	stop()
	os.Exit(exitCode(err))
}

// exitCode is the only place an error becomes an exit status: it prints err
// to stderr as one line, "peerctl: <err>", and returns the code of a
// urfave cli.ExitCoder, else 1. A nil err is status 0.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	code := 1
	var ec ucli.ExitCoder
	if errors.As(err, &ec) {
		code = ec.ExitCode()
	}
	if msg := strings.TrimSpace(err.Error()); msg != "" {
		fmt.Fprintf(os.Stderr, "peerctl: %s\n", strings.ReplaceAll(msg, "\n", "; "))
	}
	return code
}
