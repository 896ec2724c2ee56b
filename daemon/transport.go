package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerctl/peerctl/store"
)

// Transport carries replication messages between daemons: every byte of
// replication a node sends goes through its Transport, and every message it
// receives goes through Handle. That makes it the one place to count
// traffic and, later, to inject faults (drop, delay, partition) by wrapping
// it. Membership traffic (serf/memberlist) has its own transport.
type Transport interface {
	// Call sends a message of the given kind to the peer whose API listens
	// at addr and returns its reply. It may block until ctx is done.
	Call(ctx context.Context, peer, addr, kind string, body []byte) ([]byte, error)
	// Send sends a one-way message to the peer over a long-lived stream:
	// no reply, so one message on the wire. It returns once the message is
	// handed to the connection, not when the peer has applied it; a message
	// lost with a broken stream is repaired by anti-entropy. It may block
	// while the peer does not read. It is safe for concurrent use.
	Send(peer, addr, kind string, body []byte) error
}

// Message kinds.
const (
	kindPush   = "push"   // body: batch of entries; reply: empty
	kindDigest = "digest" // body: digest; reply: differing buckets
	kindSync   = "sync"   // body: buckets + summaries; reply: entries + wanted keys
)

var kinds = []string{kindPush, kindDigest, kindSync}

// kindIndex returns the byte that names kind in a stream frame.
func kindIndex(kind string) (byte, bool) {
	for i, k := range kinds {
		if k == kind {
			return byte(i), true
		}
	}
	return 0, false
}

// maxCall bounds a call's body and its reply. The largest are a push of
// wanted entries and a sync reply: at most syncChunk of entries plus the one
// that crosses it, and for a sync reply the keys the asker should send,
// which are at most the keys of its summaries (store.MaxSyncSummaries). Twice
// syncChunk covers both with room for encoding overhead.
const maxCall = 2 * syncChunk

// maxMessage bounds what check.go reads from a member's API (a digest, the
// summaries of differing buckets: ~40 bytes a key).
const maxMessage = 64 << 20

// httpTransport sends calls as POST /v1/internal/KIND over HTTP/1.1 with
// keep-alive connections, and one-way messages as frames (frame.go) in the
// chunked body of one long POST /v1/internal/stream per peer. An idle
// stream carries a keepalive frame every keepalive, so the receiver can
// close a stream that stays silent.
type httpTransport struct {
	hc        *http.Client
	shc       *http.Client  // for streams: no overall timeout
	from      string        // this node's name, sent so the receiver can apply its rules to the reply
	keepalive time.Duration // an idle stream gets an empty frame this often

	mu      sync.Mutex // guards streams, closed
	streams map[string]*outStream
	closed  bool
}

// outStream is the sending end of one stream to a peer.
type outStream struct {
	addr string
	pw   *io.PipeWriter
	dead chan struct{} // closed when the request ended
	sent atomic.Int64  // unix ns of the last frame written
}

// headerFrom names the sending node on replication requests.
const headerFrom = "X-Peerctl-From"

// newHTTPTransport returns a transport for the node named from whose idle
// streams carry a keepalive frame every keepalive.
func newHTTPTransport(from string, keepalive time.Duration) *httpTransport {
	tr := &http.Transport{
		MaxIdleConnsPerHost: 4,
		// Below the receiver's idle timeout (Limits.IdleTimeout), so the
		// idle connection is closed by this side, never reused just as
		// the server closes it.
		IdleConnTimeout:    90 * time.Second,
		DisableCompression: true,
	}
	return &httpTransport{
		hc:        &http.Client{Transport: tr, Timeout: 30 * time.Second},
		shc:       &http.Client{Transport: tr},
		from:      from,
		keepalive: keepalive,
		streams:   make(map[string]*outStream),
	}
}

// setHeaders marks a request as replication from this node.
func (t *httpTransport) setHeaders(req *http.Request) {
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(headerClient, "1")
	req.Header.Set(headerFrom, t.from)
}

func (t *httpTransport) Send(peer, addr, kind string, body []byte) error {
	k, ok := kindIndex(kind)
	if !ok {
		return fmt.Errorf("send %s to %s: unknown kind", kind, peer)
	}
	s, err := t.stream(peer, addr)
	if err != nil {
		return err
	}
	if len(body) > maxFrame {
		return fmt.Errorf("send %s to %s: %d bytes, over the frame limit %d", kind, peer, len(body), maxFrame)
	}
	frame := appendFrame(make([]byte, 0, 1+binary.MaxVarintLen64+len(body)), k, body)
	s.sent.Store(time.Now().UnixNano())
	if _, err := s.pw.Write(frame); err != nil {
		t.mu.Lock()
		if t.streams[peer] == s {
			delete(t.streams, peer)
		}
		t.mu.Unlock()
		return fmt.Errorf("%s to %s: stream: %w", kind, peer, err)
	}
	return nil
}

