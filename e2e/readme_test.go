package e2e

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/e2e/internal/procs"
)

// readmeCommand is one command line of a README code block.
type readmeCommand struct {
	line   string   // as written, without its comment
	args   []string // after "peerctl"
	expect string   // from a "# -> TEXT" comment: stdout must contain TEXT
}

// readmeBlocks returns the command lines of the ```sh blocks under the
// README.md heading that starts with section. A line "a | b" of two
// peerctl commands (the README's "either") is two commands.
func readmeBlocks(tb testing.TB, section string) []readmeCommand {
	tb.Helper()
	f, err := os.Open(filepath.Join("..", "README.md"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []readmeCommand
	in, block := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = strings.HasPrefix(line, "## "+section)
		case in && strings.HasPrefix(line, "```"):
			block = !block
		case in && block:
			cmd, comment, _ := strings.Cut(line, "#")
			cmd = strings.TrimSpace(cmd)
			if cmd == "" {
				continue
			}
			expect := ""
			if c := strings.TrimSpace(comment); strings.HasPrefix(c, "-> ") {
				expect, _, _ = strings.Cut(strings.TrimPrefix(c, "-> "), ":")
			}
			for _, part := range strings.Split(cmd, " | ") {
				fields := strings.Fields(part)
				if len(fields) < 2 || fields[0] != "peerctl" {
					tb.Fatalf("README %q block: %q is not a peerctl command", section, part)
				}
				out = append(out, readmeCommand{line: strings.TrimSpace(part), args: fields[1:], expect: expect})
			}
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(out) == 0 {
		tb.Fatalf("README.md has no commands under %q", section)
	}
	return out
}

// readmeWorld runs README command lines against real processes. The
// README's addresses (127.0.0.1:79xx) become free ports, its /tmp/pc data
// dirs a temporary directory, and the CLI's default address (n1's API,
// 127.0.0.1:7947) is passed as PEERCTL_ADDR; the lines are otherwise run
// as written.
type readmeWorld struct {
	t     *testing.T
	base  int    // 7946 maps to base
	dir   string // /tmp/pc maps to dir
	nodes map[string]node
	procs map[string]*procs.Proc
}

var readmeAddr = regexp.MustCompile(`127\.0\.0\.1:(79[0-9][0-9])`)

func (w *readmeWorld) mapArg(a string) string {
	a = readmeAddr.ReplaceAllStringFunc(a, func(m string) string {
		p, _ := strconv.Atoi(m[len("127.0.0.1:"):])
		return "127.0.0.1:" + strconv.Itoa(w.base+p-7946)
	})
	return strings.Replace(a, "/tmp/pc", w.dir, 1)
}

// run runs one command line. An agent line starts a daemon in the
// background and waits until it is alive to every running node; a client
// command must exit 0 (read-only ones are retried until they do, as a
// person would look again) and print what a "# -> TEXT" comment says.
func (w *readmeWorld) run(c readmeCommand) {
	t := w.t
	t.Helper()
	args := make([]string, len(c.args))
	for i, a := range c.args {
		args[i] = w.mapArg(a)
	}
	if args[0] == "agent" {
		w.startAgent(c, args)
		return
	}
	readOnly := map[string]bool{"members": true, "get": true, "keys": true, "info": true, "faults": true, "check": true}[commandOf(c.args)]
	timeout := syncTimeout // a read may wait for replication
	if !readOnly {
		timeout = 0 // a write runs once
	}
	var r procs.Result
	if _, err := procs.WaitFor(timeout, poll, func() (bool, string) {
		r = w.cli(args)
		return r.Code == 0 && strings.Contains(r.Stdout, c.expect), r.String()
	}); err != nil {
		t.Fatalf("README line %q: %v; want exit 0 and stdout containing %q", c.line, r, c.expect)
	}
	t.Logf("%s\n%s", c.line, r.Stdout)
	if commandOf(c.args) == "kill" {
		name := c.args[len(c.args)-1]
		if p := w.procs[name]; p != nil {
			p.Wait(t, 5*time.Second)
			if !p.DiedBySIGKILL() {
				t.Fatalf("README line %q: %s did not die by SIGKILL", c.line, name)
			}
		}
	}
}

// commandOf is the command name in args, after any global flags.
func commandOf(args []string) string {
	for i := 0; i < len(args); i++ {
		if args[i] == "--addr" {
			i++
			continue
		}
		if !strings.HasPrefix(args[i], "-") {
			return args[i]
		}
	}
	return ""
}

func (w *readmeWorld) startAgent(c readmeCommand, args []string) {
	t := w.t
	t.Helper()
	var name, dir string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--name":
			name = args[i+1]
		case "--data-dir":
			dir = args[i+1]
		}
	}
	if name == "" {
		name = filepath.Base(dir) // restarted from its data dir: README's dirs are named after nodes
	}
	n, ok := w.nodes[name]
	if !ok {
		n = node{name: name, dir: dir}
		for i := 0; i+1 < len(args); i++ {
			switch args[i] {
			case "--bind":
				n.gossip = args[i+1]
			case "--api":
				n.api = args[i+1]
			}
		}
		w.nodes[name] = n
	}
	w.procs[name] = start(t, name, args...)
	var running []node
	var names []string
	for nm, p := range w.procs {
		if !p.Exited() {
			running = append(running, w.nodes[nm])
			names = append(names, nm)
		}
	}
	took := waitStatus(t, formTimeout, running, "alive", names...)
	t.Logf("%s\n(%s alive to all after %s)", c.line, name, took)
}

// cli runs `peerctl args...` with PEERCTL_ADDR set to n1's API, as the
// default address 127.0.0.1:7947 would be.
func (w *readmeWorld) cli(args []string) procs.Result {
	w.t.Helper()
	return procs.Run(w.t, time.Minute, append(procs.CleanEnv(), "PEERCTL_ADDR="+w.mapArg("127.0.0.1:7947")), peerctl.Path, args...)
}

// TestREADMECommands runs the command lines of README.md's "Manual use"
// and "Breaking things on purpose" blocks, read from README.md itself so
// the README cannot drift from what peerctl does: flags after arguments
// (`get greeting --all`) included. "Breaking things" starts n4 and n5
// itself: a reader following the README word for word has five nodes.
func TestREADMECommands(t *testing.T) {
	t.Parallel()
	w := &readmeWorld{t: t, base: procs.FreePorts(t, 10), dir: t.TempDir(),
		nodes: map[string]node{}, procs: map[string]*procs.Proc{}}
	for _, c := range readmeBlocks(t, "Manual use") {
		w.run(c)
	}
	for _, c := range readmeBlocks(t, "Breaking things") {
		w.run(c)
	}
}
