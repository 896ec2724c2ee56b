package demo

// The runner every chapter uses: its directory and launcher, its steps,
// its figures and report, and its clusters (groups of nodes).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/cluster"
	"github.com/peerctl/peerctl/internal/figures"
)

// Deadlines shared by the chapters: several times what their step needs on
// a laptop, so that a loaded machine slows a chapter down rather than
// failing it.
const (
	formTimeout = 30 * time.Second // a cluster: every node sees every node alive
	waitPoll    = 20 * time.Millisecond
	stopGrace   = 5 * time.Second // SIGTERM before SIGKILL
)

// StepError says which step of a chapter did not hold.
type StepError struct {
	Chapter string
	Step    int
	Title   string
	Err     error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("demo %s, step %d (%s) did not hold: %v", e.Chapter, e.Step, e.Title, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Figure is one measured value of a chapter.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"` // see figures.Format
}

// Report is what --json prints: the chapter's figures, or the step that
// did not hold.
type Report struct {
	Chapter    string   `json:"chapter"`
	Quick      bool     `json:"quick"`
	OK         bool     `json:"ok"`
	FailedStep string   `json:"failed_step,omitempty"` // "3. Kill two of five"
	Error      string   `json:"error,omitempty"`
	Seconds    float64  `json:"seconds"` // the chapter's run time
	Figures    []Figure `json:"figures"`
	Files      []string `json:"files,omitempty"` // what it wrote (the scale plot)
}

// run is one run of a chapter.
type run struct {
	ctx     context.Context
	o       Options
	chapter string
	w       io.Writer // narration
	l       *cluster.Launcher
	dir     string
	start   time.Time

	step    int
	title   string
	groups  []*group
	figures []Figure
	files   []string
	// keepNote, if set, is printed with --keep: how to use the cluster
	// left up.
	keepNote []string
}

// Run runs the chapter; see the package doc.
func (c Chapter) Run(ctx context.Context, o Options) (err error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	w := o.Out
	if o.JSON {
		w = o.Err
		if w == nil {
			w = io.Discard
		}
	}
	l, err := cluster.NewLauncher()
	if err != nil {
		return err
	}
	if o.Exe != "" {
		l.Exe = o.Exe
	}
	l.Grace = stopGrace
	dir, err := os.MkdirTemp(o.TempDir, "peerctl-demo-"+c.Name+"-")
	if err != nil {
		return fmt.Errorf("demo directory: %w", err)
	}
	r := &run{ctx: ctx, o: o, chapter: c.Name, w: w, l: l, dir: dir, start: time.Now()}
	defer func() {
		if err != nil && ctx.Err() == nil {
			r.printLogs()
		}
		if err == nil && o.Keep {
			r.keep()
		}
		// The data is thrown away: SIGKILL is quicker than leaving.
		l.KillAll()
		if rerr := os.RemoveAll(dir); rerr != nil {
			r.say("warning: could not remove %s: %v", dir, rerr)
		}
		if ctx.Err() != nil && err != nil {
			err = fmt.Errorf("demo %s interrupted; stopped every node it started and removed %s", c.Name, dir)
		} else {
			r.say("Stopped every node and removed %s.", dir)
		}
		if o.JSON {
			rep := r.report(err)
			enc := json.NewEncoder(o.Out)
			enc.SetIndent("", "  ")
			if jerr := enc.Encode(rep); jerr != nil && err == nil {
				err = jerr
			}
		}
	}()
	if err := c.run(r); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	r.say("")
	r.say("Figures (demo %s%s, %s):", c.Name, map[bool]string{true: " --quick", false: ""}[o.Quick], fmtDur(time.Since(r.start)))
	tw := tabwriter.NewWriter(r.w, 0, 0, 2, ' ', 0)
	for _, f := range r.figures {
		fmt.Fprintf(tw, "   %s\t%s\n", f.Name, figures.Format(f.Value, f.Unit))
	}
	tw.Flush()
	return nil
}

func (r *run) report(err error) Report {
	rep := Report{Chapter: r.chapter, Quick: r.o.Quick, OK: err == nil, Seconds: time.Since(r.start).Seconds(), Figures: r.figures, Files: r.files}
	if rep.Figures == nil {
		rep.Figures = []Figure{}
	}
	if err != nil {
		rep.Error = err.Error()
		var se *StepError
		if errors.As(err, &se) {
			rep.FailedStep = fmt.Sprintf("%d. %s", se.Step, se.Title)
		}
	}
	return rep
}

// do runs one step: it prints its number and title, then runs fn; an
// error from fn becomes a *StepError naming the step.
func (r *run) do(title string, fn func() error) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	r.step++
	r.title = title
	r.say("")
	r.say("%d. %s", r.step, title)
	if err := fn(); err != nil {
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		return &StepError{Chapter: r.chapter, Step: r.step, Title: title, Err: err}
	}
	return nil
}

