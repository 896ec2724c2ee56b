package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	demos "github.com/peerctl/peerctl/internal/demo"
)

// demoChapterCommands makes one `demo CHAPTER` subcommand per chapter of
// internal/demo, which holds them all; this only parses flags.
func demoChapterCommands() []*cli.Command {
	var out []*cli.Command
	for _, ch := range demos.Chapters() {
		flags := []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the figures as JSON on stdout (the narration goes to stderr)"},
			&cli.BoolFlag{Name: "keep", Usage: "leave the last cluster up until Ctrl-C and say how to reach it"},
			&cli.BoolFlag{Name: "quick", Usage: "the short form CI runs: fewer nodes or a shorter workload, the same checks"},
		}
		if ch.Name == "scale" {
			flags = append(flags, &cli.StringFlag{Name: "svg", Value: "peerctl-demo-scale.svg", Usage: "write the plot to `FILE` (\"\": none)"})
		}
		out = append(out, &cli.Command{
			Name:      ch.Name,
			Usage:     ch.Summary,
			UsageText: fmt.Sprintf("peerctl demo %s [--json] [--keep] [--quick]", ch.Name),
			Description: `Starts its own nodes on this machine, narrates each step, checks it, and
prints a table of figures at the end. It stops every node it started and
removes its directory when it ends, also on failure or Ctrl-C; the exit
status is non-zero if a step did not hold, and the error names the step.`,
			Flags:        flags,
			OnUsageError: usageError,
			Action: func(c *cli.Context) error {
				if err := wantArgs(c, 0, 0); err != nil {
					return err
				}
				return demos.Run(c.Context, ch.Name, demos.Options{
					Out: c.App.Writer, Err: c.App.ErrWriter,
					JSON: c.Bool("json"), Keep: c.Bool("keep"), Quick: c.Bool("quick"), SVG: c.String("svg"),
				})
			},
		})
	}
	return out
}

// demoListOrUnknown handles `demo --list` and `demo NAME` for a NAME that
// is no chapter; done reports that it did.
func demoListOrUnknown(c *cli.Context) (done bool, err error) {
	if c.Bool("list") {
		demos.List(c.App.Writer)
		return true, nil
	}
	if c.Args().Present() {
		return true, fmt.Errorf("no demo chapter %q: the chapters are %s (see `peerctl demo --list`)", c.Args().First(), demos.Names())
	}
	return false, nil
}
