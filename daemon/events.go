package daemon

// The event stream (GET /v1/events; the wire format is described in
// internal/api/events.go).
//
// An eventHub fans events out to subscribers. Emitting is cheap and never
// blocks: with no subscriber it is one atomic load; with some, it takes
// the hub's lock, encodes the event once and offers it to each subscriber's
// buffered channel without waiting. A subscriber whose buffer is full has
// fallen behind: the hub removes it and closes its over channel, and its
// handler sends a final "dropped" event and ends the stream. Write and
// apply events above api.EventSampleRate per second are sampled (counted,
// not sent); the next one sent carries the count.
//
// Each stream's handler replaces the server's read and write timeouts,
// which would cut it: reads get no deadline (a GET has no body), each write
// its own (eventWriteTimeout), as the replication stream does
// (transport.go). Member, fault, leader and stream events are flushed at
// once; write, apply and sync events, the bulk, in batches, eventFlushDelay
// after the first unflushed one. A comment line every api.EventHeartbeat keeps
// an idle stream alive through proxies and shows a dead client.
//
// Sources: events_member.go (member), events_fault.go (fault), the
// one-line hooks in agent.go (write), replicate.go (apply, sync); leader
// events are for the coordination group to send (eventHub.leader).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/store"
)

// Event is one event of the stream (api.Event).
type Event = api.Event

const (
	// maxEventSubs caps the streams a daemon serves at once (a merged
	// cluster stream counts one here and one at every member).
	maxEventSubs = 64
	// eventSubBuffer is how many events a subscriber may fall behind
	// before it is dropped.
	eventSubBuffer = 512
	// eventWriteTimeout bounds one write to a stream's client.
	eventWriteTimeout = 10 * time.Second
)

// kindMask is a set of event kinds.
type kindMask uint16

var kindBits = func() map[string]kindMask {
	m := map[string]kindMask{}
	for i, k := range api.EventKinds {
		m[k] = 1 << i
	}
	return m
}()

const allKinds kindMask = 1<<16 - 1

// parseKinds parses ?kinds=a,b; "" means all.
func parseKinds(s string) (kindMask, error) {
	if strings.TrimSpace(s) == "" {
		return allKinds, nil
	}
	var m kindMask
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		b, ok := kindBits[k]
		if !ok {
			return 0, fmt.Errorf("unknown event kind %q in ?kinds=: the kinds are %s", k, strings.Join(api.EventKinds, ", "))
		}
		m |= b
	}
	return m, nil
}

// eventHub fans a node's events out to its subscribers. Its methods are
// safe for concurrent use and never block on a subscriber; every method
// is a no-op on a nil hub.
type eventHub struct {
	node string
	now  func() time.Time
	n    atomic.Int32 // subscribers: emit returns at once when 0

	wantA atomic.Uint32 // want, for a check without the lock
	write sampler       // write events, before the lock
	apply sampler       // apply events, before the lock

	mu     sync.Mutex // guards subs, want, last, closed
	subs   map[*eventSub]struct{}
	want   kindMask  // union of the subscribers' kinds
	last   time.Time // time of the last event: never goes back
	closed bool

	done chan struct{} // closed by close: every stream ends

	faults faultWatch    // events_fault.go
	kick   chan struct{} // wakes the member watcher (events_member.go)
}

// eventSub is one subscriber.
type eventSub struct {
	kinds kindMask
	ch    chan []byte   // encoded events
	over  chan struct{} // closed when the hub dropped the subscriber
}

// sampler passes at most rate events in each wall-clock second and
// counts the rest, without a lock: it runs on the write path.
type sampler struct {
	sec     atomic.Int64 // the second (Unix time) n counts in
	n       atomic.Int64
	skipped atomic.Uint64
}

// take reports whether an event at now may be sent and, if so, how many
// were skipped since the last one sent. Under concurrent calls the rate
// is approximate; every skipped event is counted once.
func (s *sampler) take(now time.Time, rate int) (bool, uint64) {
	sec := now.Unix()
	if old := s.sec.Load(); old != sec && s.sec.CompareAndSwap(old, sec) {
		s.n.Store(0)
	}
	if s.n.Add(1) > int64(rate) {
		s.skipped.Add(1)
		return false, 0
	}
	return true, s.skipped.Swap(0)
}

func newEventHub(node string) *eventHub {
	return &eventHub{node: node, now: time.Now, subs: map[*eventSub]struct{}{}, done: make(chan struct{}),
		kick: make(chan struct{}, 1)}
}

// active reports whether anyone listens: one atomic load.
func (h *eventHub) active() bool { return h != nil && h.n.Load() > 0 }

// errTooManyStreams refuses a subscriber over maxEventSubs.
var errTooManyStreams = fmt.Errorf("too many event streams (limit %d): close one and retry", maxEventSubs)

