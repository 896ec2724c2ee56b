package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
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
}

// Message kinds.
const (
	kindPush   = "push"   // body: batch of entries; reply: empty
	kindDigest = "digest" // body: digest; reply: differing buckets
	kindSync   = "sync"   // body: buckets + summaries; reply: entries + wanted keys
)

var kinds = []string{kindPush, kindDigest, kindSync}

// maxMessage bounds a replication message body.
const maxMessage = 64 << 20

// httpTransport sends messages as POST /v1/internal/KIND over HTTP/1.1
// with keep-alive connections.
type httpTransport struct {
	hc   *http.Client
	from string // this node's name, sent so the receiver can apply its rules to the reply
}

// headerFrom names the sending node on replication requests.
const headerFrom = "X-Peerctl-From"

func newHTTPTransport(from string) *httpTransport {
	tr := &http.Transport{
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &httpTransport{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, from: from}
}

func (t *httpTransport) Call(ctx context.Context, peer, addr, kind string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v1/internal/"+kind, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(headerFrom, t.from)
	resp, err := t.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s to %s: %w", kind, peer, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxMessage+1))
	if err != nil {
		return nil, fmt.Errorf("%s to %s: read reply: %w", kind, peer, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s to %s: %s: %s", kind, peer, resp.Status, bytes.TrimSpace(data))
	}
	return data, nil
}

func (t *httpTransport) close() { t.hc.CloseIdleConnections() }

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
