package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/store"
)

// hubServer serves /v1/events of a bare hub (no agent) over real HTTP.
func hubServer(tb testing.TB) (*eventHub, *api.Client, *http.Transport) {
	tb.Helper()
	h := newEventHub("h1")
	s := &httpServer{a: &Agent{events: h}}
	srv := httptest.NewServer(http.HandlerFunc(s.serveEvents))
	tr := &http.Transport{}
	tb.Cleanup(func() {
		h.close()
		srv.Close()
		tr.CloseIdleConnections()
	})
	return h, api.NewClientWith(srv.Listener.Addr().String(), &http.Client{Transport: tr}), tr
}

// subscribed waits until the hub has n subscribers.
func subscribed(tb testing.TB, h *eventHub, n int) {
	tb.Helper()
	waitFor(tb, 10*time.Second, fmt.Sprintf("%d subscribers", n), func() error {
		if got := int(h.n.Load()); got != n {
			return fmt.Errorf("%d subscribers", got)
		}
		return nil
	})
}

// next returns the stream's next event, failing after a generous deadline.
func next(tb testing.TB, st *api.EventStream) api.Event {
	tb.Helper()
	select {
	case ev, ok := <-st.C:
		if !ok {
			tb.Fatalf("stream ended: %v", st.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		tb.Fatal("no event within 10s")
	}
	return api.Event{}
}

func writeOf(key string) store.Entry {
	return store.Entry{Key: key, Version: store.Version{TS: 1 << 20, Node: "h1"}}
}

// Each node's events arrive in the order it emitted them, with times that
// never go back, and ?kinds= passes only the kinds asked for.
func TestEventsOrderAndFilter(t *testing.T) {
	h, c, _ := hubServer(t)
	ctx := context.Background()
	all, err := c.Events(ctx, "", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	writes, err := c.Events(ctx, "", []string{api.EventWrite}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer writes.Close()
	subscribed(t, h, 2)
	const n = api.EventSampleRate // not above the sampling rate
	go func() {
		for i := range n {
			h.writeEvent(writeOf(fmt.Sprintf("k%03d", i)))
			h.emit(&Event{Kind: api.EventMember, Member: fmt.Sprintf("m%03d", i), Status: "alive"})
		}
	}()
	var last time.Time
	for i := range 2 * n {
		ev := next(t, all)
		want := api.EventWrite
		if i%2 == 1 {
			want = api.EventMember
		}
		if ev.Kind != want || ev.Node != "h1" {
			t.Fatalf("event %d = %+v; want kind %s from h1", i, ev, want)
		}
		if ev.Kind == api.EventWrite && ev.Key != fmt.Sprintf("k%03d", i/2) {
			t.Fatalf("event %d key %q; want k%03d", i, ev.Key, i/2)
		}
		if w := ev.When(); w.IsZero() || w.Before(last) {
			t.Fatalf("event %d time %q before %v or unparsed", i, ev.Time, last)
		} else {
			last = w
		}
	}
	for i := range n {
		ev := next(t, writes)
		if ev.Kind != api.EventWrite || ev.Key != fmt.Sprintf("k%03d", i) {
			t.Fatalf("filtered event %d = %+v; want write k%03d", i, ev, i)
		}
	}
	select {
	case ev := <-writes.C:
		t.Fatalf("filtered stream got %+v after the writes", ev)
	default:
	}
	if _, err := c.Events(ctx, "", []string{"bogus"}, false); !isStatus(err, http.StatusBadRequest) {
		t.Fatalf("kinds=bogus: %v; want 400", err)
	}
}

func isStatus(err error, code int) bool {
	var se *api.StatusError
	return errors.As(err, &se) && se.Code == code
}

// Write events above the rate are counted, not sent: what was sent plus
// what each sent event says was left out before it is every write.
func TestEventsSampledAboveRate(t *testing.T) {
	h, c, _ := hubServer(t)
	var mu sync.Mutex
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	st, err := c.Events(context.Background(), "", []string{api.EventWrite}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	subscribed(t, h, 1)
	const burst = 450 // within one second of the fake clock
	got, total := 0, uint64(0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range burst {
			h.writeEvent(writeOf(fmt.Sprintf("k%d", i)))
			if i%100 == 99 {
				time.Sleep(10 * time.Millisecond) // let the reader keep up
			}
		}
		mu.Lock()
		clock = clock.Add(time.Second)
		mu.Unlock()
		h.writeEvent(writeOf("last"))
	}()
	for {
		ev := next(t, st)
		got++
		total += 1 + ev.Sampled
		if ev.Key == "last" {
			if ev.Sampled != burst-api.EventSampleRate {
				t.Errorf("last event sampled=%d; want %d", ev.Sampled, burst-api.EventSampleRate)
			}
			break
		}
	}
	<-done
	if got != api.EventSampleRate+1 || total != burst+1 {
		t.Fatalf("received %d events standing for %d writes; want %d standing for %d", got, total, api.EventSampleRate+1, burst+1)
	}
}

// A client that stops reading is dropped: the hub never waits for it, and
// the client gets a final "dropped" event once it reads again.
func TestEventsSlowClientDropped(t *testing.T) {
	h, c, _ := hubServer(t)
	slow, err := c.Events(context.Background(), "", []string{api.EventMember}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	subscribed(t, h, 1)
	pad := string(make([]byte, 2000))
	emitted := 0
	deadline := time.Now().Add(30 * time.Second)
	for h.n.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still subscribed after %d events", emitted)
		}
		start := time.Now()
		h.emit(&Event{Kind: api.EventMember, Member: fmt.Sprintf("m%d", emitted), Status: pad})
		if d := time.Since(start); d > time.Second {
			t.Fatalf("emit blocked for %v", d) // a stuck emit shows as seconds, not microseconds
		}
		emitted++
		if emitted%1000 == 0 {
			time.Sleep(time.Millisecond) // let the socket fill
		}
	}
	t.Logf("dropped after %v", time.Since(deadline.Add(-30*time.Second)))
	var last api.Event
	n := 0
	for ev := range slow.C {
		last = ev
		n++
	}
	if last.Kind != api.EventDropped || last.Reason == "" {
		t.Fatalf("last of %d events = %+v; want a dropped event with a reason", n, last)
	}
	if !errors.Is(slow.Err(), api.ErrDropped) {
		t.Fatalf("Err() = %v; want ErrDropped", slow.Err())
	}
	if n-1 >= emitted {
		t.Fatalf("received %d events of %d emitted: nothing was dropped?", n-1, emitted)
	}
	t.Logf("dropped after %d events emitted, %d delivered", emitted, n-1)
}

// Streams end without leaving goroutines: closed by the client, dropped,
// or refused over the cap; and the hub forgets their subscriptions.
func TestEventsNoGoroutineLeft(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newEventHub("h1")
	s := &httpServer{a: &Agent{events: h}}
	srv := httptest.NewServer(http.HandlerFunc(s.serveEvents))
	tr := &http.Transport{}
	c := api.NewClientWith(srv.Listener.Addr().String(), &http.Client{Transport: tr})
	var streams []*api.EventStream
	for range maxEventSubs {
		st, err := c.Events(context.Background(), "", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	subscribed(t, h, maxEventSubs)
	if _, err := c.Events(context.Background(), "", nil, false); !isStatus(err, http.StatusServiceUnavailable) {
		t.Fatalf("stream over the cap: %v; want 503", err)
	}
	h.writeEvent(writeOf("k"))
	for _, st := range streams {
		if ev := next(t, st); ev.Key != "k" {
			t.Fatalf("got %+v; want write k", ev)
		}
	}
	for _, st := range streams[:maxEventSubs/2] {
		st.Close()
	}
	subscribed(t, h, maxEventSubs/2)
	// One more, ended by its context.
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := c.Events(ctx, "", nil, false); err != nil {
		t.Fatal(err)
	}
	subscribed(t, h, maxEventSubs/2+1)
	cancel()
	for _, st := range streams[maxEventSubs/2:] {
		st.Close()
	}
	subscribed(t, h, 0)
	h.close()
	srv.Close()
	tr.CloseIdleConnections()
}
