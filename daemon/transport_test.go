package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A push to a peer that accepts the connection and then reads nothing (a
// hung process, a black-holed link) fails once the peer has taken no frame
// for sendTimeout, instead of blocking the push worker for ever; and close
// returns, with every goroutine of the stream ended. Reference: issue 9,
// item 5 ("a push to a dead peer has a deadline").
func TestSendToHungPeerHasDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()

	tr := newHTTPTransport("n1", Limits{}, slog.New(slog.DiscardHandler))
	tr.sendTimeout = 200 * time.Millisecond
	body := bytes.Repeat([]byte("x"), pushChunk)
	start := time.Now()
	var sendErr error
	// The socket buffers take some megabytes before a write blocks.
	for i := 0; i < 256 && sendErr == nil; i++ {
		sendErr = tr.Send("hung", ln.Addr().String(), kindPush, body)
	}
	if sendErr == nil {
		t.Fatalf("256 MiB sent to a peer that reads nothing, without an error")
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the push failed after %v; want within seconds (sendTimeout %v)", d, tr.sendTimeout)
	}
	t.Logf("push to a hung peer: %v after %v", sendErr, time.Since(start).Round(time.Millisecond))

	done := make(chan struct{})
	go func() { tr.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return within 10s: a stream goroutine is stuck")
	}
}

// countSends is a Transport that counts Sends and delivers nothing.
type countSends struct{ n atomic.Int64 }

func (c *countSends) Call(context.Context, string, string, string, []byte) ([]byte, error) {
	return nil, errors.New("no calls")
}
func (c *countSends) Send(string, string, string, []byte) error { c.n.Add(1); return nil }
func (c *countSends) SetHandler(Handler)                        {}

// Delayed sends run in goroutines the fault layer owns: close drops those
// not yet due at once (a node stopping loses them, as a slow link would),
// returns only when none is left, and a delayed send after close goes
// nowhere. Reference: issue 9, item 5.
func TestFaultTransportCloseEndsDelayedSends(t *testing.T) {
	next := &countSends{}
	f := NewFaults(1)
	if err := f.Add(Rule{ID: "d", Kind: FaultDelay, Delay: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ft := newFaultTransport(next, f)
	for i := 0; i < 10; i++ {
		if err := ft.Send("p", "addr", kindPush, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	ft.close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("close took %v with sends delayed by a minute; want at once", d)
	}
	if err := ft.Send("p", "addr", kindPush, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n := next.n.Load(); n != 0 {
		t.Errorf("%d delayed sends delivered around close; want 0", n)
	}
}
