package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// Go runs f with a context that stop cancels; stop waits for f; Go after
// stop runs nothing.
func TestWorkersStopCancelsAndWaits(t *testing.T) {
	w := newWorkers()
	started := make(chan struct{})
	var finished bool
	if !w.Go(func(ctx context.Context) {
		close(started)
		<-ctx.Done()
		finished = true // read after stop: the race detector checks the wait
	}) {
		t.Fatal("Go() = false before stop; want true")
	}
	<-started
	w.stop()
	if !finished {
		t.Fatal("stop returned before the goroutine it started ended")
	}
	if w.Go(func(context.Context) { t.Error("a goroutine ran after stop") }) {
		t.Fatal("Go() = true after stop; want false")
	}
	w.stop() // idempotent
}

// hangingListener accepts TCP connections and never answers, as a host
// that is up but hung does; it closes them when the test ends.
func hangingListener(tb testing.TB) (addr string, accepted <-chan struct{}) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ch := make(chan struct{}, 16)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), ch
}

// Shutdown waits for a rejoin after a heal that is still under way (here
// a join held by a member that accepts and never answers), so no serf call
// outlives the agent.
func TestShutdownWaitsForRejoin(t *testing.T) {
	n := startNode(t, testConfig(t, "n1", t.TempDir()))
	addr, accepted := hangingListener(t)
	fs := n.fstate
	fs.mu.Lock()
	fs.table = FaultTable{"f1": FaultRecord{ID: "f1", Members: []Endpoint{{Name: "ghost", Gossip: addr}}}}
	n.rejoinLost() // called with fs.mu held, as applyFaultsLocked does
	fs.mu.Unlock()
	if !n.rejoining.Load() {
		t.Fatal("rejoinLost started no rejoin; the test lost its premise")
	}
	select {
	case <-accepted:
	case <-time.After(30 * time.Second):
		t.Fatal("the rejoin never reached the hung member")
	}
	if err := n.Shutdown(); err != nil {
		t.Logf("Shutdown: %v", err)
	}
	if n.rejoining.Load() {
		t.Fatal("Shutdown returned while the rejoin it started was still joining")
	}
}

// Once shut down, the gossip transport dials nothing: a join still going
// through its addresses stops at the next one instead of holding Shutdown
// for a TCP timeout per address.
func TestGossipTransportDialsNothingAfterShutdown(t *testing.T) {
	var mn memberlist.MockNetwork
	names := func(string) string { return "b" }
	var ca, cb gossipCounters
	a := newGossipTransport(mn.NewTransport("a"), NewFaults(1), &ca, names)
	b := newGossipTransport(mn.NewTransport("b"), NewFaults(1), &cb, names)
	defer b.Shutdown()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // take b's streams, as memberlist would
		for {
			select {
			case c := <-b.StreamCh():
				c.Close()
			case <-stop:
				return
			}
		}
	}()
	ip, port, err := b.FinalAdvertiseAddr("", 0)
	if err != nil {
		t.Fatal(err)
	}
	to := memberlist.Address{Addr: net.JoinHostPort(ip.String(), strconv.Itoa(port)), Name: "b"}
	c, err := a.DialAddressTimeout(to, time.Second)
	if err != nil {
		t.Fatalf("dial before Shutdown: %v", err)
	}
	c.Close()
	a.Shutdown()
	if c, err := a.DialAddressTimeout(to, time.Second); err == nil {
		c.Close()
		t.Fatal("dial after Shutdown succeeded; want an error")
	}
	if n := ca.streamsOut.Load(); n != 1 {
		t.Errorf("streams opened = %d; want 1 (none after Shutdown)", n)
	}
}

// Once the API's listener is closed (the server's shutdown does it), wait
// waits for the goroutines answering connections over the cap: here one
// whose client took the 503 and keeps its end open. httpServer.stop calls
// it.
func TestLimitListenerCloseWaitsForRefusals(t *testing.T) {
	waitFor(t, 10*time.Second, "earlier tests' refusals ended", func() error {
		if n := refusing.Load(); n != 0 {
			return fmt.Errorf("%d refusals under way", n)
		}
		return nil
	})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &limitListener{Listener: inner, max: 1, log: testLogger(t)}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	c1, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	held := <-accepted // takes the one slot
	defer held.Close()
	c2, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 12)
	if _, err := io.ReadFull(c2, buf); err != nil || !strings.HasPrefix(string(buf), "HTTP/1.1 503") {
		t.Fatalf("second connection read %q, %v; want a 503", buf, err)
	}
	if refusing.Load() != 1 {
		t.Fatalf("refusals under way = %d once the 503 was read; want 1 (it waits for the client)", refusing.Load())
	}
	l.Close()
	l.wait()
	if n := refusing.Load(); n != 0 {
		t.Fatalf("wait returned with %d refusals still under way; want 0", n)
	}
}
