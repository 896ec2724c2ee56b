package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/cluster"
)

// Deadlines of the demo's steps. The whole tour takes about 10 s on a
// laptop; each deadline is several times what its step needs.
const (
	demoFormTimeout      = 20 * time.Second
	demoReplicateTimeout = 10 * time.Second
	demoDetectTimeout    = 15 * time.Second
	demoRejoinTimeout    = 20 * time.Second
	demoPoll             = 20 * time.Millisecond
	demoPollWrite        = 2 * time.Millisecond // replication takes milliseconds
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:     "demo",
		Category: catTools,
		Usage:    "a narrated tour on this machine: replication, failure detection, recovery (under a minute); chapters: --list",
		UsageText: `peerctl demo [--nodes N] [--keep]
peerctl demo --list
peerctl demo CHAPTER [--json] [--keep] [--quick]

Examples:
   go run . demo
   peerctl demo --nodes 7 --keep
   peerctl demo availability`,
		Description: `Starts a cluster of N agents (5 by default) in a temporary directory on free
loopback (127.0.0.1) ports and walks through what peerctl does, checking each step and
timing it: a write at one node reaching all of them; a node killed as with
kill -9, and how long the others take to declare it failed; a write while
it is down; the node restarted on its own data and catching up.

It stops every process it started when it ends, also on failure or
Ctrl-C. The nodes' logs go to files in the directory, which is removed
unless --keep is given or a step failed. The exit status is non-zero if any
step did not hold, and the error names the step.

The chapters (peerctl demo --list) each teach one lesson of distributed
systems on a cluster of their own: see peerctl demo CHAPTER --help.`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 5, Usage: "number of nodes `N`, at least 3"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the directory with the nodes' data and logs"},
			&cli.BoolFlag{Name: "list", Usage: "list the chapters, one line each"},
		},
		Subcommands: demoChapterCommands(),
		Action:      runDemo,
	}
}

// demo is one run of the tour.
type demo struct {
	w        io.Writer
	l        *cluster.Launcher
	dir      string
	nodes    []cluster.Node
	children map[string]*cluster.Child // by node name, the latest process of each
	step     int
	timings  [][2]string // summary rows: what, how long
	// lastWrite is the latest value written, which the restarted node must
	// return.
	lastWrite demoWrite
}

// stepError says which step of the demo did not hold.
type stepError struct {
	step  int
	title string
	err   error
}

func (e *stepError) Error() string {
	return fmt.Sprintf("demo step %d (%s) did not hold: %v", e.step, e.title, e.err)
}

func (e *stepError) Unwrap() error { return e.err }

func runDemo(c *cli.Context) (err error) {
	if done, err := demoListOrUnknown(c); done || err != nil {
		return err
	}
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	n := c.Int("nodes")
	if n < 3 {
		return fmt.Errorf("--nodes %d: the tour needs at least 3", n)
	}
	l, err := cluster.NewLauncher()
	if err != nil {
		return err
	}
	l.Grace = 5 * time.Second
	base, err := cluster.FreePortRange(2 * n)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "peerctl-demo-")
	if err != nil {
		return fmt.Errorf("demo directory: %w", err)
	}
	d := &demo{w: c.App.Writer, l: l, dir: dir, nodes: cluster.Layout(n, base, dir), children: map[string]*cluster.Child{}}
	defer func() {
		// A node that needs SIGKILL to stop is worth a look, but the
		// tour itself held.
		serr := d.l.StopAll()
		if serr != nil {
			d.say("warning: %v", serr)
		}
		switch {
		case c.Context.Err() != nil:
			err = errors.New("demo interrupted; stopped every node it started")
			if !c.Bool("keep") {
				os.RemoveAll(dir)
			}
		case err != nil:
			d.printLogs()
		case serr != nil || c.Bool("keep"):
			d.say("Stopped the nodes; their data and logs are kept in %s.", dir)
		default:
			os.RemoveAll(dir)
			d.say("Stopped the nodes and removed %s.", dir)
		}
	}()

	start := time.Now()
	d.say("peerctl demo: %d nodes on this machine, each a `peerctl agent` process with", n)
	d.say("its own copy of the store on disk. Their logs: %s", filepath.Join(dir, "node*.log"))
	d.say("Watch the same tour live in a browser at %s (the dashboard every node", dashboardURL(d.nodes[0].API))
	d.say("serves, up once step 1 has started the nodes), or in a terminal with")
	d.say("`peerctl --addr %s watch --cluster`.", d.nodes[0].API)
	steps := []struct {
		title string
		run   func(context.Context) error
	}{
		{"Start the cluster", d.form},
		{"Write at one node, read at all", d.replicate},
		{"Detect a killed node", d.detect},
		{"Write while a node is down", d.writeWhileDown},
		{"Restart the node; it catches up", d.rejoin},
	}
	for i, s := range steps {
		d.step = i + 1
		d.say("")
		d.say("%d. %s", d.step, s.title)
		if err := s.run(c.Context); err != nil {
			if c.Context.Err() != nil {
				return c.Context.Err()
			}
			return &stepError{step: d.step, title: s.title, err: err}
		}
	}
	d.timing("the tour, start to finish", time.Since(start))
	d.summary()
	return nil
}