// stream returns the open stream to peer, opening one if needed.
func (t *httpTransport) stream(peer, addr string) (*outStream, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errTransportClosed
	}
	if s, ok := t.streams[peer]; ok {
		select {
		case <-s.dead:
		default:
			if s.addr == addr {
				return s, nil
			}
			s.pw.CloseWithError(errTransportClosed)
		}
	}
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", "http://"+addr+"/v1/internal/stream", pr)
	if err != nil {
		return nil, err
	}
	req.ContentLength = -1
	t.setHeaders(req)
	s := &outStream{addr: addr, pw: pw, dead: make(chan struct{})}
	s.sent.Store(time.Now().UnixNano())
	go s.keepAlive(t.keepalive)
	go func() {
		defer close(s.dead)
		resp, err := t.shc.Do(req)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			err = fmt.Errorf("stream to %s ended: %s", peer, resp.Status)
		}
		pr.CloseWithError(err)
	}()
	t.streams[peer] = s
	return s, nil
}

// keepAlive writes an empty frame whenever the stream has carried nothing
// for every, until the stream ends.
func (s *outStream) keepAlive(every time.Duration) {
	t := time.NewTicker(every / 2)
	defer t.Stop()
	ping := []byte{kindKeepalive, 0}
	for {
		select {
		case <-s.dead:
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, s.sent.Load())) < every {
			continue
		}
		s.sent.Store(time.Now().UnixNano())
		if _, err := s.pw.Write(ping); err != nil {
			return
		}
	}
}

var errTransportClosed = errors.New("transport closed")

func (t *httpTransport) Call(ctx context.Context, peer, addr, kind string, body []byte) ([]byte, error) {
	if len(body) > maxCall {
		return nil, fmt.Errorf("%s to %s: %d bytes, over the call limit %d", kind, peer, len(body), maxCall)
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v1/internal/"+kind, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	t.setHeaders(req)
	resp, err := t.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s to %s: %w", kind, peer, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCall+1))
	if err != nil {
		return nil, fmt.Errorf("%s to %s: read reply: %w", kind, peer, err)
	}
	if len(data) > maxCall {
		return nil, fmt.Errorf("%s to %s: %w: reply over %d bytes", kind, peer, store.ErrCorrupt, maxCall)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s to %s: %s: %s", kind, peer, resp.Status, bytes.TrimSpace(data))
	}
	return data, nil
}

// close ends every stream and idle connection.
func (t *httpTransport) close() {
	t.mu.Lock()
	t.closed = true
	for _, s := range t.streams {
		s.pw.CloseWithError(errTransportClosed)
	}
	t.streams = nil
	t.mu.Unlock()
	t.hc.CloseIdleConnections()
}

// counters count replication messages and bytes by kind. A call counts as
// one message sent and one received on each side (request and reply).
type counters struct {
	msgsSent, msgsRecv, bytesSent, bytesRecv atomic.Uint64
	kinds                                    map[string]*kindCounters // fixed at creation
}

// kindCounters count one kind of replication message.
type kindCounters struct {
	msgsSent, msgsRecv, bytesSent, bytesRecv atomic.Uint64
}

func newCounters() *counters {
	c := &counters{kinds: make(map[string]*kindCounters, len(kinds))}
	for _, k := range kinds {
		c.kinds[k] = &kindCounters{}
	}
	return c
}

func (c *counters) sent(kind string, n int) {
	c.msgsSent.Add(1)
	c.bytesSent.Add(uint64(n))
	if k := c.kinds[kind]; k != nil {
		k.msgsSent.Add(1)
		k.bytesSent.Add(uint64(n))
	}
}

func (c *counters) received(kind string, n int) {
	c.msgsRecv.Add(1)
	c.bytesRecv.Add(uint64(n))
	if k := c.kinds[kind]; k != nil {
		k.msgsRecv.Add(1)
		k.bytesRecv.Add(uint64(n))
	}
}

// countingTransport counts what passes through the wrapped transport.
type countingTransport struct {
	next Transport
	c    *counters
}

func (t *countingTransport) Call(ctx context.Context, peer, addr, kind string, body []byte) ([]byte, error) {
	t.c.sent(kind, len(body))
	reply, err := t.next.Call(ctx, peer, addr, kind, body)
	if err == nil {
		t.c.received(kind, len(reply))
	}
	return reply, err
}

func (t *countingTransport) Send(peer, addr, kind string, body []byte) error {
	err := t.next.Send(peer, addr, kind, body)
	if err == nil {
		t.c.sent(kind, len(body))
	}
	return err
}
