package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
)

// inmemNetwork joins inmemTransports by node name with no sockets, as
// hashicorp/raft's InmemTransport does: Connect, Disconnect and Partition
// cut and restore links. A message is delivered by calling the receiver's
// Handler in the sender's goroutine, so a Send returns once the peer has
// handled it. The address a replicator passes is the peer's name.
type inmemNetwork struct {
	mu    sync.Mutex // guards nodes, cut
	nodes map[string]*inmemTransport
	cut   map[[2]string]bool // from, to: links that carry nothing
}

func newInmemNetwork() *inmemNetwork {
	return &inmemNetwork{nodes: make(map[string]*inmemTransport), cut: make(map[[2]string]bool)}
}

// transport returns the transport of the node named name on n.
func (n *inmemNetwork) transport(name string) *inmemTransport {
	t := &inmemTransport{net: n, name: name}
	n.mu.Lock()
	n.nodes[name] = t
	n.mu.Unlock()
	return t
}

// Disconnect cuts the link between a and b, both ways.
func (n *inmemNetwork) Disconnect(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[[2]string{a, b}] = true
	n.cut[[2]string{b, a}] = true
}

// Connect restores the link between a and b, both ways.
func (n *inmemNetwork) Connect(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, [2]string{a, b})
	delete(n.cut, [2]string{b, a})
}

// Partition cuts every link between nodes of different groups.
func (n *inmemNetwork) Partition(groups ...[]string) {
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					n.Disconnect(a, b)
				}
			}
		}
	}
}

// Heal restores every link.
func (n *inmemNetwork) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
}

// route returns to's transport if from can reach it.
func (n *inmemNetwork) route(from, to string) (*inmemTransport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.nodes[to]
	if !ok || n.cut[[2]string{from, to}] {
		return nil, fmt.Errorf("%s to %s: unreachable", from, to)
	}
	return t, nil
}

// inmemTransport is one node's end of an inmemNetwork.
type inmemTransport struct {
	net  *inmemNetwork
	name string

	mu sync.Mutex // guards h
	h  Handler
}

var _ Transport = (*inmemTransport)(nil)

func (t *inmemTransport) SetHandler(h Handler) {
	t.mu.Lock()
	t.h = h
	t.mu.Unlock()
}

func (t *inmemTransport) handler() Handler {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.h
}

func (t *inmemTransport) deliver(ctx context.Context, peer, kind string, body []byte, call bool) ([]byte, error) {
	to, err := t.net.route(t.name, peer)
	if err != nil {
		return nil, err
	}
	h := to.handler()
	if h == nil {
		return nil, fmt.Errorf("%s to %s: no handler", t.name, peer)
	}
	// Copies, as a wire would make: neither side may keep the other's bytes.
	reply, err := h.HandleMessage(ctx, t.name, kind, bytes.Clone(body), call)
	if err != nil {
		return nil, fmt.Errorf("%s to %s: %w", kind, peer, err)
	}
	if _, err := t.net.route(peer, t.name); err != nil {
		return nil, fmt.Errorf("%s to %s: reply lost: %w", kind, peer, err)
	}
	return bytes.Clone(reply), nil
}

func (t *inmemTransport) Call(ctx context.Context, peer, _, kind string, body []byte) ([]byte, error) {
	return t.deliver(ctx, peer, kind, body, true)
}

func (t *inmemTransport) Send(peer, _, kind string, body []byte) error {
	_, err := t.deliver(context.Background(), peer, kind, body, false)
	return err
}

// memNode is a replicator over an in-memory store and transport.
type memNode struct {
	name string
	st   *store.Store
	r    *replicator
}

// put writes locally and broadcasts, as Agent.Put does.
func (n *memNode) put(tb testing.TB, key, value string) {
	tb.Helper()
	e, err := n.st.Put(key, []byte(value))
	if err != nil {
		tb.Fatal(err)
	}
	n.r.broadcast(e)
}

// startMemNodes starts one replicator per name on net, every one a peer of
// every other, syncing every interval. wrap, if not nil, wraps a node's
// transport. They stop when the test ends.
func startMemNodes(tb testing.TB, net *inmemNetwork, interval time.Duration, wrap func(name string, tr Transport) Transport, names ...string) []*memNode {
	tb.Helper()
	var nodes []*memNode
	for _, name := range names {
		st, err := store.Open(store.NewMemBackend(), store.Config{Node: name})
		if err != nil {
			tb.Fatal(err)
		}
		var tr Transport = net.transport(name)
		if wrap != nil {
			tr = wrap(name, tr)
		}
		r := newReplicator(st, tr, newCounters(), testLogger(tb), time.Millisecond, interval)
		tr.SetHandler(r)
		nodes = append(nodes, &memNode{name: name, st: st, r: r})
	}
	for _, n := range nodes {
		n.r.start()
		for _, p := range nodes {
			if p != n {
				n.r.setPeer(p.name, p.name)
			}
		}
	}
	tb.Cleanup(func() {
		for _, n := range nodes {
			n.r.stop()
			n.st.Close()
		}
	})
	return nodes
}

// memConverged reports an error unless every node holds the same digest.
func memConverged(nodes []*memNode) error {
	d0 := nodes[0].st.Digest()
	for _, n := range nodes[1:] {
		if d := n.st.Digest(); digestHex(&d) != digestHex(&d0) {
			return fmt.Errorf("%s digest %s, %s digest %s", nodes[0].name, digestHex(&d0), n.name, digestHex(&d))
		}
	}
	return nil
}