func (d *demo) say(format string, args ...any) {
	if format == "" {
		fmt.Fprintln(d.w)
		return
	}
	fmt.Fprintf(d.w, format+"\n", args...)
}

// note prints an indented line of the step's narration.
func (d *demo) note(format string, args ...any) { d.say("   "+format, args...) }

func (d *demo) timing(what string, dur time.Duration) {
	d.timings = append(d.timings, [2]string{what, fmtDur(dur)})
}

// others returns the nodes other than name.
func (d *demo) others(name string) []cluster.Node {
	var out []cluster.Node
	for _, n := range d.nodes {
		if n.Name != name {
			out = append(out, n)
		}
	}
	return out
}

func (d *demo) logPath(name string) string { return filepath.Join(d.dir, name+".log") }

// start starts a node's agent with args, appending its output to its log.
func (d *demo) start(name string, args []string) error {
	f, err := os.OpenFile(d.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log file for %s: %w", name, err)
	}
	defer f.Close() // the child has its own copy
	ch, err := d.l.Start(name, args, f)
	if err != nil {
		return err
	}
	d.children[name] = ch
	return nil
}

// exited returns an error if one of the nodes' processes has exited.
func (d *demo) exited() error {
	for _, n := range d.nodes {
		ch := d.children[n.Name]
		if ch == nil {
			continue
		}
		select {
		case <-ch.Done():
			if !ch.Stopping() {
				return fmt.Errorf("%s exited unexpectedly (%v); see %s", n.Name, ch.Err(), d.logPath(n.Name))
			}
		default:
		}
	}
	return nil
}

// waitFor is cluster.WaitFor that also fails as soon as a node has exited.
func (d *demo) waitFor(ctx context.Context, timeout, interval time.Duration, cond func(ctx context.Context) (bool, string)) error {
	var exitErr error
	err := cluster.WaitFor(ctx, timeout, interval, func(ctx context.Context) (bool, string) {
		if exitErr = d.exited(); exitErr != nil {
			return true, ""
		}
		return cond(ctx)
	})
	if exitErr != nil {
		return exitErr
	}
	return err
}

func (d *demo) printLogs() {
	d.say("")
	d.say("The nodes' logs are kept in %s. Their last lines:", d.dir)
	for _, n := range d.nodes {
		for _, line := range cluster.TailFile(d.logPath(n.Name), 3) {
			d.say("  %s| %s", n.Name, line)
		}
	}
}

