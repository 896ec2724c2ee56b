package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerctl/peerctl/internal/cluster"
	"github.com/peerctl/peerctl/store"
)

// These tests run several agents in one process on real loopback sockets:
// real serf and memberlist, real HTTP replication, badger on disk.

// testLogger logs to t.Log, so only failing tests print. memberlist's
// goroutines may still log after serf.Shutdown returns; those lines are
// dropped once the test's cleanup has run.
func testLogger(tb testing.TB) *slog.Logger {
	w := &tlogWriter{tb: tb}
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct {
	tb   testing.TB
	mu   sync.Mutex // guards done
	done bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

type testNode struct {
	*Agent
	cfg *Config
}

// testConfig returns a config for a node on ephemeral loopback ports.
func testConfig(tb testing.TB, name, dir string, join ...string) *Config {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.Bind = "127.0.0.1:0"
	cfg.API = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.Join = join
	cfg.SyncInterval = 300 * time.Millisecond
	cfg.ReconnectInterval = time.Second
	cfg.Logger = testLogger(tb)
	return cfg
}

// startNode starts an agent and stops it (without leaving) at cleanup.
func startNode(tb testing.TB, cfg *Config) *testNode {
	tb.Helper()
	var a *Agent
	cfg.Kill = func() { a.Shutdown() }
	var err error
	a, err = Create(cfg)
	if err != nil {
		tb.Fatalf("Create(%s) = %v", cfg.Name, err)
	}
	tb.Cleanup(func() { a.Shutdown() })
	return &testNode{Agent: a, cfg: cfg}
}

// startCluster starts n joined agents and waits until each sees n alive.
func startCluster(tb testing.TB, n int) []*testNode {
	tb.Helper()
	return startClusterWith(tb, n, nil)
}

// startClusterWith is startCluster with set, if not nil, applied to every
// agent's config before it starts (a shared key or token, say).
func startClusterWith(tb testing.TB, n int, set func(*Config)) []*testNode {
	tb.Helper()
	var nodes []*testNode
	for i := 0; i < n; i++ {
		var join []string
		if i > 0 {
			join = []string{nodes[0].GossipAddr()}
		}
		cfg := testConfig(tb, fmt.Sprintf("n%d", i+1), tb.TempDir(), join...)
		if set != nil {
			set(cfg)
		}
		nodes = append(nodes, startNode(tb, cfg))
	}
	waitFor(tb, 15*time.Second, "all nodes see each other alive", func() error {
		return allAlive(nodes, n)
	})
	return nodes
}

func allAlive(nodes []*testNode, n int) error {
	for _, nd := range nodes {
		alive := 0
		for _, m := range nd.Members() {
			if m.Status == "alive" {
				alive++
			}
		}
		if alive != n {
			return fmt.Errorf("%s sees %d alive, want %d", nd.Name(), alive, n)
		}
		if got := len(nd.repl.peerList()); got != n-1 {
			return fmt.Errorf("%s replicates to %d peers, want %d", nd.Name(), got, n-1)
		}
	}
	return nil
}

// waitFor polls cond every 20 ms until it returns nil (cluster.WaitErr),
// and fails the test with cond's last error if d passes first.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() error) {
	tb.Helper()
	if err := cluster.WaitErr(context.Background(), d, 20*time.Millisecond, cond); err != nil {
		tb.Fatalf("waiting for %s: %v", what, err)
	}
}

func converged(nodes []*testNode) error {
	d0 := nodes[0].Store().Digest()
	for _, nd := range nodes[1:] {
		d := nd.Store().Digest()
		if diff := d0.Diff(&d); len(diff) > 0 {
			return fmt.Errorf("%s and %s differ in %d buckets", nodes[0].Name(), nd.Name(), len(diff))
		}
	}
	return nil
}

func TestPutReplicatesToEveryNode(t *testing.T) {
	nodes := startCluster(t, 3)
	e, err := nodes[0].Put("greeting", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "key on every node", func() error {
		for _, nd := range nodes {
			got, err := nd.Store().Get("greeting")
			if err != nil {
				return fmt.Errorf("%s: %v", nd.Name(), err)
			}
			if got.Version != e.Version || string(got.Value) != "hello" {
				return fmt.Errorf("%s has %q at %v", nd.Name(), got.Value, got.Version)
			}
		}
		return nil
	})
	// A later write at another node wins everywhere.
	e2, err := nodes[2].Put("greeting", []byte("bonjour"))
	if err != nil {
		t.Fatal(err)
	}
	if e2.Version.Compare(e.Version) <= 0 {
		t.Fatalf("second write version %v not after first %v", e2.Version, e.Version)
	}
	waitFor(t, 5*time.Second, "newer value everywhere", func() error {
		for _, nd := range nodes {
			got, _ := nd.Store().Get("greeting")
			if string(got.Value) != "bonjour" {
				return fmt.Errorf("%s has %q", nd.Name(), got.Value)
			}
		}
		return nil
	})
}

// dropPushes is a transport that loses every push while enabled.
type dropPushes struct {
	next Transport
	on   atomic.Bool
}

func (d *dropPushes) Send(peer, addr, kind string, body []byte) error {
	if d.on.Load() && kind == kindPush {
		return nil
	}
	return d.next.Send(peer, addr, kind, body)
}

func (d *dropPushes) SetHandler(h Handler) { d.next.SetHandler(h) }

func (d *dropPushes) Call(ctx context.Context, peer, addr, kind string, body []byte) ([]byte, error) {
	if d.on.Load() && kind == kindPush {
		return nil, errors.New("dropped by test")
	}
	return d.next.Call(ctx, peer, addr, kind, body)
}

func TestAntiEntropyRepairsMissedPushes(t *testing.T) {
	drop := &dropPushes{}
	drop.on.Store(true)
	cfg := testConfig(t, "n1", t.TempDir())
	cfg.WrapTransport = func(tr Transport) Transport { drop.next = tr; return drop }
	n1 := startNode(t, cfg)
	n2 := startNode(t, testConfig(t, "n2", t.TempDir(), n1.GossipAddr()))
	n3 := startNode(t, testConfig(t, "n3", t.TempDir(), n1.GossipAddr()))
	nodes := []*testNode{n1, n2, n3}
	waitFor(t, 15*time.Second, "cluster", func() error { return allAlive(nodes, 3) })

	for i := 0; i < 300; i++ {
		if _, err := n1.Put(fmt.Sprintf("k%03d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := n1.Delete("k007"); err != nil {
		t.Fatal(err)
	}
	// n1's pushes are all lost; only anti-entropy can bring the others up.
	waitFor(t, 15*time.Second, "convergence by anti-entropy", func() error { return converged(nodes) })
	for _, nd := range nodes[1:] {
		if got := nd.Store().Stats(); got.Keys != 299 || got.Tombstones != 1 {
			t.Errorf("%s holds %+v; want 299 keys and 1 tombstone", nd.Name(), got)
		}
		if _, err := nd.Store().Get("k007"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: deleted key k007: err = %v, want not found", nd.Name(), err)
		}
	}
	if n1.repl.repaired.Load()+n2.repl.repaired.Load()+n3.repl.repaired.Load() == 0 {
		t.Error("no entries were repaired by anti-entropy")
	}
}

func TestRestartedNodeCatchesUp(t *testing.T) {
	nodes := startCluster(t, 3)
	n3cfg := nodes[2].cfg
	nodes[2].kill() // crash: no leave, no flush
	waitFor(t, 15*time.Second, "n3 marked failed", func() error {
		for _, m := range nodes[0].Members() {
			if m.Name == "n3" && m.Status != "failed" {
				return fmt.Errorf("n1 sees n3 %s", m.Status)
			}
		}
		return nil
	})
	for i := 0; i < 500; i++ {
		if _, err := nodes[i%2].Put(fmt.Sprintf("missed/%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	// Restart on the same data dir with no --join: the serf snapshot
	// rejoins the members it last knew.
	cfg := testConfig(t, "n3", n3cfg.DataDir)
	cfg.Bind = nodes[2].GossipAddr()
	n3 := startNode(t, cfg)
	nodes[2] = n3
	waitFor(t, 15*time.Second, "restarted node converged", func() error {
		if err := allAlive(nodes, 3); err != nil {
			return err
		}
		return converged(nodes)
	})
	if got := n3.Store().Stats().Keys; got != 500 {
		t.Fatalf("restarted n3 holds %d keys, want 500", got)
	}
}

func TestNewNodeReceivesEverything(t *testing.T) {
	nodes := startCluster(t, 3)
	for i := 0; i < 1000; i++ {
		if _, err := nodes[i%3].Put(fmt.Sprintf("boot/%04d", i), []byte(strings.Repeat("x", 100))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "three nodes converged", func() error { return converged(nodes) })
	n4 := startNode(t, testConfig(t, "n4", t.TempDir(), nodes[1].GossipAddr()))
	nodes = append(nodes, n4)
	waitFor(t, 15*time.Second, "new node converged", func() error { return converged(nodes) })
	if got := n4.Store().Stats().Keys; got != 1000 {
		t.Fatalf("new node holds %d keys, want 1000", got)
	}
}

func TestSecondAgentOnSameDataDirFails(t *testing.T) {
	dir := t.TempDir()
	startNode(t, testConfig(t, "a", dir))
	_, err := Create(testConfig(t, "b", dir))
	if err == nil || !strings.Contains(err.Error(), "in use by another running agent") {
		t.Fatalf("second Create on %s = %v; want data dir in use", dir, err)
	}
}

func TestPortInUseFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t, "a", t.TempDir())
	cfg.API = ln.Addr().String()
	if _, err := Create(cfg); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("Create with busy --api = %v; want address in use", err)
	}
	cfg = testConfig(t, "a", t.TempDir())
	cfg.Bind = ln.Addr().String()
	if _, err := Create(cfg); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("Create with busy --bind = %v; want address in use", err)
	}
}

var _ = io.Discard
