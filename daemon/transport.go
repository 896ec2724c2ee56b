package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerctl/peerctl/store"
)

// Transport carries replication messages between daemons, both ways: every
// byte of replication a node sends goes through Call and Send, and every
// message it receives is handed to the Handler set with SetHandler. That
// makes it the one place to count traffic and to inject faults (drop,
// delay, partition, pause) by wrapping it: a wrapper applies its send rules
// in Call and Send, and its receive rules by wrapping the Handler it passes
// on (faultnet.go). Membership traffic (serf/memberlist) has its own
// transport. httpTransport is the real one; tests also use an in-memory one
// (inmem_test.go).
type Transport interface {
	// Call sends a message of the given kind to the peer whose API listens
	// at addr and returns its reply. It may block until ctx is done.
	Call(ctx context.Context, peer, addr, kind string, body []byte) ([]byte, error)
	// Send sends a one-way message to the peer over a long-lived stream:
	// no reply, so one message on the wire. It returns once the message is
	// handed to the connection, not when the peer has applied it; a message
	// lost with a broken stream is repaired by anti-entropy. It may block
	// while the peer does not read, for at most sendTimeout. It is safe for
	// concurrent use.
	Send(peer, addr, kind string, body []byte) error
	// SetHandler sets the handler of the messages peers send this node.
	// Call it once, before the node is reachable; a wrapper passes on h
	// wrapped in its own receive rules.
	SetHandler(h Handler)
}

// Handler receives replication messages, as hashicorp/raft's Consumer and
// memberlist's PacketCh do. HandleMessage serves one message of kind from
// the peer named from and returns the reply (for a one-way message, call
// is false and the reply is dropped). Malformed input returns an error
// (a *rejectError says why, for counting) and changes nothing. It may
// block until ctx is done and is called concurrently.
type Handler interface {
	HandleMessage(ctx context.Context, from, kind string, body []byte, call bool) ([]byte, error)
}