// Step 1.
func (d *demo) form(ctx context.Context) error {
	first := d.nodes[0]
	d.note("Each node is given only %s's address (--join %s).", first.Name, first.Gossip)
	d.note("Gossip then tells every node about every other: no one needs a full list.")
	start := time.Now()
	names := make([]string, len(d.nodes))
	for i, n := range d.nodes {
		names[i] = n.Name
		var join []string
		if i > 0 {
			join = []string{first.Gossip}
		}
		if err := d.start(n.Name, n.AgentArgs("local", "", join)); err != nil {
			return err
		}
	}
	err := d.waitFor(ctx, demoFormTimeout, demoPoll, func(ctx context.Context) (bool, string) {
		return cluster.AllAlive(ctx, d.nodes, names)
	})
	if err != nil {
		return err
	}
	took := time.Since(start)
	d.note("ok: all %d nodes see each other alive, %s after starting.", len(d.nodes), fmtDur(took))
	if took > 3*time.Second {
		d.note("That was slow: a node missed the gossip announcing a join and learned of")
		d.note("the newcomer only at its next periodic full-state exchange with a peer")
		d.note("(push/pull). Gossip is fast but can miss; that exchange is the backstop.")
	}
	d.timing("cluster formed", took)

	ms, err := cluster.Client(first.API).Members(ctx, "")
	if err != nil {
		return fmt.Errorf("members at %s: %w", first.Name, err)
	}
	d.say("")
	d.note("`peerctl members` at %s:", first.Name)
	tw := newTable(d.w)
	fmt.Fprintln(tw, "     NAME\tGOSSIP\tAPI\tSTATUS")
	for _, m := range sortedMembers(ms) {
		fmt.Fprintf(tw, "     %s\t%s\t%s\t%s\n", m.Name, m.Addr, m.API, m.Status)
	}
	return tw.Flush()
}

// Step 2.
func (d *demo) replicate(ctx context.Context) error {
	at := d.nodes[0]
	value := "hello from " + at.Name
	wr, err := d.put(ctx, at, "greeting", value)
	if err != nil {
		return err
	}
	d.note("It stored the value and pushed it to its peers at once. If a push is lost,")
	d.note("anti-entropy repairs it: every second each node compares a digest of its")
	d.note("store with a random peer's and fetches what differs.")
	last, err := d.awaitVersion(ctx, d.nodes, "greeting", wr.Version)
	if err != nil {
		return err
	}
	d.note("ok: all %d nodes had it %s after the write (the last: %s).", len(d.nodes), fmtDur(last.d), last.node)
	d.timing("write reached all nodes", last.d)

	rows, err := cluster.Client(d.nodes[1].API).GetAll(ctx, "greeting")
	if err != nil {
		return fmt.Errorf("get --all at %s: %w", d.nodes[1].Name, err)
	}
	d.say("")
	d.note("`peerctl get --all greeting`, asking every node through %s:", d.nodes[1].Name)
	tw := newTable(d.w)
	fmt.Fprintln(tw, "     NODE\tVALUE\tVERSION\tORIGIN")
	for _, r := range rows {
		v, ver, origin := "(missing)", "-", "-"
		switch {
		case r.Error != "":
			v = "error: " + r.Error
		case r.KV != nil:
			v, ver, origin = preview(r.KV.Value), r.KV.Version, r.KV.Origin
		}
		fmt.Fprintf(tw, "     %s\t%s\t%s\t%s\n", r.Node, v, ver, origin)
	}
	return tw.Flush()
}

