package nemesis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
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

	"github.com/peerctl/peerctl/daemon"
)

// Timeouts. They hold on a loaded 2-core CI machine running `go test -race
// ./...`, with other packages' tests running at the same time.
const (
	readyTimeout = 20 * time.Second // a started daemon serves its API
	formTimeout  = 30 * time.Second // five daemons see each other alive
	killTimeout  = 10 * time.Second // a killed daemon has exited
	stopGrace    = 10 * time.Second // SIGTERM before SIGKILL
	apiTimeout   = 5 * time.Second  // one control call (faults, check, members)
	poll         = 100 * time.Millisecond
)

// Ports are drawn from below Linux's ephemeral range, so that an outgoing
// connection's local port cannot take one between the check and the bind.
// handed remembers what this process gave out, as a closed port looks free
// again. (The same scheme as e2e/harness_test.go.)
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

// proc is one run of a peerctl process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	log     string        // file with its stdout and stderr
	done    chan struct{} // closed once it has exited and been reaped
	err     error         // exit status, set before done is closed
	started time.Time
	exitAt  time.Time   // set before done is closed
	killed  atomic.Bool // the nemesis killed it: its death is expected
	termed  atomic.Bool // the test stopped it: SIGTERM sent
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// output returns what p has printed so far.
func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// term sends SIGTERM once: the agent leaves the cluster and exits. A
// second SIGTERM would make it exit at once.
func (p *proc) term() {
	if !p.termed.Swap(true) {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
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
	tb.Errorf("%s (pid %d) did not stop within %s of SIGTERM; killing it", p.name, p.pid(), stopGrace)
	p.cmd.Process.Kill()
	<-p.done
}

// diedBySIGKILL reports whether p exited from SIGKILL.
func (p *proc) diedBySIGKILL() bool {
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// agent is one member of the test cluster across its restarts: fixed name,
// ports and data dir, and the processes that ran it.
type agent struct {
	name, gossip, api, dir string
	seed                   uint64 // --fault-seed

	mu    sync.Mutex // guards procs
	procs []*proc    // every run, oldest first
}

// current returns the latest process.
func (a *agent) current() *proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.procs[len(a.procs)-1]
}

// running reports whether the latest process has not exited.
func (a *agent) running() bool { return !a.current().exited() }

// all returns every process that ran the agent.
func (a *agent) all() []*proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*proc(nil), a.procs...)
}

// cluster is a test's daemons. Its methods are safe for concurrent use.
type cluster struct {
	tb     testing.TB
	root   string // every data dir and log is under it
	agents []*agent
	hc     *http.Client // control calls
	start  time.Time

	mu         sync.Mutex // guards unexpected
	unexpected []string   // deaths nobody asked for
}

// newCluster lays out n agents n1..nN on fresh ports and starts them: n1
// first, the others joining it. It returns once every agent sees every
// other alive. Every process is stopped and reaped when the test ends.
func newCluster(tb testing.TB, n int, seed uint64) *cluster {
	tb.Helper()
	c := &cluster{tb: tb, root: tb.TempDir(), hc: &http.Client{Timeout: apiTimeout}, start: time.Now()}
	// Registered first, so it runs last: after every process has been
	// stopped, none of this test's may remain.
	tb.Cleanup(func() {
		if left := leftovers(c.root); len(left) > 0 {
			tb.Errorf("processes still running after stopping the cluster: %s", strings.Join(left, ", "))
			for _, pid := range left {
				if p, err := strconv.Atoi(pid); err == nil {
					syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
	})
	tb.Cleanup(c.stopAll)
	for i := range n {
		p := freePorts(tb, 2)
		c.agents = append(c.agents, &agent{
			name:   fmt.Sprintf("n%d", i+1),
			gossip: net.JoinHostPort("127.0.0.1", strconv.Itoa(p)),
			api:    net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)),
			dir:    filepath.Join(c.root, fmt.Sprintf("n%d", i+1)),
			seed:   seed + uint64(i) + 1,
		})
	}
	for i, a := range c.agents {
		args := []string{"agent", "--name", a.name, "--bind", a.gossip, "--api", a.api,
			"--data-dir", a.dir, "--profile", "local", "--fault-seed", strconv.FormatUint(a.seed, 10)}
		if i > 0 {
			args = append(args, "--join", c.agents[0].gossip)
		}
		c.run(a, args...)
	}
	for _, a := range c.agents {
		if err := c.waitReady(a); err != nil {
			tb.Fatal(err)
		}
	}
	took, err := c.waitAllAlive(formTimeout)
	if err != nil {
		tb.Fatalf("cluster did not form: %v", err)
	}
	tb.Logf("%d daemons formed a cluster in %s", n, took.Round(time.Millisecond))
	return c
}

// since is the time since the cluster was created, for logs and history.
func (c *cluster) since() time.Duration { return time.Since(c.start) }

// run starts a process of the agent with args.
func (c *cluster) run(a *agent, args ...string) *proc {
	c.tb.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	log := filepath.Join(c.root, fmt.Sprintf("%s.%d.log", a.name, len(a.procs)+1))
	f, err := os.Create(log)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(peerctl, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = cleanEnv()
	// Its own process group: a Ctrl-C meant for `go test` is not a signal
	// to the agents; cleanup stops them by PID.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.tb.Fatalf("start %s: %v", a.name, err)
	}
	p := &proc{name: fmt.Sprintf("%s#%d", a.name, len(a.procs)+1), cmd: cmd, log: log, done: make(chan struct{}), started: time.Now()}
	a.procs = append(a.procs, p)
	go func() {
		p.err = cmd.Wait()
		p.exitAt = time.Now()
		if !p.killed.Load() && !p.termed.Load() {
			c.mu.Lock()
			c.unexpected = append(c.unexpected, fmt.Sprintf("%s (pid %d) exited at +%s: %v", p.name, p.pid(), c.since().Round(time.Millisecond), p.err))
			c.mu.Unlock()
		}
		close(p.done)
	}()
	return p
}

// restart starts the agent again from its data dir alone, as a user does
// after a crash, and waits until it serves.
func (c *cluster) restart(a *agent) error {
	c.run(a, "agent", "--data-dir", a.dir)
	return c.waitReady(a)
}

// waitReady waits until the agent's latest process serves its API.
func (c *cluster) waitReady(a *agent) error {
	p := a.current()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		info, err := c.client(a).Info(ctx, "")
		cancel()
		if err == nil && info.PID == p.pid() {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s (pid %d) exited before it served: %v\n%s", p.name, p.pid(), p.err, tail(p.output(), 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) does not serve its API at %s after %s: %v", p.name, p.pid(), a.api, readyTimeout, err)
		}
		time.Sleep(poll) // a polling interval
	}
}

