package cli

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// versionInfo is what `version --json` prints.
type versionInfo struct {
	Version string `json:"version"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:     "version",
		Category: catTools,
		Usage:    "print this binary's version",
		UsageText: `peerctl version [--json]

To see the version a running daemon reports, use "peerctl info".`,
		Flags:  []cli.Flag{jsonFlag()},
		Action: runVersion,
	}
}

func runVersion(c *cli.Context) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	v := versionInfo{Version: api.Version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if c.Bool("json") {
		return printJSON(c.App.Writer, v)
	}
	_, err := fmt.Fprintf(c.App.Writer, "peerctl %s (%s, %s/%s)\n", v.Version, v.Go, v.OS, v.Arch)
	return err
}
