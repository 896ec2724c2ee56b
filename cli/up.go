package cli

import (
	"context"
	"errors"
	"fmt"
	"github.com/peerctl/peerctl/internal/cluster"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// upConvergeTimeout bounds how long `up` waits for every node to see every
// other alive.
const upConvergeTimeout = 30 * time.Second

func upCommand() *cli.Command {
	return &cli.Command{
		Name:     "up",
		Category: catDaemon,
		Usage:    "run a cluster of N daemons on this machine, with their logs, until Ctrl-C",
		UsageText: `peerctl up [-n N] [--dir DIR] [--base-port PORT] [--profile PROFILE] [--encrypt KEY]

Examples:
   peerctl up -n 5
   peerctl up -n 3 --base-port 8000 --dir /tmp/cluster`,
		Description: `Starts N agents as child processes, on loopback (127.0.0.1): node I is named nodeI,
gossips on BASE+2(I-1) and serves its API on the port above, with data dir
DIR/nodeI. Nodes 2..N join node1. With the default --base-port, node1's API
is the address client commands call by default.

It prints how to reach each node once all of them see each other alive,
then streams their logs, each line prefixed by the node's name. A node that
exits (say after "peerctl kill node3") is reported and the others keep
running. Ctrl-C stops them all and exits.

Data dirs are kept: a later "up" with the same --dir restarts the same
nodes with their data.`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Aliases: []string{"n"}, Value: 5, Usage: "number of nodes `N`"},
			&cli.StringFlag{Name: "dir", Value: ".peerctl", Usage: "`DIR` holding each node's data dir, DIR/nodeI"},
			&cli.IntFlag{Name: "base-port", Value: 7946, Usage: "node1's gossip `PORT`; node I uses PORT+2(I-1) and the port above"},
			&cli.StringFlag{Name: "profile", Value: "local", Usage: "gossip timing `PROFILE`: local, lan or wan"},
			&cli.StringFlag{Name: "encrypt", Usage: "base64 gossip encryption `KEY` for every node (make one with `peerctl keygen`)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "the nodes' log `LEVEL`: debug, info, warn or error"},
		},
		Action: runUp,
	}
}

func runUp(c *cli.Context) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	n, base, dir := c.Int("nodes"), c.Int("base-port"), c.String("dir")
	if n < 1 {
		return fmt.Errorf("-n %d: want at least 1 node", n)
	}
	if base < 1 || base+2*n-1 > 65535 {
		return fmt.Errorf("--base-port %d: %d nodes need ports %d..%d, beyond 65535", base, n, base, base+2*n-1)
	}
	nodes := cluster.Layout(n, base, dir)
	if p, err := cluster.BusyPort(base, 2*n); p != 0 {
		return busyPortError(nodes, p, err, n)
	}
	l, err := cluster.NewLauncher()
	if err != nil {
		return err
	}

	out := &cluster.SyncWriter{W: c.App.Writer}
	color := isTerminal(c.App.Writer)
	say := func(format string, args ...any) {
		fmt.Fprintf(out, "%s %s\n", paint(color, colorBold, "up   |"), fmt.Sprintf(format, args...))
	}
	u := &upCluster{l: l, nodes: nodes, out: out, color: color, say: say, encrypt: c.String("encrypt")}
	defer func() {
		n := u.running()
		say("stopping %d %s", n, plural(n, "node"))
		if err := l.StopAll(); err != nil {
			say("%v", err)
		}
		u.closeLogs()
	}()

	say("starting %d %s in %s (profile %s)", n, plural(n, "node"), dir, c.String("profile"))
	start := time.Now()
	for i, nd := range nodes {
		var join []string
		if i > 0 {
			join = []string{nodes[0].Gossip}
		}
		args := nd.AgentArgs(c.String("profile"), u.encrypt, join, "--log-level", c.String("log-level"))
		if err := u.start(i, args); err != nil {
			return err
		}
	}

	names := make([]string, n)
	for i, nd := range nodes {
		names[i] = nd.Name
	}
	err = cluster.WaitFor(c.Context, upConvergeTimeout, 100*time.Millisecond, func(ctx context.Context) (bool, string) {
		if u.exited() != "" {
			return true, "" // reported below
		}
		return cluster.AllAlive(ctx, nodes, names)
	})
	if nd := u.exited(); nd != "" {
		return fmt.Errorf("%s exited while starting: %s", nd, u.lastLine(nd))
	}
	if c.Context.Err() != nil {
		return nil // Ctrl-C while starting
	}
	if err != nil {
		return fmt.Errorf("cluster did not form: %w", err)
	}
	took := time.Since(start).Round(10 * time.Millisecond)
	if n == 1 {
		say("node1 is up after %s", took)
	} else {
		say("all %d nodes see each other alive after %s", n, took)
	}
	u.printHelp(c.String("encrypt") != "")

	// From now on a node that exits is news, not an error.
	u.watch()
	select {
	case <-c.Context.Done():
		return nil
	case <-u.allDone:
		return errors.New("every node has exited")
	}
}

// upCluster is the state of one `peerctl up`.
type upCluster struct {
	l       *cluster.Launcher
	nodes   []cluster.Node
	out     io.Writer
	color   bool
	encrypt string
	say     func(format string, args ...any)

	children []*cluster.Child // by node index; written before watch starts
	logs     []*cluster.LineWriter

	mu   sync.Mutex
	last map[string]string // guarded by mu: each node's last log line

	allDone chan struct{} // closed by watch when every child has exited
}