// steps runs steps in order until one fails.
func (r *run) steps(ss ...step) error {
	for _, s := range ss {
		if err := r.do(s.title, s.fn); err != nil {
			return err
		}
	}
	return nil
}

type step struct {
	title string
	fn    func() error
}

func (r *run) say(format string, args ...any) {
	if format == "" {
		fmt.Fprintln(r.w)
		return
	}
	fmt.Fprintf(r.w, format+"\n", args...)
}

// note prints an indented line of narration.
func (r *run) note(format string, args ...any) { r.say("   "+format, args...) }

// table prints rows as an indented table; the first row is the header.
func (r *run) table(rows [][]string) {
	tw := tabwriter.NewWriter(r.w, 0, 0, 2, ' ', 0)
	for _, row := range rows {
		fmt.Fprintf(tw, "     %s\n", strings.Join(row, "\t"))
	}
	tw.Flush()
}

// figure records a measured value for the final table and the report.
func (r *run) figure(name string, v float64, unit string) {
	r.figures = append(r.figures, Figure{Name: name, Value: v, Unit: unit})
}

// printLogs prints the last lines of every node's log, before the
// directory is removed.
func (r *run) printLogs() {
	r.say("")
	r.say("The nodes' last log lines:")
	for _, g := range r.groups {
		for _, n := range g.nodes {
			for _, line := range cluster.TailFile(g.logPath(n.Name), 3) {
				r.say("  %s%s| %s", g.prefix(), n.Name, line)
			}
		}
	}
}

// keep leaves the running nodes up until ctx ends, saying how to reach
// them.
func (r *run) keep() {
	var live []cluster.Node
	for _, g := range r.groups {
		for _, n := range g.nodes {
			if ch := g.procs[n.Name]; ch != nil && !ch.Exited() {
				live = append(live, n)
			}
		}
	}
	if len(live) == 0 {
		r.say("--keep: no node is left running.")
		return
	}
	r.say("")
	r.say("--keep: %d nodes stay up until Ctrl-C (data and logs in %s). Try:", len(live), r.dir)
	for _, n := range live {
		r.say("   peerctl --addr %s members    # %s", n.API, n.Name)
	}
	for _, s := range r.keepNote {
		r.say("   %s", s)
	}
	if url := dashboard(r.ctx, live[0].API); url != "" {
		r.say("Dashboard: %s", url)
	}
	<-r.ctx.Done()
}

// dashboard returns the dashboard's URL at the node's API, or "" if this
// build serves none.
func dashboard(ctx context.Context, addr string) string {
	url := "http://" + addr + "/ui/"
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, "GET", url, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return url
}

// group is one cluster a chapter starts: nodes node1..nodeN in
// DIR/LABEL, on ports of their own.
type group struct {
	r     *run
	label string
	dir   string
	nodes []cluster.Node

	mu    sync.Mutex
	procs map[string]*cluster.Child // guarded by mu; the latest process of each node
}

// newGroup lays out a cluster of n nodes; it starts none.
func (r *run) newGroup(label string, n int) (*group, error) {
	base, err := cluster.FreePortRange(2 * n)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(r.dir, label)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("demo directory: %w", err)
	}
	g := &group{r: r, label: label, dir: dir, nodes: cluster.Layout(n, base, dir), procs: map[string]*cluster.Child{}}
	r.groups = append(r.groups, g)
	return g, nil
}

func (g *group) prefix() string {
	if len(g.r.groups) < 2 {
		return ""
	}
	return g.label + "/"
}

func (g *group) logPath(name string) string { return filepath.Join(g.dir, name+".log") }

// names returns the names of the nodes at idx, or of all of them.
func (g *group) names(idx ...int) []string {
	var out []string
	for _, n := range g.pick(idx) {
		out = append(out, n.Name)
	}
	return out
}

// pick returns the nodes at idx, or all of them for none.
func (g *group) pick(idx []int) []cluster.Node {
	if len(idx) == 0 {
		return g.nodes
	}
	out := make([]cluster.Node, len(idx))
	for k, i := range idx {
		out[k] = g.nodes[i]
	}
	return out
}