// Step 3.
func (d *demo) detect(ctx context.Context) error {
	via, victim := d.nodes[0], d.nodes[2]
	survivors := d.others(victim.Name)
	d.note("peerctl --addr %s kill %s", via.API, victim.Name)
	d.note("%s exits at once, as with kill -9: no goodbye. The others must notice.", victim.Name)
	ch := d.children[victim.Name]
	if err := cluster.Client(via.API).Kill(ctx, victim.Name); err != nil {
		return fmt.Errorf("kill %s through %s: %w", victim.Name, via.Name, err)
	}
	ch.ExpectExit()
	select {
	case <-ch.Done():
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) still runs 5s after the kill request", victim.Name, ch.PID())
	case <-ctx.Done():
		return ctx.Err()
	}
	died := time.Now()
	d.note("%s (pid %d) is gone: %v.", victim.Name, ch.PID(), ch.Err())
	d.note("Every 400ms each node probes a random peer. When %s answers neither the", victim.Name)
	d.note("probe nor the peers asked to probe it too, the prober marks it suspect and")
	d.note("gossips that. Unless %s refutes the suspicion in time, it is declared", victim.Name)
	d.note("failed. The wait gives a slow but live node the chance to refute; each")
	d.note("independent suspicion shortens it (Lifeguard).")

	var mu sync.Mutex
	suspected := map[string]time.Duration{}
	failed := map[string]time.Duration{}
	var order []string
	err := d.waitFor(ctx, demoDetectTimeout, demoPoll, func(ctx context.Context) (bool, string) {
		views, errs := cluster.MemberViews(ctx, survivors)
		now := time.Since(died)
		mu.Lock()
		defer mu.Unlock()
		why := ""
		for i, s := range survivors {
			if errs[i] != nil {
				why = fmt.Sprintf("%s does not answer: %v", s.Name, errs[i])
				continue
			}
			switch st := cluster.StatusIn(views[i], victim.Name); st {
			case "failed":
				if _, ok := failed[s.Name]; !ok {
					failed[s.Name] = now
					order = append(order, s.Name)
				}
				fallthrough
			case "suspect":
				if _, ok := suspected[s.Name]; !ok {
					suspected[s.Name] = now
				}
				if st != "failed" {
					why = fmt.Sprintf("%s still sees %s as %s", s.Name, victim.Name, st)
				}
			default:
				why = fmt.Sprintf("%s still sees %s as %s", s.Name, victim.Name, st)
			}
		}
		return len(failed) == len(survivors), why
	})
	if err != nil {
		return err
	}
	firstName, lastName := order[0], order[len(order)-1]
	firstSuspect := failed[firstName]
	for _, t := range suspected {
		firstSuspect = min(firstSuspect, t)
	}
	if firstSuspect < failed[firstName] {
		d.note("The first node to suspect %s did so %s after it died.", victim.Name, fmtDur(firstSuspect))
		d.timing("kill: first suspicion", firstSuspect)
	}
	d.note("ok: %s was the first to declare %s failed, %s after it died;",
		firstName, victim.Name, fmtDur(failed[firstName]))
	d.note("%s the last, after %s.", lastName, fmtDur(failed[lastName]))
	d.timing("kill: first node declares it failed", failed[firstName])
	d.timing("kill: all survivors declare it failed", failed[lastName])
	return nil
}

// Step 4.
func (d *demo) writeWhileDown(ctx context.Context) error {
	victim := d.nodes[2]
	at := d.nodes[1]
	value := fmt.Sprintf("written while %s was down", victim.Name)
	wr, err := d.put(ctx, at, "greeting", value)
	if err != nil {
		return err
	}
	d.lastWrite = wr
	last, err := d.awaitVersion(ctx, d.others(victim.Name), "greeting", wr.Version)
	if err != nil {
		return err
	}
	d.note("ok: the %d live nodes have it %s after the write; %s has missed it.", len(d.nodes)-1, fmtDur(last.d), victim.Name)
	return nil
}

// Step 5.
func (d *demo) rejoin(ctx context.Context) error {
	victim := d.nodes[2]
	survivors := d.others(victim.Name)
	d.note("peerctl agent --data-dir %s", victim.DataDir)
	d.note("Name, ports and join address come from agent.json in that directory, the")
	d.note("data from its store there. It rejoins the members in its membership")
	d.note("snapshot and, with its first peer back, runs anti-entropy at once: it sends")
	d.note("its digest and pulls only the entries it missed.")
	start := time.Now()
	if err := d.start(victim.Name, []string{"agent", "--data-dir", victim.DataDir}); err != nil {
		return err
	}
	var (
		answered, alive, latest, same time.Duration
		stale                         string // a value it held before catching up
		digest                        string
	)
	api := cluster.Client(victim.API)
	err := d.waitFor(ctx, demoRejoinTimeout, demoPoll, func(ctx context.Context) (bool, string) {
		now := time.Since(start)
		info, err := api.Info(ctx, "")
		if err != nil {
			return false, fmt.Sprintf("%s does not answer at %s: %v", victim.Name, victim.API, err)
		}
		if answered == 0 {
			answered = now
		}
		if alive == 0 {
			if ok, why := cluster.AllAlive(ctx, survivors, []string{victim.Name}); !ok {
				return false, why
			}
			alive = time.Since(start)
		}
		if latest == 0 {
			kv, err := api.Get(ctx, "", "greeting")
			if err != nil {
				return false, fmt.Sprintf("get greeting at %s: %v", victim.Name, err)
			}
			if kv.Version != d.lastWrite.Version {
				if stale == "" {
					stale = string(kv.Value)
				}
				return false, fmt.Sprintf("%s holds %q, version %s", victim.Name, kv.Value, kv.Version)
			}
			latest = time.Since(start)
		}
		for _, s := range survivors {
			si, err := cluster.Client(s.API).Info(ctx, "")
			if err != nil {
				return false, fmt.Sprintf("info at %s: %v", s.Name, err)
			}
			if si.Store.Digest != info.Store.Digest {
				return false, fmt.Sprintf("%s's digest %s differs from %s's %s", victim.Name, shortDigest(info.Store.Digest), s.Name, shortDigest(si.Store.Digest))
			}
		}
		digest = info.Store.Digest
		same = time.Since(start)
		return true, ""
	})
	if err != nil {
		return err
	}
	d.note("%s answered after %s%s.", victim.Name, fmtDur(answered), staleNote(stale))
	d.note("ok: all see it alive after %s; it returns the value it missed after %s.", fmtDur(alive), fmtDur(latest))
	d.note("ok: its store digest equals every other node's (%s) after %s:", shortDigest(digest), fmtDur(same))
	d.note("the stores are identical.")
	d.timing("restart: alive to all", alive)
	d.timing("restart: caught up (value and digest)", same)
	return nil
}

