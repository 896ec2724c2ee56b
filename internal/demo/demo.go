// Package demo holds the chapters of `peerctl demo CHAPTER`: short,
// narrated, self-checking lessons of distributed systems, each run on a
// real cluster of `peerctl agent` processes on this machine (started with
// the local-cluster launcher, internal/cluster).
//
// Every chapter follows the same contract, which run.go enforces:
//   - it starts its own nodes in a new temporary directory, on free
//     loopback ports;
//   - it narrates in plain words what it does and why, then measures what
//     it claims and prints a small table of figures at the end;
//   - it is a list of steps, each checked: the first that does not hold
//     ends the chapter with a *StepError naming it (the CLI exits non-zero);
//   - it stops every process it started and removes its directory when it
//     ends, also on failure or Ctrl-C (the nodes' last log lines are
//     printed first on failure);
//   - Options.JSON prints the figures as one JSON document (Report), the
//     narration then going to Options.Err; Options.Keep leaves the last
//     cluster up until Ctrl-C and says how to reach it;
//   - Options.Quick is the form CI runs: fewer nodes or a shorter workload,
//     the same steps and checks.
//
// cli/demo.go only parses flags and calls Run.
package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Options configure one run of a chapter.
type Options struct {
	Out   io.Writer // narration and the figures table; with JSON, the Report only
	Err   io.Writer // narration when JSON is set; nil: discarded
	JSON  bool      // print the Report as JSON on Out
	Keep  bool      // leave the last cluster up until ctx ends, and say how to reach it
	Quick bool      // the short form: fewer nodes, shorter workload, same checks
	// Exe is the peerctl binary the nodes run; "" means this executable.
	Exe string
	// TempDir is where the chapter's directory is made; "" means the
	// system's default.
	TempDir string
	// SVG is where the scale chapter writes its plot; "" means no plot.
	SVG string
}

// Chapter is one lesson.
type Chapter struct {
	Name    string
	Summary string // one line, for `peerctl demo --list`
	run     func(r *run) error
}

// chapters in the order a course would take them.
var chapters = []Chapter{
	{Name: "availability", Summary: "kill 1, then 2 of 5 nodes under a client's load; success rate, longest outage and nines, against one node killed once", run: availability},
	{Name: "consistency", Summary: "partition 2 / 3, write the same key on both sides, heal: last-writer-wins loses an acknowledged write; the consistent namespace refuses instead", run: consistency},
	{Name: "coordination", Summary: "kill the leader and time the takeover; a naive coordinator rule elects two in a partition, a majority rule one", run: coordination},
	{Name: "spof", Summary: "stop the one seed everyone knows: newcomers and restarted nodes are lost; with saved membership they are not", run: spof},
	{Name: "scale", Summary: "reads and writes per second with 1, 3 and 5 nodes, and the messages every write costs; writes an SVG plot", run: scale},
}

// Chapters lists the chapters in order.
func Chapters() []Chapter { return append([]Chapter(nil), chapters...) }

// Find returns the chapter called name.
func Find(name string) (Chapter, bool) {
	for _, c := range chapters {
		if c.Name == name {
			return c, true
		}
	}
	return Chapter{}, false
}

// Names returns the chapters' names, comma-separated.
func Names() string {
	var out []string
	for _, c := range chapters {
		out = append(out, c.Name)
	}
	return strings.Join(out, ", ")
}

// List writes one line per chapter.
func List(w io.Writer) {
	for _, c := range chapters {
		fmt.Fprintf(w, "%-13s %s\n", c.Name, c.Summary)
	}
}

// Run runs the chapter called name; see the package doc for its contract.
// It returns a *StepError if a step did not hold, ctx's error if ctx ended
// first.
func Run(ctx context.Context, name string, o Options) error {
	c, ok := Find(name)
	if !ok {
		return fmt.Errorf("no demo chapter %q: the chapters are %s (see `peerctl demo --list`)", name, Names())
	}
	return c.Run(ctx, o)
}
