package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// healthCommand is `peerctl health`: the probe a container runtime calls
// (the image's HEALTHCHECK, Kubernetes' exec probes). An image built FROM
// scratch has no shell or curl, so the binary probes itself.
func healthCommand() *cli.Command {
	return &cli.Command{
		Name:     "health",
		Category: catCluster,
		Usage:    "exit 0 if the daemon at --addr answers its API, non-zero otherwise",
		UsageText: `peerctl health [--timeout DURATION]

Examples:
  peerctl health                               # the daemon on 127.0.0.1:7947
  peerctl --addr 10.0.0.5:7947 health --timeout 2s`,
		Description: `Asks the daemon at --addr for its info (GET /v1/info), with the API token
if one is set (--token or PEERCTL_TOKEN), and prints one line. It fails
if the daemon does not answer within --timeout, answers an error (a wrong
or missing token included), or is not running. Container health checks
and Kubernetes probes run it.`,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: 3 * time.Second,
				Usage: "fail if the daemon has not answered after `DURATION`"},
		},
		Action: runHealth,
	}
}

func runHealth(c *cli.Context) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	d := c.Duration("timeout")
	if d <= 0 || d > time.Minute {
		return fmt.Errorf("--timeout %s: want more than 0 and at most 1m", d)
	}
	ctx, cancel := context.WithTimeout(c.Context, d)
	defer cancel()
	info, err := client(c).Info(ctx, "")
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	alive := 0
	for status, n := range info.Members {
		if strings.EqualFold(status, "alive") {
			alive += n
		}
	}
	_, err = fmt.Fprintf(c.App.Writer, "ok: %s serves its API at %s, %d members alive\n", info.Name, c.String("addr"), alive)
	return err
}
