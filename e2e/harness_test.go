// Package e2e tests peerctl as a user meets it: real `peerctl agent`
// processes of the built binary on loopback, driven only through the
// peerctl command line.
//
// TestMain builds the binary once. Every process a test starts is stopped
// by PID when the test ends, pass or fail: SIGTERM, then SIGKILL after a
// grace period, and always reaped. Tests wait on conditions with
// deadlines, never fixed sleeps. `go test -short` skips the package.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// peerctl is the path of the binary under test, built by TestMain.
var peerctl string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		return 0
	}
	dir, err := os.MkdirTemp("", "peerctl-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	peerctl = filepath.Join(dir, "peerctl")
	// Built without -race even under `go test -race`: race-instrumented
	// agents and clients run several times slower, which the timing
	// deadlines here would then measure. The daemon's own tests run
	// agents in-process under the race detector.
	build := exec.Command("go", "build", "-o", peerctl, ".")
	build.Dir = ".." // the module root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build peerctl: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// Timeouts. They hold on a loaded 2-core CI machine running `go test
// -race ./...`, where several packages' tests run at once.
const (
	cmdTimeout    = 30 * time.Second // one client command
	formTimeout   = 20 * time.Second // a cluster forms, a node rejoins
	detectTimeout = 10 * time.Second // every survivor marks a killed node failed
	syncTimeout   = 15 * time.Second // a value or key list reaches a node
	stopGrace     = 10 * time.Second // SIGTERM before SIGKILL
	poll          = 50 * time.Millisecond
)

// Ports are drawn from below Linux's ephemeral range, so that the local
// port of some outgoing connection cannot take a port between the moment
// it is found free and the moment an agent binds it. handed remembers
// what this process gave out, as a closed port looks free again.
var ports struct {
	mu     sync.Mutex
	handed map[int]bool
}

// freePorts returns n consecutive ports, free on loopback for TCP and UDP
// when checked, and not handed out before by this process.
func freePorts(tb testing.TB, n int) int {
	tb.Helper()
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.handed == nil {
		ports.handed = map[int]bool{}
	}
	const low, high = 20000, 32000
	for range 200 {
		base := low + rand.IntN(high-low-n)
		if portsFree(base, n) {
			for p := base; p < base+n; p++ {
				ports.handed[p] = true
			}
			return base
		}
	}
	tb.Fatalf("no %d consecutive free ports between %d and %d", n, low, high)
	return 0
}

// portsFree checks base..base+n-1; ports.mu is held.
func portsFree(base, n int) bool {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		if ports.handed[p] {
			return false
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		held = append(held, l)
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		held = append(held, u)
	}
	return true
}

// node is one agent's addresses and data dir.
type node struct {
	name, gossip, api, dir string
}

// newNode lays out an agent on two fresh ports with an empty data dir.
func newNode(tb testing.TB, name string) node {
	tb.Helper()
	p := freePorts(tb, 2)
	return node{
		name:   name,
		gossip: net.JoinHostPort("127.0.0.1", strconv.Itoa(p)),
		api:    net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)),
		dir:    filepath.Join(tb.TempDir(), name),
	}
}

// args is the command line that starts n for the first time.
func (n node) args(join ...string) []string {
	a := []string{"agent", "--name", n.name, "--bind", n.gossip, "--api", n.api, "--data-dir", n.dir, "--profile", "local"}
	for _, j := range join {
		a = append(a, "--join", j)
	}
	return a
}

// proc is a running peerctl process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string        // file with its stdout and stderr
	done   chan struct{} // closed once it has exited and been reaped
	err    error         // exit status, set before done is closed
	termed atomic.Bool   // SIGTERM sent: a second one would kill the agent at once
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for p to exit and returns its exit status.
func (p *proc) wait(tb testing.TB, timeout time.Duration) error {
	tb.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		tb.Fatalf("%s (pid %d) still runs after %s", p.name, p.cmd.Process.Pid, timeout)
		return nil
	}
}

// output returns what p has printed so far.
func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// stop stops p by PID, SIGTERM then SIGKILL after stopGrace, and waits
// until it has been reaped.
func (p *proc) stop(tb testing.TB) {
	if p.exited() {
		return
	}
	p.term()
	select {
	case <-p.done:
		return
	case <-time.After(stopGrace):
	}
	tb.Errorf("%s (pid %d) did not stop within %s of SIGTERM; killing it", p.name, p.cmd.Process.Pid, stopGrace)
	p.cmd.Process.Kill()
	<-p.done
}