// start starts node i with args, its log lines prefixed with its name.
func (u *upCluster) start(i int, args []string) error {
	nd := u.nodes[i]
	prefix := paint(u.color, nodeColors[i%len(nodeColors)], fmt.Sprintf("%-5s|", nd.Name))
	lw := &cluster.LineWriter{Fn: func(line string) {
		u.mu.Lock()
		if u.last == nil {
			u.last = map[string]string{}
		}
		u.last[nd.Name] = line
		u.mu.Unlock()
		fmt.Fprintf(u.out, "%s %s\n", prefix, line)
	}}
	ch, err := u.l.Start(nd.Name, args, lw)
	if err != nil {
		return err
	}
	u.children = append(u.children, ch)
	u.logs = append(u.logs, lw)
	return nil
}

// exited returns the name of a child that has exited, or "".
func (u *upCluster) exited() string {
	for _, ch := range u.children {
		select {
		case <-ch.Done():
			return ch.Name
		default:
		}
	}
	return ""
}

func (u *upCluster) lastLine(name string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if l := u.last[name]; l != "" {
		return l
	}
	return "(no output)"
}

func (u *upCluster) running() int {
	n := 0
	for _, ch := range u.children {
		select {
		case <-ch.Done():
		default:
			n++
		}
	}
	return n
}

func (u *upCluster) closeLogs() {
	for _, lw := range u.logs {
		lw.Close()
	}
}

// watch reports each child that exits without being asked to, and closes
// allDone once all have exited.
func (u *upCluster) watch() {
	u.allDone = make(chan struct{})
	var wg sync.WaitGroup
	for i, ch := range u.children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := ch.Err()
			if ch.Stopping() {
				return
			}
			how := "with status 0"
			if err != nil {
				how = err.Error()
			}
			hint := "peerctl agent --data-dir " + u.nodes[i].DataDir
			if u.encrypt != "" {
				hint += " --encrypt KEY"
			}
			u.say("%s (pid %d) exited: %s. The others keep running; bring it back from another terminal: %s",
				ch.Name, ch.PID(), how, hint)
		}()
	}
	go func() {
		wg.Wait()
		close(u.allDone)
	}()
}

// printHelp prints how to reach each node and what to try.
func (u *upCluster) printHelp(encrypted bool) {
	var b strings.Builder
	tw := newTable(&b)
	fmt.Fprintln(tw, "NAME\tGOSSIP\tAPI\tDATA DIR\tPID")
	for i, nd := range u.nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", nd.Name, nd.Gossip, nd.API, nd.DataDir, u.children[i].PID())
	}
	tw.Flush()

	addr := ""
	if u.nodes[0].API != DefaultAddr {
		addr = " --addr " + u.nodes[0].API
	}
	other := u.nodes[0]
	if len(u.nodes) > 1 {
		other = u.nodes[1]
	}
	victim := u.nodes[len(u.nodes)-1]
	if len(u.nodes) >= 3 {
		victim = u.nodes[2]
	}
	restart := "peerctl agent --data-dir " + victim.DataDir
	if encrypted {
		restart += " --encrypt KEY"
	}
	tw = newTable(&b)
	fmt.Fprintf(&b, "\nTry, in another terminal:\n")
	fmt.Fprintf(tw, "  peerctl%s members\t# the cluster as %s sees it\n", addr, u.nodes[0].Name)
	fmt.Fprintf(tw, "  peerctl%s put greeting hello\t# write at %s; it spreads to all\n", addr, u.nodes[0].Name)
	fmt.Fprintf(tw, "  peerctl --addr %s get greeting\t# read it at %s\n", other.API, other.Name)
	fmt.Fprintf(tw, "  peerctl%s get --all greeting\t# every node's copy\n", addr)
	fmt.Fprintf(tw, "  peerctl%s kill %s\t# %s dies as with kill -9; watch the others mark it failed\n", addr, victim.Name, victim.Name)
	fmt.Fprintf(tw, "  %s\t# bring %s back with its data (it then runs in that terminal)\n", restart, victim.Name)
	fmt.Fprintf(tw, "  peerctl%s watch --cluster\t# every node's events as they happen\n", addr)
	tw.Flush()
	fmt.Fprintf(&b, "Dashboard: %s (served by every node; this is %s's view)\n", dashboardURL(u.nodes[0].API), u.nodes[0].Name)
	fmt.Fprintf(&b, "Ctrl-C here stops the nodes this command started.\n")
	fmt.Fprint(u.out, b.String())
}

// busyPortError says which node's port is taken and suggests a free
// --base-port.
func busyPortError(nodes []cluster.Node, port int, err error, n int) error {
	what := ""
	for _, nd := range nodes {
		switch cluster.Loopback(port) {
		case nd.Gossip:
			what = nd.Name + " gossip"
		case nd.API:
			what = nd.Name + " API"
		}
	}
	why := "in use"
	if !errors.Is(err, syscall.EADDRINUSE) {
		why = err.Error()
	}
	msg := fmt.Sprintf("port %d (%s) is busy (%s): is another cluster running?", port, what, why)
	for base := port + 1; base+2*n-1 <= 65535 && base < port+2000; base++ {
		if p, _ := cluster.BusyPort(base, 2*n); p == 0 {
			return fmt.Errorf("%s stop it, or use another range: --base-port %d", msg, base)
		}
	}
	return fmt.Errorf("%s stop it, or pick another range with --base-port", msg)
}

// Terminal colors (ANSI SGR codes).
const (
	colorBold = "1"
)

var nodeColors = []string{"36", "33", "35", "32", "34", "96", "93", "95", "92", "94"}

// paint wraps s in an ANSI color if on.
func paint(on bool, code, s string) string {
	if !on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// isTerminal reports whether w is a terminal that takes colors.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