// HandleMessage makes the replicator the transport's Handler.
func (r *replicator) HandleMessage(_ context.Context, _ string, kind string, body []byte, call bool) ([]byte, error) {
	if call {
		return r.handle(kind, body)
	}
	return r.handleOneWay(kind, body)
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
// close a stream that stays silent. It also serves those endpoints
// (register): both halves of the protocol live in this file, as in
// groupcache's HTTPPool. The API server mounts it behind its guard, the
// API token and the body budget. With a keyring (secure), every message of
// every kind is sealed both ways: call bodies and replies, the stream's
// opening and each frame (envelope.go); a message that does not open is
// refused with 403 and counted, before any handler sees it.
type httpTransport struct {
	base      *http.Transport
	hc        *http.Client
	shc       *http.Client  // for streams: no overall timeout
	from      string        // this node's name, sent so the receiver can apply its rules to the reply
	keepalive time.Duration // an idle stream gets an empty frame this often
	// sendTimeout bounds how long Send waits for a peer to take a frame:
	// a peer that is hung (or gone without a reset) has its stream closed
	// and the push fails, to be repaired by anti-entropy.
	sendTimeout time.Duration

	ctx    context.Context // cancelled by close: ends outgoing streams
	cancel context.CancelFunc
	wg     sync.WaitGroup // the goroutines of outgoing streams

	mu      sync.Mutex // guards streams, closed
	streams map[string]*outStream
	closed  bool

	// seal, if set, seals every message both ways (envelope.go): set by
	// secure before the transport is used.
	seal *sealer

	// Receive side.
	h       Handler
	lim     Limits
	log     *slog.Logger
	warns   *logLimiter         // warnings about what peers send, per address (report)
	dropped func(reason string) // counts a refused frame or body by reason (report)

	smu      sync.Mutex // guards in, byPeer, stopping
	in       map[*http.ResponseController]string
	byPeer   map[string]*http.ResponseController // the stream each peer name holds
	stopping bool
}

// outStream is the sending end of one stream to a peer.
type outStream struct {
	addr  string
	nonce []byte     // the opening's envelope nonce (sealed streams)
	mu    sync.Mutex // guards seq, and orders frames as numbered
	seq   uint64     // the next frame's number (sealed streams)
	pw    *io.PipeWriter
	dead  chan struct{} // closed when the request ended
	sent  atomic.Int64  // unix ns of the last frame written
}

// headerFrom names the sending node on replication requests.
const headerFrom = "X-Peerctl-From"

// headerAuth carries a sealed stream's opening envelope, base64; a sealed
// call carries headerSealed: 1 (envelope.go).
const (
	headerAuth   = "X-Peerctl-Auth"
	headerSealed = "X-Peerctl-Sealed"
)

// defaultSendTimeout is how long Send waits for a peer to take one frame.
const defaultSendTimeout = 15 * time.Second

// newHTTPTransport returns the transport of the node named from, with the
// limits lim (made whole with defaults) on what it serves. Refused input
// is logged to log through warns and counted with dropped: the
// replicator's, set with report before the API server starts.
func newHTTPTransport(from string, lim Limits, log *slog.Logger) *httpTransport {
	lim = lim.withDefaults()
	tr := &http.Transport{
		MaxIdleConnsPerHost: 64, // forwarded raft ops and raft RPCs run concurrently per peer
		// Below the receiver's idle timeout (Limits.IdleTimeout), so the
		// idle connection is closed by this side, never reused just as
		// the server closes it.
		IdleConnTimeout:    90 * time.Second,
		DisableCompression: true,
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &httpTransport{
		base:        tr,
		hc:          &http.Client{Transport: tr, Timeout: 30 * time.Second},
		shc:         &http.Client{Transport: tr},
		from:        from,
		keepalive:   lim.StreamKeepalive,
		sendTimeout: defaultSendTimeout,
		ctx:         ctx, cancel: cancel,
		streams: make(map[string]*outStream),
		lim:     lim, log: log,
		in:     make(map[*http.ResponseController]string),
		byPeer: make(map[string]*http.ResponseController),
	}
}

// secure makes the transport seal every message with seal (nil: none)
// and send its requests through wrap(its HTTP transport), which adds the
// API token and TLS (auth.go). Call it before the transport is used.
func (t *httpTransport) secure(seal *sealer, wrap func(*http.Transport) (http.RoundTripper, error)) error {
	t.seal = seal
	rt, err := wrap(t.base)
	if err != nil {
		return err
	}
	t.hc.Transport, t.shc.Transport = rt, rt
	return nil
}

// report sets where refused input is logged (warns, shared with the API's
// other warnings about a host) and counted (dropped, by reason).
func (t *httpTransport) report(warns *logLimiter, dropped func(string)) {
	t.warns, t.dropped = warns, dropped
}

// SetHandler sets the handler of received messages; call it before the
// API server starts.
func (t *httpTransport) SetHandler(h Handler) { t.h = h }

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
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.seal != nil {
		sealed, _, err := t.seal.sealSel(make([]byte, 0, envOverhead+len(body)), bindFrame(k, s.nonce, s.seq), body, frameSelector(s.nonce, s.seq))
		if err != nil {
			return fmt.Errorf("send %s to %s: seal: %w", kind, peer, err)
		}
		body = sealed
		s.seq++
	}
	frame := appendFrame(make([]byte, 0, 1+binary.MaxVarintLen64+len(body)), k, body)
	s.sent.Store(time.Now().UnixNano())
	// A peer that stops reading would block the write for ever: past the
	// deadline the stream is closed, which ends the write with an error.
	timer := time.AfterFunc(t.sendTimeout, func() {
		s.pw.CloseWithError(fmt.Errorf("peer took no frame for %v", t.sendTimeout))
	})
	_, err = s.pw.Write(frame)
	if !timer.Stop() && err != nil {
		err = fmt.Errorf("peer took no frame for %v: %w", t.sendTimeout, err)
	}
	if err != nil {
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
	req, err := http.NewRequestWithContext(t.ctx, "POST", "http://"+addr+"/v1/internal/stream", pr)
	if err != nil {
		return nil, err
	}
	req.ContentLength = -1
	t.setHeaders(req)
	s := &outStream{addr: addr, pw: pw, dead: make(chan struct{})}
	if t.seal != nil {
		open, nonce, err := t.seal.seal(nil, bindStream(t.from), nil)
		if err != nil {
			return nil, fmt.Errorf("stream to %s: seal: %w", peer, err)
		}
		req.Header.Set(headerAuth, base64.StdEncoding.EncodeToString(open))
		s.nonce = nonce
	}
	s.sent.Store(time.Now().UnixNano())
	t.wg.Add(2) // under t.mu, with closed false: close waits for both
	go func() {
		defer t.wg.Done()
		s.keepAlive(t.keepalive)
	}()
	go func() {
		defer t.wg.Done()
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
		s.mu.Lock()
		s.sent.Store(time.Now().UnixNano())
		_, err := s.pw.Write(ping)
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

var errTransportClosed = errors.New("transport closed")

func (t *httpTransport) Call(ctx context.Context, peer, addr, kind string, body []byte) ([]byte, error) {
	if len(body) > maxCall {
		return nil, fmt.Errorf("%s to %s: %d bytes, over the call limit %d", kind, peer, len(body), maxCall)
	}
	var reqNonce []byte
	if t.seal != nil {
		sealed, nonce, err := t.seal.seal(make([]byte, 0, envOverhead+len(body)), bindCall(kind, t.from), body)
		if err != nil {
			return nil, fmt.Errorf("%s to %s: seal: %w", kind, peer, err)
		}
		body, reqNonce = sealed, nonce
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v1/internal/"+kind, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	t.setHeaders(req)
	if t.seal != nil {
		req.Header.Set(headerSealed, "1")
	}
	resp, err := t.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s to %s: %w", kind, peer, err)
	}
	defer resp.Body.Close()
	limit := maxCall + t.overhead()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%s to %s: read reply: %w", kind, peer, err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%s to %s: %w: reply over %d bytes", kind, peer, store.ErrCorrupt, limit)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s to %s: %s: %s", kind, peer, resp.Status, bytes.TrimSpace(data))
	}
	if t.seal != nil {
		plain, _, err := t.seal.open(bindReply(kind, reqNonce), data)
		if err != nil {
			return nil, fmt.Errorf("%s to %s: reply: %w", kind, peer, t.seal.count(err))
		}
		data = plain
	}
	return data, nil
}

// close ends every stream, sent and received, and idle connection, and
// waits for the goroutines of the sent ones. Received streams end as their
// handlers see the deadline; the API server's shutdown waits for those.
func (t *httpTransport) close() {
	t.smu.Lock()
	t.stopping = true
	for rc := range t.in {
		rc.SetReadDeadline(time.Now())
	}
	t.smu.Unlock()
	t.mu.Lock()
	t.closed = true
	for _, s := range t.streams {
		s.pw.CloseWithError(errTransportClosed)
	}
	t.streams = nil
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	t.hc.CloseIdleConnections()
}

// register mounts the replication endpoints on mux: POST
// /v1/internal/stream (serveStream) and POST /v1/internal/KIND
// (serveCall). The API server applies its guard and body budget first.
func (t *httpTransport) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/internal/stream", t.serveStream)
	mux.HandleFunc("POST /v1/internal/{kind}", func(w http.ResponseWriter, r *http.Request) {
		t.serveCall(w, r, r.PathValue("kind"))
	})
}

// serveStream serves a peer's stream of one-way messages (frame.go) until
// the peer closes it, a frame is refused, or no frame (a keepalive
// included) arrives for Limits.StreamIdle. It replaces the server's read
// and write timeouts, which would cut a healthy stream. One stream per
// peer name: a new one from the same name ends the old.
func (t *httpTransport) serveStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	from := r.Header.Get(headerFrom)
	streamNonce, err := t.openStream(r, from)
	if err != nil {
		refuseStream(w, rc, authCode(err), err)
		return
	}
	var seq uint64
	t.smu.Lock()
	if t.stopping {
		t.smu.Unlock()
		refuseStream(w, rc, http.StatusServiceUnavailable, fmt.Errorf("shutting down"))
		return
	}
	if old, ok := t.byPeer[from]; ok {
		old.SetReadDeadline(time.Now()) // the peer reconnected: it gave the old one up
		delete(t.in, old)
	} else if len(t.in) >= t.lim.MaxStreams {
		t.smu.Unlock()
		t.warns.warn(t.log, r.RemoteAddr, "replication stream refused: stream limit reached", "from", from, "limit", t.lim.MaxStreams)
		refuseStream(w, rc, http.StatusServiceUnavailable, fmt.Errorf("too many replication streams (limit %d)", t.lim.MaxStreams))
		return
	}
	t.in[rc] = from
	t.byPeer[from] = rc
	t.smu.Unlock()
	defer func() {
		t.smu.Lock()
		delete(t.in, rc)
		if t.byPeer[from] == rc {
			delete(t.byPeer, from)
		}
		t.smu.Unlock()
	}()
	rc.SetWriteDeadline(time.Time{})
	br := bufio.NewReaderSize(r.Body, 64<<10)
	for {
		// Renew the idle deadline, unless close cut the stream meanwhile.
		t.smu.Lock()
		if _, ok := t.in[rc]; !ok || t.stopping {
			t.smu.Unlock()
			return
		}
		rc.SetReadDeadline(time.Now().Add(t.lim.StreamIdle))
		t.smu.Unlock()
		k, body, err := readFrame(br, maxFrame+t.overhead())
		if err != nil {
			t.endStream(w, rc, r, from, err)
			return
		}
		if k != kindKeepalive && t.seal != nil {
			body, _, err = t.seal.openSel(bindFrame(k, streamNonce, seq), body, true)
			if err != nil {
				t.refused(r, "replication stream frame refused", kinds[k], from, err)
				refuseStream(w, rc, http.StatusForbidden, fmt.Errorf("replication refused: %w", err))
				return
			}
			seq++
		}
		if k != kindKeepalive {
			_, err := t.h.HandleMessage(r.Context(), from, kinds[k], body, false)
			if err != nil && !errors.Is(err, errCutOff) {
				t.warns.warn(t.log, r.RemoteAddr, "rejected replication message", "kind", kinds[k], "from", from, "err", err)
			}
		}
		if bb, ok := r.Body.(*budgetBody); ok {
			// The frame is handled: its bytes are no longer held. After a
			// keepalive too, or an idle stream's keepalives would add up.
			bb.release()
		}
	}
}