// term sends SIGTERM once: the agent leaves the cluster and exits.
func (p *proc) term() {
	if !p.termed.Swap(true) {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// started lists each test's processes, oldest first.
var started struct {
	mu     sync.Mutex
	byTest map[testing.TB][]*proc
}

// termAllButOldest sends SIGTERM to every process of the test that still
// runs except the oldest. An agent that leaves waits until its leave has
// been gossiped to a live member: stopped one after another, each waits
// about a second; stopped all at once, the last could wait for peers
// already gone. Keeping one up lets the others leave at once.
func termAllButOldest(tb testing.TB) {
	started.mu.Lock()
	var running []*proc
	for _, p := range started.byTest[tb] {
		if !p.exited() {
			running = append(running, p)
		}
	}
	started.mu.Unlock()
	for i, p := range running {
		if i > 0 {
			p.term()
		}
	}
}

// start runs peerctl with args in the background. The process is stopped
// and reaped when the test ends; if the test failed, its output is logged.
func start(tb testing.TB, name string, args ...string) *proc {
	tb.Helper()
	log := filepath.Join(tb.TempDir(), name+".log")
	f, err := os.Create(log)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(peerctl, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = cleanEnv()
	// Its own process group: a Ctrl-C meant for `go test` is not a
	// signal to the agents; Cleanup stops them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	started.mu.Lock()
	if started.byTest == nil {
		started.byTest = map[testing.TB][]*proc{}
	}
	started.byTest[tb] = append(started.byTest[tb], p)
	started.mu.Unlock()
	tb.Cleanup(func() {
		termAllButOldest(tb)
		p.stop(tb)
		if tb.Failed() {
			tb.Logf("%s (pid %d) output:\n%s", name, cmd.Process.Pid, tail(p.output(), 40))
		}
	})
	return p
}

// cleanEnv is the environment without PEERCTL_* variables, which would
// change the flags of the commands under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEERCTL_") {
			env = append(env, kv)
		}
	}
	return env
}

// result is a finished client command.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// cli runs `peerctl --addr addr args...` to completion.
func cli(tb testing.TB, addr string, args ...string) result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, peerctl, append([]string{"--addr", addr}, args...)...)
	cmd.Env = cleanEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		tb.Fatalf("peerctl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustCLI runs a command that must succeed and returns its stdout.
func mustCLI(tb testing.TB, addr string, args ...string) string {
	tb.Helper()
	r := cli(tb, addr, args...)
	if r.code != 0 {
		tb.Fatalf("peerctl --addr %s %s: %v", addr, strings.Join(args, " "), r)
	}
	return r.stdout
}

// waitUntil polls cond until it holds or timeout passes; the failure
// names what was awaited and cond's last reason.
func waitUntil(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	tb.Helper()
	start := time.Now()
	why := ""
	for {
		ok, w := cond()
		if ok {
			return time.Since(start)
		}
		why = w
		if time.Since(start) > timeout {
			tb.Fatalf("%s: not within %s: %s", what, timeout, why)
		}
		time.Sleep(poll) // a polling interval, not a wait for an outcome
	}
}

// member is a row of `members --json`.
type member struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

// statuses returns each member's status as the node at addr sees it.
func statuses(tb testing.TB, addr string) (map[string]string, error) {
	tb.Helper()
	r := cli(tb, addr, "members", "--json")
	if r.code != 0 {
		return nil, fmt.Errorf("members at %s: %v", addr, r)
	}
	var ms []member
	if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil {
		return nil, fmt.Errorf("members --json at %s: %v", addr, err)
	}
	out := map[string]string{}
	for _, m := range ms {
		out[m.Name] = m.Status
	}
	return out, nil
}

// waitStatus waits until every node in at sees every name in names with
// the status.
func waitStatus(tb testing.TB, timeout time.Duration, at []node, status string, names ...string) time.Duration {
	tb.Helper()
	return waitUntil(tb, timeout, fmt.Sprintf("%v %s to all of %v", names, status, nodeNames(at)), func() (bool, string) {
		for _, n := range at {
			st, err := statuses(tb, n.api)
			if err != nil {
				return false, err.Error()
			}
			for _, name := range names {
				if st[name] != status {
					return false, fmt.Sprintf("%s sees %s as %q", n.name, name, st[name])
				}
			}
		}
		return true, ""
	})
}

func nodeNames(ns []node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.name
	}
	return out
}

// waitValue waits until `get key` at n prints want.
func waitValue(tb testing.TB, n node, key, want string) time.Duration {
	tb.Helper()
	return waitUntil(tb, syncTimeout, fmt.Sprintf("%s=%q at %s", key, want, n.name), func() (bool, string) {
		r := cli(tb, n.api, "get", key)
		if r.code == 0 && r.stdout == want+"\n" {
			return true, ""
		}
		return false, r.String()
	})
}

// keyVersion is a row of `keys --json`.
type keyVersion struct {
	Key     string `json:"key"`
	Version string `json:"version"`
}

// keys returns `keys --json` at n.
func keys(tb testing.TB, n node) ([]keyVersion, error) {
	r := cli(tb, n.api, "keys", "--json")
	if r.code != 0 {
		return nil, fmt.Errorf("keys at %s: %v", n.name, r)
	}
	var ks []keyVersion
	if err := json.Unmarshal([]byte(r.stdout), &ks); err != nil {
		return nil, fmt.Errorf("keys --json at %s: %v", n.name, err)
	}
	return ks, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
