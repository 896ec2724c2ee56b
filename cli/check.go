package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// checkPoll is how often `check --wait` asks again.
const checkPoll = 200 * time.Millisecond

// With --wait, one ask may take what is left of the wait, at least
// checkMinAsk (to get any answer at all) and at most checkMaxAsk (the
// daemon's default budget).
const (
	checkMinAsk = 500 * time.Millisecond
	checkMaxAsk = 5 * time.Second
)

// checkResult is what `check --json` prints.
type checkResult struct {
	Converged bool              `json:"converged"`
	Nodes     []string          `json:"nodes"`             // nodes compared
	Keys      map[string]int    `json:"keys"`              // node -> live keys
	Divergent int               `json:"divergent"`         // keys not identical everywhere
	Sample    []divergence      `json:"sample"`            // some of them
	Errors    map[string]string `json:"errors,omitempty"`  // nodes that could not be asked
	Skipped   map[string]string `json:"skipped,omitempty"` // members not compared -> why
	Reasons   []string          `json:"reasons,omitempty"` // why not converged, beyond divergent keys
	Waited    string            `json:"waited,omitempty"`  // with --wait: how long until this result
}

// divergence is one key nodes hold differently: node -> version, "" if
// the node lacks it.
type divergence struct {
	Key      string            `json:"key"`
	Versions map[string]string `json:"versions"`
}

func toCheckResult(r *api.CheckResult) checkResult {
	out := checkResult{Converged: r.Converged, Nodes: []string{}, Keys: map[string]int{},
		Divergent: r.Divergent, Sample: []divergence{}}
	out.Nodes = append(out.Nodes, r.Nodes...)
	sort.Strings(out.Nodes)
	for n, k := range r.Keys {
		out.Keys[n] = k
	}
	for _, d := range r.Sample {
		v := map[string]string{}
		for n, ver := range d.Versions {
			v[n] = ver
		}
		out.Sample = append(out.Sample, divergence{Key: d.Key, Versions: v})
	}
	if len(r.Errors) > 0 {
		out.Errors = map[string]string{}
		for n, e := range r.Errors {
			out.Errors[n] = e
		}
	}
	out.Reasons = append(out.Reasons, r.Reasons...)
	if len(r.Skipped) > 0 {
		out.Skipped = map[string]string{}
		for n, st := range r.Skipped {
			out.Skipped[n] = st
		}
		if len(out.Reasons) == 0 { // a daemon that gives no reasons
			for _, n := range slices.Sorted(maps.Keys(r.Skipped)) {
				out.Reasons = append(out.Reasons, n+" "+r.Skipped[n])
			}
		}
	}
	return out
}

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:     "check",
		Category: catData,
		Usage:    "check whether every alive node holds the same data",
		UsageText: `peerctl check [--wait DURATION] [--json]

Examples:
  peerctl check
  peerctl heal --all && peerctl check --wait 10s`,
		Description: `Asks the daemon at --addr to compare the data of every member: those it
sees, those any node it can ask knows of, and those in its saved
membership (DATA_DIR/known-members.json), so a node that sees only itself
cannot answer "converged" for a cluster it cannot see. The
comparison is cheap: each node's digest (a hash per key range) is fetched,
and only for ranges that differ are keys compared, version by version.

Prints "converged: N nodes hold identical data (K keys)", or "diverged: D
keys differ across nodes" and a sample of those keys with the version each
node holds ("-": the node lacks the key; "deleted@...": it holds a
tombstone). Eventual consistency promises convergence once the nodes can
talk and writes stop, not at every moment: during a fault, or right after
writes, diverged is expected.

With --wait, asks again every 200ms until the nodes converge or DURATION
runs out, and says how long convergence took: after a heal, that is how
long gossip and anti-entropy needed to repair the divergence.

The exit status is 0 if converged, 1 if not. A node that could not be asked
is listed and counts as not converged, and so does a member that could not
be compared, with the reason: "n2, n3 unreachable from n1: partitioned?"
(the daemon at --addr does not see them alive, others do), "n3 failed"
(no node sees it alive), "n1 failed to n2: partitioned?" (compared, but
another node cannot reach it). It may hold anything. Members that left do
not count.`,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "wait", Usage: "ask again until converged, for up to `DURATION`, e.g. 10s"},
			jsonFlag(),
		},
		Action: runCheck,
	}
}

