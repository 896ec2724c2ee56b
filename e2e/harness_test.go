// Package e2e tests peerctl as a user meets it: real `peerctl agent`
// processes of the built binary on loopback, driven only through the
// peerctl command line.
//
// TestMain builds the binary once. Every process a test starts is stopped
// by PID when the test ends, pass or fail: SIGTERM, then SIGKILL after a
// grace period, and always reaped; TestMain then checks with pgrep that
// none is left. Tests wait on conditions with deadlines, never fixed
// sleeps. `go test -short` skips the package. The process harness is
// shared with e2e/nemesis, in e2e/internal/procs.
package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/peerctl/peerctl/e2e/internal/procs"
)

// peerctl is the binary under test, built by TestMain.
var peerctl *procs.Binary

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		os.Exit(0)
	}
	os.Exit(procs.Main(m, "e2e", "..", &peerctl))
}

// Timeouts. They hold on a loaded 2-core CI machine running `go test
// -race ./...`, where several packages' tests run at once. procs has the
// timeouts of one client command and of stopping an agent.
const (
	formTimeout   = 20 * time.Second // a cluster forms, a node rejoins
	detectTimeout = 10 * time.Second // every survivor marks a killed node failed
	syncTimeout   = 15 * time.Second // a value or key list reaches a node
	poll          = 50 * time.Millisecond
)

// node is one agent's addresses and data dir.
type node struct {
	name, gossip, api, dir string
}

// newNode lays out an agent on two fresh ports with an empty data dir.
func newNode(tb testing.TB, name string) node {
	tb.Helper()
	p := procs.FreePorts(tb, 2)
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

// started lists each test's processes, oldest first.
var started struct {
	mu     sync.Mutex
	byTest map[testing.TB][]*procs.Proc
}

// termAllButOldest sends SIGTERM to every process of the test that still
// runs except the oldest. An agent that leaves waits until its leave has
// been gossiped to a live member: stopped one after another, each waits
// about a second; stopped all at once, the last could wait for peers
// already gone. Keeping one up lets the others leave at once.
func termAllButOldest(tb testing.TB) {
	started.mu.Lock()
	var running []*procs.Proc
	for _, p := range started.byTest[tb] {
		if !p.Exited() {
			running = append(running, p)
		}
	}
	started.mu.Unlock()
	for i, p := range running {
		if i > 0 {
			p.Term()
		}
	}
}

// start runs peerctl with args in the background. The process is stopped
// and reaped when the test ends; if the test failed, its output is logged.
func start(tb testing.TB, name string, args ...string) *procs.Proc {
	tb.Helper()
	p := peerctl.Start(tb, name, filepath.Join(tb.TempDir(), name+".log"), nil, args...)
	started.mu.Lock()
	if started.byTest == nil {
		started.byTest = map[testing.TB][]*procs.Proc{}
	}
	started.byTest[tb] = append(started.byTest[tb], p)
	started.mu.Unlock()
	tb.Cleanup(func() {
		termAllButOldest(tb)
		p.Stop(tb)
		if tb.Failed() {
			tb.Logf("%s (pid %d) output:\n%s", name, p.PID(), procs.Tail(p.Output(), 40))
		}
	})
	return p
}

// waitUntil polls cond until it holds or timeout passes; the failure
// names what was awaited and cond's last reason.
// startJoined starts n agents named PREFIX1..PREFIXn, each after the
// first joining the first, and returns them; it does not wait for them.
func startJoined(tb testing.TB, prefix string, n int) []node {
	tb.Helper()
	ns := make([]node, n)
	for i := range ns {
		ns[i] = newNode(tb, fmt.Sprintf("%s%d", prefix, i+1))
	}
	for i, nd := range ns {
		var join []string
		if i > 0 {
			join = []string{ns[0].gossip}
		}
		start(tb, nd.name, nd.args(join...)...)
	}
	return ns
}

func waitUntil(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	tb.Helper()
	took, err := procs.WaitFor(timeout, poll, cond)
	if err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
	return took
}

// waitStatus waits until every node in at sees every name in names with
// the status.
func waitStatus(tb testing.TB, timeout time.Duration, at []node, status string, names ...string) time.Duration {
	tb.Helper()
	return waitUntil(tb, timeout, fmt.Sprintf("%v %s to all of %v", names, status, nodeNames(at)), func() (bool, string) {
		for _, n := range at {
			ms, err := peerctl.Members(tb, n.api)
			if err != nil {
				return false, err.Error()
			}
			for _, name := range names {
				if st := ms[name].Status; st != status {
					return false, fmt.Sprintf("%s sees %s as %q", n.name, name, st)
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
		r := peerctl.CLI(tb, n.api, "get", key)
		if r.Code == 0 && r.Stdout == want+"\n" {
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
	r := peerctl.CLI(tb, n.api, "keys", "--json")
	if r.Code != 0 {
		return nil, fmt.Errorf("keys at %s: %v", n.name, r)
	}
	var ks []keyVersion
	if err := json.Unmarshal([]byte(r.Stdout), &ks); err != nil {
		return nil, fmt.Errorf("keys --json at %s: %v", n.name, err)
	}
	return ks, nil
}
