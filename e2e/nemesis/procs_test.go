package nemesis

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/peerctl/peerctl/e2e/internal/procs"
	"github.com/peerctl/peerctl/internal/api"
	launch "github.com/peerctl/peerctl/internal/cluster"
)

// Timeouts. They hold on a loaded 2-core CI machine running `go test -race
// ./...`, with other packages' tests running at the same time. procs has
// the timeouts of one client command and of stopping a daemon.
const (
	readyTimeout = 20 * time.Second // a started daemon serves its API
	formTimeout  = 30 * time.Second // five daemons see each other alive
	killTimeout  = 10 * time.Second // a killed daemon has exited
	apiTimeout   = 5 * time.Second  // one control call (faults, check, members)
	poll         = 100 * time.Millisecond
)

// proc is one run of a peerctl process.
type proc struct {
	*procs.Proc
	killed atomic.Bool // the nemesis killed it: its death is expected
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
func (a *agent) running() bool { return !a.current().Exited() }

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
	token  string // API token the daemons want, if any (netns_test.go)

	mu         sync.Mutex // guards unexpected
	unexpected []string   // deaths nobody asked for
}

// emptyCluster returns a cluster with no agents yet, under a fresh root,
// calling the API with hc and token. When the test ends every process it
// started is stopped and reaped, and none of them may remain.
func emptyCluster(tb testing.TB, hc *http.Client, token string) *cluster {
	tb.Helper()
	c := &cluster{tb: tb, root: tb.TempDir(), hc: hc, start: time.Now(), token: token}
	// Registered first, so it runs last: after every process has been
	// stopped, none of this test's may remain.
	tb.Cleanup(func() {
		if left := procs.Leftovers(c.root); len(left) > 0 {
			tb.Errorf("processes still running after stopping the cluster: %s", strings.Join(left, ", "))
			for _, pid := range left {
				if p, err := strconv.Atoi(pid); err == nil {
					syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
	})
	tb.Cleanup(c.stopAll)
	return c
}

// newCluster lays out n agents n1..nN on fresh ports and starts them: n1
// first, the others joining it. It returns once every agent sees every
// other alive. Every process is stopped and reaped when the test ends.
func newCluster(tb testing.TB, n int, seed uint64) *cluster {
	tb.Helper()
	c := emptyCluster(tb, &http.Client{Timeout: apiTimeout}, "")
	for i := range n {
		p := procs.FreePorts(tb, 2)
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
	took, err := c.waitFormed()
	if err != nil {
		tb.Fatalf("cluster did not form: %v", err)
	}
	tb.Logf("%d daemons formed a cluster in %s", n, took.Round(time.Millisecond))
	return c
}

// waitFormed waits until every agent serves its API and then until every
// agent sees every other alive (for at most formTimeout), and returns how
// long the second took.
func (c *cluster) waitFormed() (time.Duration, error) {
	for _, a := range c.agents {
		if err := c.waitReady(a); err != nil {
			return 0, err
		}
	}
	return c.waitAllAlive(formTimeout)
}

// since is the time since the cluster was created, for logs and history.
func (c *cluster) since() time.Duration { return time.Since(c.start) }

// run starts a process of the agent with args.
func (c *cluster) run(a *agent, args ...string) *proc {
	c.tb.Helper()
	return c.runIn(a, "", args...)
}

// runIn is run with the process inside network namespace ns ("": the
// test's own).
func (c *cluster) runIn(a *agent, ns string, args ...string) *proc {
	c.tb.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	n := len(a.procs) + 1
	p := &proc{}
	name, log := fmt.Sprintf("%s#%d", a.name, n), filepath.Join(c.root, fmt.Sprintf("%s.%d.log", a.name, n))
	exited := func(q *launch.Child, err error) {
		if !p.killed.Load() && !q.Termed() {
			c.mu.Lock()
			c.unexpected = append(c.unexpected, fmt.Sprintf("%s (pid %d) exited at +%s: %v", q.Name, q.PID(), c.since().Round(time.Millisecond), err))
			c.mu.Unlock()
		}
	}
	if ns == "" {
		p.Proc = peerctl.Start(c.tb, name, log, exited, args...)
	} else {
		p.Proc = peerctl.StartIn(c.tb, ns, name, log, exited, args...)
	}
	a.procs = append(a.procs, p)
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
	err := launch.WaitFor(context.Background(), readyTimeout, poll, func(ctx context.Context) (bool, string) {
		if p.Exited() {
			return true, ""
		}
		ctx, cancel := context.WithTimeout(ctx, apiTimeout)
		info, err := c.client(a).Info(ctx, "")
		cancel()
		if err != nil {
			return false, err.Error()
		}
		return info.PID == p.PID(), fmt.Sprintf("pid %d serves it", info.PID)
	})
	if p.Exited() {
		return fmt.Errorf("%s (pid %d) exited before it served: %v\n%s", p.Name, p.PID(), p.Err(), procs.Tail(p.Output(), 20))
	}
	if err != nil {
		return fmt.Errorf("%s (pid %d) does not serve its API at %s: %w", p.Name, p.PID(), a.api, err)
	}
	return nil
}

// kill crash-stops the agent's process, by PID with SIGKILL or, if viaAPI,
// through another running node's API (peerctl kill), and waits until it
// has been reaped.
func (c *cluster) kill(a *agent, via *agent) error {
	p := a.current()
	if p.Exited() {
		return fmt.Errorf("%s is not running", a.name)
	}
	p.killed.Store(true)
	if via == nil {
		if err := p.Kill(); err != nil {
			return fmt.Errorf("kill %s (pid %d): %w", a.name, p.PID(), err)
		}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		err := c.client(via).Kill(ctx, a.name)
		cancel()
		if err != nil {
			// The request may not have reached it: make sure it dies.
			p.Kill()
		}
	}
	select {
	case <-p.Done():
	case <-time.After(killTimeout):
		return fmt.Errorf("%s (pid %d) still runs %s after kill", a.name, p.PID(), killTimeout)
	}
	if !p.DiedBySIGKILL() {
		return fmt.Errorf("%s (pid %d) exit status %v; want killed by SIGKILL", a.name, p.PID(), p.Err())
	}
	return nil
}

// stopAll stops every running process: all but the first running one with
// SIGTERM at once (each leaves through a peer still up), then the rest.
func (c *cluster) stopAll() {
	var running []*proc
	for _, a := range c.agents {
		for _, p := range a.all() {
			if !p.Exited() {
				running = append(running, p)
			}
		}
	}
	for i, p := range running {
		if i > 0 {
			p.Term()
		}
	}
	for i := len(running) - 1; i >= 0; i-- {
		running[i].Stop(c.tb)
	}
	if c.tb.Failed() {
		for _, a := range c.agents {
			for _, p := range a.all() {
				c.tb.Logf("%s (pid %d) log %s, last lines:\n%s", p.Name, p.PID(), p.Log, procs.Tail(p.Output(), 30))
			}
		}
	}
}

// client returns a control client for the agent's API.
func (c *cluster) client(a *agent) *api.Client {
	return api.NewClientWith(a.api, c.hc)
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
	return procs.WaitFor(timeout, poll, c.allAlive)
}

// unexpectedDeaths lists processes that exited without the nemesis or the
// test stopping them.
func (c *cluster) unexpectedDeaths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.unexpected...)
}