// kill crash-stops the agent's process, by PID with SIGKILL or, if viaAPI,
// through another running node's API (peerctl kill), and waits until it
// has been reaped.
func (c *cluster) kill(a *agent, via *agent) error {
	p := a.current()
	if p.exited() {
		return fmt.Errorf("%s is not running", a.name)
	}
	p.killed.Store(true)
	if via == nil {
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill %s (pid %d): %w", a.name, p.pid(), err)
		}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		err := c.client(via).Kill(ctx, a.name)
		cancel()
		if err != nil {
			// The request may not have reached it: make sure it dies.
			p.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	select {
	case <-p.done:
	case <-time.After(killTimeout):
		return fmt.Errorf("%s (pid %d) still runs %s after kill", a.name, p.pid(), killTimeout)
	}
	if !p.diedBySIGKILL() {
		return fmt.Errorf("%s (pid %d) exit status %v; want killed by SIGKILL", a.name, p.pid(), p.err)
	}
	return nil
}

// stopAll stops every running process: all but the first running one with
// SIGTERM at once (each leaves through a peer still up), then the rest.
func (c *cluster) stopAll() {
	var running []*proc
	for _, a := range c.agents {
		for _, p := range a.all() {
			if !p.exited() {
				running = append(running, p)
			}
		}
	}
	for i, p := range running {
		if i > 0 {
			p.term()
		}
	}
	for i := len(running) - 1; i >= 0; i-- {
		running[i].stop(c.tb)
	}
	if c.tb.Failed() {
		for _, a := range c.agents {
			for _, p := range a.all() {
				c.tb.Logf("%s (pid %d) log %s, last lines:\n%s", p.name, p.pid(), p.log, tail(p.output(), 30))
			}
		}
	}
}

// client returns a control client for the agent's API.
func (c *cluster) client(a *agent) *daemon.Client {
	return daemon.NewClientWith(a.api, c.hc)
}

// running returns the agents whose latest process runs.
func (c *cluster) running() []*agent {
	var out []*agent
	for _, a := range c.agents {
		if a.running() {
			out = append(out, a)
		}
	}
	return out
}

// byName returns the agent called name.
func (c *cluster) byName(name string) *agent {
	for _, a := range c.agents {
		if a.name == name {
			return a
		}
	}
	return nil
}

// allAlive reports whether every agent runs and sees every agent alive,
// and if not, why.
func (c *cluster) allAlive() (bool, string) {
	for _, a := range c.agents {
		if !a.running() {
			return false, a.name + " is not running"
		}
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		ms, err := c.client(a).Members(ctx, "")
		cancel()
		if err != nil {
			return false, fmt.Sprintf("members at %s: %v", a.name, err)
		}
		st := map[string]string{}
		for _, m := range ms {
			st[m.Name] = m.Status
		}
		for _, b := range c.agents {
			if st[b.name] != "alive" {
				return false, fmt.Sprintf("%s sees %s as %q", a.name, b.name, st[b.name])
			}
		}
	}
	return true, ""
}

// waitAllAlive polls allAlive until it holds or timeout passes.
func (c *cluster) waitAllAlive(timeout time.Duration) (time.Duration, error) {
	return waitFor(timeout, c.allAlive)
}

// unexpectedDeaths lists processes that exited without the nemesis or the
// test stopping them.
func (c *cluster) unexpectedDeaths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.unexpected...)
}

// waitFor polls cond until it holds or timeout passes, and returns how
// long it took, or an error with cond's last reason.
func waitFor(timeout time.Duration, cond func() (bool, string)) (time.Duration, error) {
	start := time.Now()
	for {
		ok, why := cond()
		if ok {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("not within %s: %s", timeout, why)
		}
		time.Sleep(poll) // a polling interval, not a wait for an outcome
	}
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

// tail returns the last n lines of s.
func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