func memGet(tb testing.TB, n *memNode, key string) string {
	tb.Helper()
	e, err := n.st.Get(key)
	if err != nil {
		tb.Fatalf("%s: get %q: %v", n.name, key, err)
	}
	return string(e.Value)
}

// Pushes alone bring every node up to date: anti-entropy is an hour away.
func TestInmemPushConverges(t *testing.T) {
	net := newInmemNetwork()
	nodes := startMemNodes(t, net, time.Hour, nil, "n1", "n2", "n3")
	// Each node syncs once with its first peer at start; let those empty
	// rounds end, so that what follows travels by push only.
	waitFor(t, 10*time.Second, "the first anti-entropy rounds", func() error {
		for _, n := range nodes {
			if n.r.lastSync.Load() == 0 {
				return fmt.Errorf("%s has not synced yet", n.name)
			}
		}
		return nil
	})
	for i := 0; i < 100; i++ {
		nodes[i%3].put(t, fmt.Sprintf("k%03d", i), fmt.Sprint(i))
	}
	waitFor(t, 10*time.Second, "convergence by push", func() error { return memConverged(nodes) })
	for _, n := range nodes {
		if got := n.st.Stats().Keys; got != 100 {
			t.Errorf("%s holds %d keys; want 100", n.name, got)
		}
		if n.r.repaired.Load() != 0 {
			t.Errorf("%s repaired %d entries by anti-entropy; want 0 (pushes only)", n.name, n.r.repaired.Load())
		}
	}
}

// Every push from n1 is lost; anti-entropy alone carries its writes to the
// others, and a deletion with them.
func TestInmemDroppedPushesRepaired(t *testing.T) {
	net := newInmemNetwork()
	drop := &dropPushes{}
	drop.on.Store(true)
	wrap := func(name string, tr Transport) Transport {
		if name != "n1" {
			return tr
		}
		drop.next = tr
		return drop
	}
	nodes := startMemNodes(t, net, 20*time.Millisecond, wrap, "n1", "n2", "n3")
	for i := 0; i < 50; i++ {
		nodes[0].put(t, fmt.Sprintf("k%03d", i), fmt.Sprint(i))
	}
	e, _, err := nodes[0].st.Delete("k007")
	if err != nil {
		t.Fatal(err)
	}
	nodes[0].r.broadcast(e)
	waitFor(t, 10*time.Second, "convergence by anti-entropy", func() error { return memConverged(nodes) })
	for _, n := range nodes[1:] {
		if got := n.st.Stats(); got.Keys != 49 || got.Tombstones != 1 {
			t.Errorf("%s holds %+v; want 49 keys and 1 tombstone", n.name, got)
		}
	}
	// The premise: n1 did push, and lost every push.
	if nodes[0].r.pushesSent.Load() == 0 {
		t.Errorf("n1 sent no push; the test dropped nothing")
	}
}

// n1 is cut off from n2 and n3; both sides keep writing, the same key
// included. The majority converges without n1, and n1 sees none of it;
// after the partition heals every node holds the same data, and the
// conflicting key the same (last) write.
func TestInmemPartitionHeals(t *testing.T) {
	net := newInmemNetwork()
	nodes := startMemNodes(t, net, 20*time.Millisecond, nil, "n1", "n2", "n3")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	net.Partition([]string{"n1"}, []string{"n2", "n3"})
	n1.put(t, "only-n1", "a")
	n1.put(t, "both", "from n1")
	n2.put(t, "only-n2", "b")
	n2.put(t, "both", "from n2") // later HLC: wins once healed
	waitFor(t, 10*time.Second, "majority converged", func() error { return memConverged(nodes[1:]) })
	if _, err := n1.st.Get("only-n2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("n1 got only-n2 across the partition: err = %v", err)
	}
	if _, err := n3.st.Get("only-n1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("n3 got only-n1 across the partition: err = %v", err)
	}
	net.Heal()
	waitFor(t, 10*time.Second, "convergence after the heal", func() error { return memConverged(nodes) })
	for _, n := range nodes {
		if got := memGet(t, n, "both"); got != "from n2" {
			t.Errorf("%s: both = %q; want %q (the later write)", n.name, got, "from n2")
		}
		if memGet(t, n, "only-n1") != "a" || memGet(t, n, "only-n2") != "b" {
			t.Errorf("%s lacks a write from one side of the partition", n.name)
		}
	}
}

// The fault layer's receive rules, over the in-memory transport: a paused
// node takes in nothing (its store stays empty while the others converge)
// and catches up once healed.
func TestInmemPausedNodeReceivesNothing(t *testing.T) {
	net := newInmemNetwork()
	faults := map[string]*Faults{}
	wrap := func(name string, tr Transport) Transport {
		faults[name] = NewFaults(1)
		return newFaultTransport(tr, faults[name])
	}
	nodes := startMemNodes(t, net, 20*time.Millisecond, wrap, "n1", "n2", "n3")
	if err := faults["n3"].Add(Rule{ID: "p", Kind: FaultPause}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		nodes[0].put(t, fmt.Sprintf("k%02d", i), "v")
	}
	waitFor(t, 10*time.Second, "n1 and n2 converged", func() error { return memConverged(nodes[:2]) })
	if got := nodes[2].st.Stats().Keys; got != 0 {
		t.Fatalf("paused n3 holds %d keys; want 0", got)
	}
	faults["n3"].Heal()
	waitFor(t, 10*time.Second, "n3 caught up after the pause", func() error { return memConverged(nodes) })
}
