package daemon

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
)

// Twelve peers each send 1 MiB of a 3 MiB push body and stop, connections
// left open: each body is under its own limit (maxCall), but together they
// would hold 12 MiB. With a 4 MiB body budget, the bodies that find it
// exhausted are refused (503) within about budgetWait and their
// connections closed; the bytes held stay within the budget; once the
// others close, the budget is whole again and writes go through. Before
// the budget, each connection held its bytes until the 1 min read timeout:
// 100 such connections held 870 MB. Reference: issue 7, "Bounded
// everything".
func TestBodiesShareOneBudget(t *testing.T) {
	const budget = 4 << 20
	cfg := testConfig(t, "n1", t.TempDir())
	cfg.Limits.MaxBodyBytes = budget
	nd := startNode(t, cfg)
	addr := nd.APIAddr()
	before := heapAlloc()

	const conns = 12
	part := make([]byte, 64<<10)
	closed := make(chan int, conns)
	var cs []net.Conn
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
		wg.Add(1)
		go func() { // send 1 MiB of the body, then nothing
			defer wg.Done()
			c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "POST /v1/internal/push HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nX-Peerctl-From: p%d\r\nContent-Length: %d\r\n\r\n", addr, i, 3<<20)
			for n := 0; n < 1<<20; n += len(part) {
				if _, err := c.Write(part); err != nil {
					return // refused and closed by the server
				}
			}
		}()
		go func() { // report when the server closes the connection
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
						closed <- i
					}
					return
				}
			}
		}()
	}
	// At most 4 bodies fit; bodies that wait for the budget are refused,
	// not held. How many get refused depends on how the reads interleave
	// (a refusal frees budget another body then takes), so the test asks
	// for a quarter of them; before the budget there were none.
	var refused []int
	deadline := time.After(15 * time.Second)
	for len(refused) < conns/4 {
		select {
		case i := <-closed:
			refused = append(refused, i)
		case <-deadline:
			t.Fatalf("%d of %d connections refused after 15s; want at least %d (the rest hold the %d MiB budget)", len(refused), conns, conns/4, budget>>20)
		}
	}
	if used := nd.http.budget.inUse(); used > budget {
		t.Errorf("body bytes held: %d; want at most the budget %d", used, budget)
	}
	growth := int64(heapAlloc()) - int64(before)
	t.Logf("refused %d of %d; heap growth %d KiB with the rest open", len(refused), conns, growth>>10)
	if growth > 3*budget {
		t.Errorf("heap grew by %d MiB holding half-sent bodies; want < %d MiB", growth>>20, 3*budget>>20)
	}
	for _, c := range cs {
		c.Close()
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "the budget to be whole again", func() error {
		if used := nd.http.budget.inUse(); used != 0 {
			return fmt.Errorf("%d bytes still held", used)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := NewClient(addr).Put(ctx, "", "after", []byte("v")); err != nil {
		t.Fatalf("put after the bodies closed: %v", err)
	}
}

// A body forwarded to another node (?node=) only passes through: it is not
// held here, so a long forwarded stream cannot spend this node's budget.
// Before, every byte forwarded stayed counted until the request ended: a
// stream forwarded through n1 with more than its budget was cut with 503,
// and while it ran n1 refused every other body.
//
// Anti-entropy is off after the join round (SyncInterval of an hour): a
// round would copy the forwarded entries from n2 back to n1, a push that
// n1's budget rightly counts, and the checks below would see those bytes
// (the test failed that way under load: "n1 holds 799008 bytes").
func TestForwardedBodiesDoNotSpendTheBudget(t *testing.T) {
	const budget = 1 << 20
	cfg1 := testConfig(t, "n1", t.TempDir())
	cfg1.Limits.MaxBodyBytes = budget
	cfg1.SyncInterval = time.Hour
	n1 := startNode(t, cfg1)
	cfg2 := testConfig(t, "n2", t.TempDir(), n1.GossipAddr())
	cfg2.SyncInterval = time.Hour
	n2 := startNode(t, cfg2)
	waitFor(t, 15*time.Second, "both nodes alive", func() error { return allAlive([]*testNode{n1, n2}, 2) })
	// Each node syncs once with its first peer (replicator.setPeer); let
	// those rounds end before there is anything for them to carry.
	waitFor(t, 15*time.Second, "the join's anti-entropy rounds to end", func() error {
		for _, n := range []*testNode{n1, n2} {
			if n.repl.syncRounds.Load() == 0 || n.repl.syncing.Load() {
				return fmt.Errorf("%s: %d rounds started, syncing %v", n.cfg.Name, n.repl.syncRounds.Load(), n.repl.syncing.Load())
			}
		}
		return nil
	})

	c, err := net.Dial("tcp", n1.APIAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/internal/stream?node=n2 HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nX-Peerctl-From: fwd\r\nTransfer-Encoding: chunked\r\n\r\n", n1.APIAddr())
	// 2 MiB of pushes, twice n1's budget, each a valid frame n2 applies.
	const frames = 32
	v := make([]byte, 60<<10)
	ts := store.MakeTimestamp(time.Now().UnixMilli(), 0)
	for i := 0; i < frames; i++ {
		es := []store.Entry{{Key: fmt.Sprintf("fwd%02d", i), Value: v, Version: store.Version{TS: ts, Node: "fwd"}}}
		if err := sendChunk(c, appendFrame(nil, 0, store.EncodeBatch(es))); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	waitFor(t, 15*time.Second, "n2 to apply every forwarded push", func() error {
		for i := 0; i < frames; i++ {
			if _, err := n2.Store().Get(fmt.Sprintf("fwd%02d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	// The stream is still open: n1 holds none of it and takes writes.
	// Other small calls to n1 (fault-rule sync) may hold a few bytes at
	// this instant; a single counted frame of the stream would be 60 KiB.
	if used := n1.http.budget.inUse(); used >= int64(len(v)) {
		t.Errorf("n1 holds %d bytes of a body it only forwards; want none of it (less than one %d-byte frame)", used, len(v))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := NewClient(n1.APIAddr()).Put(ctx, "", "during", make([]byte, 60<<10)); err != nil {
		t.Errorf("put at n1 while a stream is forwarded through it: %v", err)
	}
}

// An idle stream's keepalives are released like any frame: 100 KiB of
// keepalives (a quiet peer's stream over about six days) on a node whose
// budget is 64 KiB leave the stream up, and a push after them is applied.
// Before, a keepalive's bytes stayed counted until the next data frame, so
// a stream that stayed quiet long enough spent the whole budget.
func TestKeepalivesDoNotSpendTheBudget(t *testing.T) {
	cfg := testConfig(t, "n1", t.TempDir())
	cfg.Limits.MaxBodyBytes = 64 << 10
	nd := startNode(t, cfg)
	c := streamConn(t, nd.APIAddr(), "quiet")
	var ka []byte
	for len(ka) < 100<<10 {
		ka = appendFrame(ka, kindKeepalive, nil)
	}
	for len(ka) > 0 { // in chunks, as a sender writes them over time
		n := min(len(ka), 8<<10)
		if err := sendChunk(c, ka[:n]); err != nil {
			t.Fatal(err)
		}
		ka = ka[n:]
	}
	ts := store.MakeTimestamp(time.Now().UnixMilli(), 0)
	push := store.EncodeBatch([]store.Entry{{Key: "after", Value: []byte("v"), Version: store.Version{TS: ts, Node: "quiet"}}})
	if err := sendChunk(c, appendFrame(nil, 0, push)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the push after the keepalives applied", func() error {
		_, err := nd.Store().Get("after")
		return err
	})
}
