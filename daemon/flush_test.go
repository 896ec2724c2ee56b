package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
)

// gatedTransport holds every Send until the gate opens, and counts the
// entries of the pushes it let through. Calls fail: anti-entropy stays out
// of the way.
type gatedTransport struct {
	gate      chan struct{} // closed by open: sends go through
	once      sync.Once
	entered   atomic.Int64 // sends started
	delivered atomic.Int64 // entries in sends that returned
}

func (t *gatedTransport) Call(ctx context.Context, peer, addr, kind string, body []byte) ([]byte, error) {
	return nil, errors.New("calls are off in this test")
}

func (t *gatedTransport) Send(peer, addr, kind string, body []byte) error {
	t.entered.Add(1)
	<-t.gate
	es, err := store.DecodeBatch(body)
	if err != nil {
		return err
	}
	t.delivered.Add(int64(len(es)))
	return nil
}

func (t *gatedTransport) SetHandler(Handler) {}

// open lets every held and later send through.
func (t *gatedTransport) open() { t.once.Do(func() { close(t.gate) }) }

// newGatedReplicator returns a started replicator over a gatedTransport
// whose gate the test opens; both stop when the test ends.
func newGatedReplicator(tb testing.TB) (*replicator, *gatedTransport, *store.Store) {
	tb.Helper()
	st, err := store.Open(store.NewMemBackend(), store.Config{Node: "n1"})
	if err != nil {
		tb.Fatal(err)
	}
	tr := &gatedTransport{gate: make(chan struct{})}
	r := newReplicator(st, tr, newCounters(), testLogger(tb), time.Millisecond, time.Hour)
	r.start()
	tb.Cleanup(func() {
		tr.open() // a held send would keep stop waiting
		r.stop()
		st.Close()
	})
	return r, tr, st
}

func putN(tb testing.TB, r *replicator, st *store.Store, n int) {
	tb.Helper()
	for i := 0; i < n; i++ {
		e, err := st.Put(fmt.Sprintf("k%03d", i), []byte("v"))
		if err != nil {
			tb.Fatal(err)
		}
		r.broadcast(e)
	}
}

// flush reports the queues drained only once every push queued before it
// has been handed to the transport: not while entries wait in a queue, nor
// while a batch is being sent.
func TestFlushWaitsForQueuedAndInFlightPushes(t *testing.T) {
	r, tr, st := newGatedReplicator(t)
	if !r.flush(0) {
		t.Fatal("flush() = false with nothing ever queued; want true")
	}
	r.setPeer("n2", "n2")
	r.setPeer("n3", "n3")
	putN(t, r, st, 20)
	// Both workers take a batch and are held in Send: nothing is queued
	// any more, yet nothing has been handed over.
	waitFor(t, 10*time.Second, "both pushes under way", func() error {
		if n := tr.entered.Load(); n < 2 {
			return fmt.Errorf("%d sends started", n)
		}
		return nil
	})
	if r.flush(50 * time.Millisecond) {
		t.Fatalf("flush() = true with two pushes held in Send (%d entries delivered); want false at the deadline", tr.delivered.Load())
	}
	// Queued behind the held batches: flush must wait for these too.
	e, err := st.Put("late", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	r.broadcast(e)
	if r.pending() == 0 {
		t.Fatal("the late write is not queued; the test lost its premise")
	}
	done := make(chan bool)
	go func() { done <- r.flush(30 * time.Second) }()
	tr.open()
	if !<-done {
		t.Fatal("flush() = false after the gate opened; want true")
	}
	if got, want := tr.delivered.Load(), int64(2*21); got != want {
		t.Fatalf("flush returned with %d entries handed over; want %d (every queued entry, to both peers)", got, want)
	}
	if n := r.pending(); n != 0 {
		t.Fatalf("flush returned with %d entries queued; want 0", n)
	}
}

// What is queued for a peer that is removed is dropped, not waited for;
// a stopped replicator's queues never drain, and flush says so at once.
func TestFlushAfterRemoveAndStop(t *testing.T) {
	r, tr, st := newGatedReplicator(t)
	r.setPeer("n2", "n2")
	putN(t, r, st, 5)
	waitFor(t, 10*time.Second, "the push under way", func() error {
		if tr.entered.Load() == 0 {
			return errors.New("no send started")
		}
		return nil
	})
	putN(t, r, st, 5) // queued behind the held batch
	r.removePeer("n2")
	// The held batch is still waited for.
	if r.flush(50 * time.Millisecond) {
		t.Fatal("flush() = true with a push held in Send; want false")
	}
	tr.open()
	if !r.flush(30 * time.Second) {
		t.Fatal("flush() = false once the held push ended and the removed peer's queue was dropped; want true")
	}

	r2, _, st2 := newGatedReplicator(t)
	r2.setPeer("n2", "n2")
	r2.stop()
	putN(t, r2, st2, 1) // queued, and no worker left to send it
	if r2.flush(time.Hour) {
		t.Fatal("flush() = true on a stopped replicator with an entry queued; want false")
	}
}