// except returns the indexes of every node but those in idx.
func (g *group) except(idx ...int) []int {
	var out []int
	for i := range g.nodes {
		skip := false
		for _, j := range idx {
			skip = skip || i == j
		}
		if !skip {
			out = append(out, i)
		}
	}
	return out
}

// start starts node i's agent with args, its output appended to its log.
func (g *group) start(i int, args []string) error {
	n := g.nodes[i]
	f, err := os.OpenFile(g.logPath(n.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log file for %s: %w", n.Name, err)
	}
	defer f.Close() // the child has its own copy
	ch, err := g.r.l.Start(n.Name, args, f)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.procs[n.Name] = ch
	g.mu.Unlock()
	return nil
}

// startNew starts node i for the first time, joining the addresses in
// join, with extra agent flags.
func (g *group) startNew(i int, join []string, extra ...string) error {
	return g.start(i, g.nodes[i].AgentArgs("local", "", join, extra...))
}

// restart starts node i again on its data dir, with the flags it saved.
func (g *group) restart(i int) error {
	return g.start(i, []string{"agent", "--data-dir", g.nodes[i].DataDir})
}

func (g *group) proc(i int) *cluster.Child {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.procs[g.nodes[i].Name]
}

// form starts every node, nodes 2..N joining node1, and waits until every
// node sees every node alive. It returns how long that took.
func (g *group) form(extra ...string) (time.Duration, error) {
	t0 := time.Now()
	for i := range g.nodes {
		var join []string
		if i > 0 {
			join = []string{g.nodes[0].Gossip}
		}
		if err := g.startNew(i, join, extra...); err != nil {
			return 0, err
		}
	}
	if err := g.waitAlive(g.all(), g.names(), formTimeout); err != nil {
		return 0, fmt.Errorf("the %d nodes did not all see each other alive: %w", len(g.nodes), err)
	}
	return time.Since(t0), nil
}

func (g *group) all() []int {
	out := make([]int, len(g.nodes))
	for i := range out {
		out[i] = i
	}
	return out
}

// waitAlive waits until every node at idx sees every member in want alive.
func (g *group) waitAlive(idx []int, want []string, timeout time.Duration) error {
	nodes := g.pick(idx)
	return g.waitFor(timeout, func(ctx context.Context) (bool, string) {
		return cluster.AllAlive(ctx, nodes, want)
	})
}

// kill kills node i as kill -9 does and waits until it has exited.
func (g *group) kill(i int) error {
	ch := g.proc(i)
	if err := ch.Kill(); err != nil {
		return err
	}
	return g.awaitExit(ch)
}

// stop stops node i gracefully (SIGTERM: it leaves the cluster) and waits
// until it has exited.
func (g *group) stop(i int) error {
	return g.r.l.Stop(g.proc(i))
}

func (g *group) awaitExit(ch *cluster.Child) error {
	select {
	case <-ch.Done():
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) still runs 10s after it was killed", ch.Name, ch.PID())
	case <-g.r.ctx.Done():
		return g.r.ctx.Err()
	}
}

// close kills every node of the group (its data is thrown away).
func (g *group) close() {
	g.mu.Lock()
	var cs []*cluster.Child
	for _, ch := range g.procs {
		cs = append(cs, ch)
	}
	g.mu.Unlock()
	for _, ch := range cs {
		ch.Kill()
	}
	for _, ch := range cs {
		<-ch.Done()
	}
}

// exited returns an error if a node's process has exited unasked.
func (g *group) exited() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, ch := range g.procs {
		if ch.Exited() && !ch.Stopping() {
			return fmt.Errorf("%s exited unexpectedly (%v)", name, ch.Err())
		}
	}
	return nil
}

// waitFor is cluster.WaitFor that also fails as soon as a node has exited
// unasked.
func (g *group) waitFor(timeout time.Duration, cond func(ctx context.Context) (bool, string)) error {
	var exitErr error
	err := cluster.WaitFor(g.r.ctx, timeout, waitPoll, func(ctx context.Context) (bool, string) {
		if exitErr = g.exited(); exitErr != nil {
			return true, ""
		}
		return cond(ctx)
	})
	if exitErr != nil {
		return exitErr
	}
	return err
}

// client returns a client for node i's API.
func (g *group) client(i int) *api.Client { return cluster.Client(g.nodes[i].API) }

// fmtDur rounds d for people: milliseconds below a second, else 10 ms.
func fmtDur(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