// subscribe adds a subscriber for kinds.
func (h *eventHub) subscribe(kinds kindMask) (*eventSub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("shutting down")
	}
	if len(h.subs) >= maxEventSubs {
		return nil, errTooManyStreams
	}
	s := &eventSub{kinds: kinds, ch: make(chan []byte, eventSubBuffer), over: make(chan struct{})}
	h.subs[s] = struct{}{}
	h.want |= kinds
	h.wantA.Store(uint32(h.want))
	h.n.Store(int32(len(h.subs)))
	return s, nil
}

// unsubscribe removes s; it may already be gone.
func (h *eventHub) unsubscribe(s *eventSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(s)
}

func (h *eventHub) removeLocked(s *eventSub) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	h.want = 0
	for o := range h.subs {
		h.want |= o.kinds
	}
	h.wantA.Store(uint32(h.want))
	h.n.Store(int32(len(h.subs)))
}

// close ends every stream and refuses new ones.
func (h *eventHub) close() {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

// emit stamps ev with the time and node and offers it to every subscriber
// that wants its kind. It never blocks. It does not sample: writeEvent and
// applied do, before they build the event.
func (h *eventHub) emit(ev *Event) {
	if !h.active() {
		return
	}
	bit := kindBits[ev.Kind]
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.want&bit == 0 {
		return
	}
	now := h.now()
	if now.Before(h.last) {
		now = h.last
	}
	h.last = now
	ev.Time = now.UTC().Format(api.EventTimeFormat)
	ev.Node = h.node
	b, err := json.Marshal(ev)
	if err != nil {
		return // every field marshals
	}
	h.offerLocked(bit, b)
}

// offerLocked offers b to every subscriber whose kinds include bit,
// dropping (and signalling over) one whose buffer is full. h.mu is held.
func (h *eventHub) offerLocked(bit kindMask, b []byte) {
	for s := range h.subs {
		if s.kinds&bit == 0 {
			continue
		}
		select {
		case s.ch <- b:
		default:
			h.removeLocked(s)
			close(s.over)
		}
	}
}

// emitRaw offers an encoded event of kind to every subscriber that wants
// it, as it is (a member's event passed on by a merged stream). It never
// blocks.
func (h *eventHub) emitRaw(kind string, b []byte) {
	if !h.active() {
		return
	}
	bit, ok := kindBits[kind]
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.want&bit == 0 {
		return
	}
	h.offerLocked(bit, bytes.Clone(b))
}

// wants reports, without the lock, whether a subscriber wants kind.
func (h *eventHub) wants(kind string) bool {
	return h.active() && kindMask(h.wantA.Load())&kindBits[kind] != 0
}

// writeEvent reports a local write, sampled (sampler).
func (h *eventHub) writeEvent(e store.Entry) {
	if !h.wants(api.EventWrite) {
		return
	}
	ok, skipped := h.write.take(h.now(), api.EventSampleRate)
	if !ok {
		return
	}
	h.emit(&Event{Kind: api.EventWrite, Key: e.Key, Version: e.Version.String(), Deleted: e.Deleted, Sampled: skipped})
}

// applied reports entries from a peer that changed the store, sampled.
func (h *eventHub) applied(es []store.Entry) {
	if !h.wants(api.EventApply) {
		return
	}
	now := h.now()
	for _, e := range es {
		ok, skipped := h.apply.take(now, api.EventSampleRate)
		if !ok {
			continue
		}
		lat := float64(max(now.UnixMilli()-e.Version.TS.WallMillis(), 0))
		h.emit(&Event{Kind: api.EventApply, Key: e.Key, Version: e.Version.String(), Deleted: e.Deleted,
			From: e.Version.Node, LatencyMS: &lat, Sampled: skipped})
	}
}

// syncRound reports an anti-entropy round this node started with peer.
func (h *eventHub) syncRound(peer string, sent, received int, err error) {
	if !h.active() {
		return
	}
	ev := &Event{Kind: api.EventSync, Peer: peer, Sent: &sent, Received: &received}
	if err != nil {
		ev.Error = err.Error()
	}
	h.emit(ev)
}

// leader reports a change of leader (for the coordination group).
func (h *eventHub) leader(leader string, term uint64) {
	if !h.active() {
		return
	}
	h.emit(&Event{Kind: api.EventLeader, Leader: leader, Term: term})
}

// serveEvents serves GET /v1/events.
func (s *httpServer) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kinds, err := parseKinds(q.Get("kinds"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if v := q.Get("cluster"); v != "" && v != "0" && v != "false" {
		s.serveClusterEvents(w, r, kinds)
		return
	}
	h := s.a.events
	sub, err := h.subscribe(kinds)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	defer h.unsubscribe(sub)
	sw := newSSEWriter(w)
	if err := sw.start(); err != nil {
		return
	}
	defer sw.stop()
	pumpEvents(r, sw, h, sub, nil, nil)
}

// pumpEvents writes the events of own (this node's) and merged (the
// members', nil for a node's own stream) to sw, with a heartbeat comment
// every api.EventHeartbeat, until the client goes, a write fails, either
// subscription is dropped for falling behind (said in a final event), or
// h or feedDone (nil: never) closes.
func pumpEvents(r *http.Request, sw *sseWriter, h *eventHub, own, merged *eventSub, feedDone <-chan struct{}) {
	var mergedCh <-chan []byte
	var mergedOver <-chan struct{}
	if merged != nil {
		mergedCh, mergedOver = merged.ch, merged.over
	}
	hb := time.NewTicker(api.EventHeartbeat)
	defer hb.Stop()
	for {
		var b []byte
		select {
		case b = <-own.ch:
		case b = <-mergedCh:
		case <-sw.due():
			if sw.flush() != nil {
				return
			}
			continue
		case <-own.over:
			sw.final(h, fmt.Sprintf("client fell behind: %d events were waiting for it", eventSubBuffer))
			return
		case <-mergedOver:
			sw.final(h, fmt.Sprintf("client fell behind: %d events from the members were waiting for it", eventSubBuffer))
			return
		case <-hb.C:
			if sw.comment("ping") != nil {
				return
			}
			continue
		case <-h.done:
			return
		case <-feedDone:
			return
		case <-r.Context().Done():
			return
		}
		if sw.data(b) != nil || sw.sent(b) != nil {
			return
		}
	}
}

// sseWriter writes Server-Sent Events to a client with a deadline per
// write, not the server's. Bulk events (write, apply, sync) are flushed
// eventFlushDelay after the first one not yet flushed, so that a busy
// stream sends one packet per batch rather than one per event; the rest at
// once. It is used by one goroutine.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timer   *time.Timer // runs while pending
	pending bool        // written, not flushed
	set     time.Time   // when the write deadline was last moved
}

// eventFlushDelay is how long an event may wait for others to share its
// flush.
const eventFlushDelay = 100 * time.Millisecond

// sent flushes now after an event that should not wait (b is its JSON),
// or makes sure a flush is due soon after a bulk one.
func (sw *sseWriter) sent(b []byte) error {
	switch rawKind(b) {
	case api.EventWrite, api.EventApply, api.EventSync:
		sw.soon()
		return nil
	}
	return sw.flush()
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// soon makes sure a flush is due within eventFlushDelay.
func (sw *sseWriter) soon() {
	if sw.pending {
		return
	}
	sw.pending = true
	if sw.timer == nil {
		sw.timer = time.NewTimer(eventFlushDelay)
	} else {
		sw.timer.Reset(eventFlushDelay)
	}
}

// due fires when a flush is due; nil (never) when none is pending.
func (sw *sseWriter) due() <-chan time.Time {
	if !sw.pending {
		return nil
	}
	return sw.timer.C
}

func (sw *sseWriter) stop() {
	if sw.timer != nil {
		sw.timer.Stop()
	}
}

// streamDeadlines lifts the server's read and write deadlines from a
// streamed response: a GET has no body to read, and each write sets its
// own deadline.
func streamDeadlines(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
}

func (sw *sseWriter) start() error {
	streamDeadlines(sw.w)
	h := sw.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	sw.w.WriteHeader(http.StatusOK)
	return sw.comment("peerctl events")
}

// deadline gives the writes that follow eventWriteTimeout, give or take a
// second (moving it for every event would cost more than the event).
func (sw *sseWriter) deadline() {
	if now := time.Now(); now.Sub(sw.set) > time.Second {
		sw.rc.SetWriteDeadline(now.Add(eventWriteTimeout))
		sw.set = now
	}
}

// data writes one event without flushing.
func (sw *sseWriter) data(b []byte) error {
	sw.deadline()
	if _, err := sw.w.Write([]byte("data: ")); err != nil {
		return err
	}
	if _, err := sw.w.Write(b); err != nil {
		return err
	}
	_, err := sw.w.Write([]byte("\n\n"))
	return err
}

func (sw *sseWriter) flush() error {
	sw.deadline()
	sw.pending = false
	return sw.rc.Flush()
}

func (sw *sseWriter) comment(text string) error {
	sw.deadline()
	if _, err := sw.w.Write([]byte(": " + text + "\n\n")); err != nil {
		return err
	}
	return sw.flush()
}

// event encodes and writes ev, flushed.
func (sw *sseWriter) event(ev *Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if err := sw.data(b); err != nil {
		return err
	}
	return sw.flush()
}

// final writes the "dropped" event that ends a stream.
func (sw *sseWriter) final(h *eventHub, reason string) {
	ev := &Event{Kind: api.EventDropped, Node: h.node, Time: h.now().UTC().Format(api.EventTimeFormat), Reason: reason}
	sw.event(ev)
}