// endStream counts and logs why a stream ended, and answers the peer if
// the stream is still up.
func (t *httpTransport) endStream(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, from string, err error) {
	t.smu.Lock()
	_, ok := t.in[rc]
	cut := !ok || t.stopping
	t.smu.Unlock()
	reason := ""
	switch {
	case cut:
		return // this node is stopping, or the peer opened a newer stream
	case errors.Is(err, errBusy):
		t.warns.warn(t.log, r.RemoteAddr, "replication stream closed: server busy", "from", from, "err", err)
		refuseStream(w, rc, http.StatusServiceUnavailable, err)
		return
	case errors.Is(err, errFrameOversize):
		reason = dropOversize
	case errors.Is(err, errFrameKind), errors.Is(err, errFrameLength):
		reason = dropFrame
	case errors.Is(err, os.ErrDeadlineExceeded):
		if errors.Is(err, errFrameTruncated) {
			reason = dropTruncated // a frame started and stalled
		}
		t.warns.warn(t.log, r.RemoteAddr, "replication stream idle: closing it", "from", from, "idle", t.lim.StreamIdle)
		if reason != "" {
			t.dropped(reason)
		}
		return
	case errors.Is(err, errFrameTruncated):
		reason = dropTruncated
	default:
		return // the peer closed the stream between frames
	}
	t.dropped(reason)
	t.warns.warn(t.log, r.RemoteAddr, "malformed replication stream: closing it", "from", from, "reason", reason, "err", err)
	if reason != dropTruncated {
		code := http.StatusBadRequest
		if reason == dropOversize {
			code = http.StatusRequestEntityTooLarge
		}
		refuseStream(w, rc, code, fmt.Errorf("%w: bad stream frame: %v", store.ErrCorrupt, err))
	}
}