func runCheck(c *cli.Context) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	wait := c.Duration("wait")
	if wait < 0 {
		return fmt.Errorf("--wait %v: want a positive duration", wait)
	}
	cl := client(c)
	start := time.Now()
	var out checkResult
	var err error
	for {
		// Each ask is bounded by the time --wait has left (at least
		// checkMinAsk), so a member that hangs does not hold the answer
		// past the deadline: the daemon counts it as not compared.
		var budget time.Duration
		if c.IsSet("wait") {
			budget = min(checkMaxAsk, max(wait-time.Since(start), checkMinAsk))
		}
		out, err = checkOnce(c.Context, cl, budget)
		if (err == nil && out.Converged) || !c.IsSet("wait") {
			break
		}
		left := wait - time.Since(start)
		if left <= 0 {
			break
		}
		t := time.NewTimer(min(left, checkPoll))
		select {
		case <-c.Context.Done():
			t.Stop()
			return fmt.Errorf("check: %w", c.Context.Err())
		case <-t.C:
		}
	}
	took := time.Since(start)
	if err != nil {
		if c.IsSet("wait") {
			return fmt.Errorf("check: %w (still failing after %s)", err, humanDuration(took))
		}
		return fmt.Errorf("check: %w", err)
	}
	if c.IsSet("wait") {
		out.Waited = humanDuration(took)
	}
	w := c.App.Writer
	if c.Bool("json") {
		if err := printJSON(w, out); err != nil {
			return err
		}
	} else if err := printCheck(c, out); err != nil {
		return err
	}
	if !out.Converged {
		return cli.Exit("", 1) // the output says why
	}
	return nil
}

// checkOnce asks the daemon to compare the alive nodes' data. Members it
// could not compare (failed: down or across a partition) come back in
// Skipped and make the result not converged.
func checkOnce(ctx context.Context, cl *api.Client, budget time.Duration) (checkResult, error) {
	res, err := cl.CheckWithin(ctx, budget)
	if err != nil {
		return checkResult{}, err
	}
	return toCheckResult(res), nil
}

// printCheck prints a check result as text.
func printCheck(c *cli.Context, r checkResult) error {
	w := c.App.Writer
	waited := ""
	if r.Waited != "" {
		waited = " after " + r.Waited
	}
	if r.Converged {
		switch len(r.Nodes) {
		case 0:
			_, err := fmt.Fprintf(w, "converged%s: no alive nodes to compare\n", waited)
			return err
		case 1:
			_, err := fmt.Fprintf(w, "converged%s: only 1 node to compare (%s)\n", waited, keyCount(r.Keys))
			return err
		}
		_, err := fmt.Fprintf(w, "converged%s: %d nodes hold identical data (%s)\n", waited, len(r.Nodes), keyCount(r.Keys))
		return err
	}
	switch {
	case r.Divergent == 1:
		fmt.Fprintln(w, "diverged: 1 key differs across nodes")
	case r.Divergent > 1:
		fmt.Fprintf(w, "diverged: %d keys differ across nodes\n", r.Divergent)
	case len(r.Reasons) > 0:
		fmt.Fprintf(w, "not converged: %s %s\n", strings.Join(r.Reasons, "; "), comparedNote(r.Nodes))
	case len(r.Errors) > 0:
		were := fmt.Sprintf("%d nodes were", len(r.Errors))
		if len(r.Errors) == 1 {
			were = "1 node was"
		}
		fmt.Fprintf(w, "not converged: %s not compared %s\n", were, comparedNote(r.Nodes))
	default: // the digests differed, the keys no longer did
		fmt.Fprintln(w, "diverged: the nodes' digests differ while writes are in flight; ask again")
	}
	if len(r.Sample) > 0 {
		tw := newTable(w)
		fmt.Fprintf(tw, "KEY\t%s\n", strings.Join(r.Nodes, "\t"))
		for _, d := range r.Sample {
			row := []string{d.Key}
			for _, n := range r.Nodes {
				v := d.Versions[n]
				if v == "" {
					v = "-"
				}
				row = append(row, v)
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(r.Sample) < r.Divergent {
			fmt.Fprintf(w, "(showing %d of %d keys)\n", len(r.Sample), r.Divergent)
		}
	}
	var failed []string
	for n := range r.Errors {
		failed = append(failed, n)
	}
	sort.Strings(failed)
	for _, n := range failed {
		fmt.Fprintf(w, "%s: could not be asked: %s\n", n, r.Errors[n])
	}
	if r.Divergent > 0 {
		for _, why := range r.Reasons {
			fmt.Fprintf(w, "also: %s\n", why)
		}
	}
	if r.Waited != "" {
		fmt.Fprintf(w, "still not converged after %s\n", r.Waited)
	}
	return nil
}

// comparedNote says what the compared nodes showed, when other members
// made the answer "not converged": identical data, unless there was only
// one to compare (or none), which shows nothing.
func comparedNote(nodes []string) string {
	switch len(nodes) {
	case 0:
		return "(no node could be compared)"
	case 1:
		return "(only " + nodes[0] + " could be compared)"
	}
	return fmt.Sprintf("(the %d compared hold identical data)", len(nodes))
}

// keyCount formats the nodes' key counts: "12 keys", or "11-12 keys" if
// they differ (the counts are read a moment apart from the digests).
func keyCount(keys map[string]int) string {
	var ks []int
	for _, k := range keys {
		ks = append(ks, k)
	}
	if len(ks) == 0 {
		return "no keys"
	}
	lo, hi := slices.Min(ks), slices.Max(ks)
	if lo == hi {
		return fmt.Sprintf("%d %s", lo, plural(lo, "key"))
	}
	return fmt.Sprintf("%d-%d keys", lo, hi)
}

// humanDuration formats d for people: "<1ms", milliseconds below a
// second, tenths of a second above.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "<1ms"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