func staleNote(v string) string {
	if v == "" {
		return ""
	}
	return fmt.Sprintf(", still holding %q from its disk", v)
}

// demoWrite is an acknowledged put.
type demoWrite struct {
	*api.WriteResult
	value string
}

// put writes key=value at node n and says so.
func (d *demo) put(ctx context.Context, n cluster.Node, key, value string) (demoWrite, error) {
	wr, err := cluster.Client(n.API).Put(ctx, "", key, []byte(value))
	if err != nil {
		return demoWrite{}, fmt.Errorf("put %s at %s: %w", key, n.Name, err)
	}
	d.note("peerctl --addr %s put %s %q", n.API, key, value)
	d.note("%s acknowledged it as version %s.", n.Name, wr.Version)
	return demoWrite{WriteResult: wr, value: value}, nil
}

// arrival is when a node first held a write, counted from the write.
type arrival struct {
	node string
	d    time.Duration
}

// awaitVersion polls every node in nodes until each holds key at version,
// and returns the last to get it.
func (d *demo) awaitVersion(ctx context.Context, nodes []cluster.Node, key, version string) (last arrival, err error) {
	start := time.Now()
	got := map[string]time.Duration{}
	err = d.waitFor(ctx, demoReplicateTimeout, demoPollWrite, func(ctx context.Context) (bool, string) {
		why := ""
		var pending []cluster.Node
		for _, n := range nodes {
			if _, ok := got[n.Name]; !ok {
				pending = append(pending, n)
			}
		}
		var mu sync.Mutex // guards why and got
		var wg sync.WaitGroup
		for _, n := range pending {
			wg.Add(1)
			go func() {
				defer wg.Done()
				kv, err := cluster.Client(n.API).Get(ctx, "", key)
				now := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					why = fmt.Sprintf("get %s at %s: %v", key, n.Name, err)
				case kv.Version != version:
					why = fmt.Sprintf("%s holds version %s", n.Name, kv.Version)
				default:
					got[n.Name] = now
				}
			}()
		}
		wg.Wait()
		return len(got) == len(nodes), why
	})
	if err != nil {
		return last, err
	}
	for n, t := range got {
		if t > last.d {
			last = arrival{n, t}
		}
	}
	return last, nil
}

func (d *demo) summary() {
	d.say("")
	d.say("Timings, measured by polling every %s (%s for writes):", fmtDur(demoPoll), fmtDur(demoPollWrite))
	tw := newTable(d.w)
	for _, t := range d.timings {
		fmt.Fprintf(tw, "   %s\t%s\n", t[0], t[1])
	}
	tw.Flush()
}

func sortedMembers(ms []api.Member) []api.Member {
	out := append([]api.Member(nil), ms...)
	slices.SortFunc(out, func(a, b api.Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// fmtDur rounds d for people: milliseconds below a second, else 10 ms.
func fmtDur(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// shortDigest returns the first 12 characters of a hex digest.
func shortDigest(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