// refuseStream answers a stream with an error and closes the connection
// at once: net/http would otherwise read on through the rest of the body,
// which a stream never ends.
func refuseStream(w http.ResponseWriter, rc *http.ResponseController, code int, err error) {
	rc.SetReadDeadline(time.Now())
	rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	w.Header().Set("Connection", "close")
	writeError(w, code, err)
}

// serveCall serves one replication call from a peer and writes the reply.
func (t *httpTransport) serveCall(w http.ResponseWriter, r *http.Request, kind string) {
	from := r.Header.Get(headerFrom)
	if err := t.checkSealed(r); err != nil {
		t.refused(r, "replication message refused", kind, from, err)
		writeError(w, authCode(err), fmt.Errorf("replication refused: %w", err))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(maxCall+t.overhead())))
	if errors.Is(err, errBusy) {
		t.warns.warn(t.log, r.RemoteAddr, "replication message refused: server busy", "kind", kind, "from", from, "err", err)
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	if err != nil {
		var mbe *http.MaxBytesError
		reason, code := dropTruncated, http.StatusBadRequest
		if errors.As(err, &mbe) {
			reason, code = dropOversize, http.StatusRequestEntityTooLarge
			err = fmt.Errorf("%w: body over %d bytes", store.ErrCorrupt, maxCall+t.overhead())
		}
		t.dropped(reason)
		t.warns.warn(t.log, r.RemoteAddr, "rejected replication message", "kind", kind, "from", from, "reason", reason, "err", err)
		writeError(w, code, err)
		return
	}
	var reqNonce []byte
	if t.seal != nil {
		plain, nonce, err := t.seal.open(bindCall(kind, from), body)
		if err == nil {
			err = t.seal.fresh(nonce)
		}
		if err != nil {
			t.refused(r, "replication message refused", kind, from, err)
			writeError(w, http.StatusForbidden, fmt.Errorf("replication refused: %w", err))
			return
		}
		body, reqNonce = plain, nonce
	}
	reply, err := t.h.HandleMessage(r.Context(), from, kind, body, true)
	var re *rejectError
	switch {
	case err == nil:
	case r.Context().Err() != nil:
		return // the peer gave up
	case errors.Is(err, errCutOff), errors.Is(err, errDropped):
		writeError(w, http.StatusServiceUnavailable, err)
		return
	case errors.As(err, &re):
		t.warns.warn(t.log, r.RemoteAddr, "rejected replication message", "kind", kind, "from", from, "err", err)
		writeError(w, http.StatusBadRequest, err)
		return
	default:
		t.warns.warn(t.log, r.RemoteAddr, "rejected replication message", "kind", kind, "from", from, "err", err)
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if t.seal != nil {
		reply, _, err = t.seal.seal(make([]byte, 0, envOverhead+len(reply)), bindReply(kind, reqNonce), reply)
		if err != nil {
			writeError(w, http.StatusInternalServerError, fmt.Errorf("seal reply: %w", err))
			return
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(reply)
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

// SetHandler passes h on: received messages are counted by the replicator
// (handle), which knows a message's kind only once it is accepted.
func (t *countingTransport) SetHandler(h Handler) { t.next.SetHandler(h) }

func (t *countingTransport) Send(peer, addr, kind string, body []byte) error {
	err := t.next.Send(peer, addr, kind, body)
	if err == nil {
		t.c.sent(kind, len(body))
	}
	return err
}
