package api

// The event stream: GET /v1/events serves Server-Sent Events, one JSON
// Event per "data:" line, each followed by a blank line; a comment line
// (": ping") every EventHeartbeat keeps proxies and idle timers from
// closing a quiet stream. Query parameters:
//
//	kinds=member,fault   only these kinds (EventKinds); default all
//	node=NAME            the stream of that member (forwarded, as every endpoint)
//	cluster=1            every reachable member's stream merged (each event's
//	                     node says who reported it); members that join are
//	                     added, and a "stream" event says when a member's
//	                     stream is joined or lost
//
// Order: the events of one node arrive in the order that node emitted them
// (their time never goes back). A merged stream interleaves nodes as their
// events arrive. A client that does not keep up is dropped: it gets a final
// "dropped" event and the stream ends. Above EventSampleRate events per
// second of one kind, write and apply events are sampled: the next one sent
// carries in Sampled how many of its kind were left out since the previous
// one. The daemon serves at most a fixed number of streams (503 beyond).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Event kinds.
const (
	EventMember       = "member"  // a member's status changed as the reporting node sees it
	EventWrite        = "write"   // a local write (put or delete) accepted by the reporting node
	EventApply        = "apply"   // an entry from a peer changed the reporting node's store
	EventSync         = "sync"    // an anti-entropy round the reporting node started ended
	EventFault        = "fault"   // a fault was installed or lifted in the reporting node's fault table
	EventLeader       = "leader"  // the reporting node learned of a new leader (coordination group)
	EventDropped      = "dropped" // final: the stream is closed because the client fell behind
	EventStreamStatus = "stream"  // cluster streams only: a member's stream was joined or lost
)

// EventKinds lists the kinds a client may ask for with ?kinds=.
var EventKinds = []string{EventMember, EventWrite, EventApply, EventSync, EventFault, EventLeader, EventStreamStatus}

// EventTimeFormat is Event.Time's layout: RFC 3339 with milliseconds, UTC.
const EventTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// EventHeartbeat is how often an idle stream carries a comment line.
const EventHeartbeat = 15 * time.Second

// EventSampleRate is the number of write (and of apply) events per second
// a node sends before it samples them.
const EventSampleRate = 50

// Event is one event of the stream. Fields beyond Time, Node and Kind
// belong to kinds as noted; empty ones are left out of the JSON.
type Event struct {
	Time string `json:"time"` // EventTimeFormat, when the reporting node emitted it
	Node string `json:"node"` // the reporting node
	Kind string `json:"kind"`

	// member: Member's status as Node sees it: alive, suspect, failed,
	// leaving or left. DetectedBy, for suspect and failed: the node whose
	// suspicion reached Node first (Node itself if its own probe failed),
	// when Node's memberlist held it; empty when not known (for example a
	// failure learnt by push/pull without a suspicion seen here).
	Member     string `json:"member,omitempty"`
	Status     string `json:"status,omitempty"`
	DetectedBy string `json:"detected_by,omitempty"`

	// write, apply: Key at Version (store version "TS@node"); Deleted for
	// a tombstone. apply: From, the node that wrote it (the version's
	// origin); LatencyMS, Node's wall clock at apply minus the write's HLC
	// wall time (so it includes clock skew between the two nodes).
	Key       string   `json:"key,omitempty"`
	Version   string   `json:"version,omitempty"`
	Deleted   bool     `json:"deleted,omitempty"`
	From      string   `json:"from,omitempty"`
	LatencyMS *float64 `json:"latency_ms,omitempty"`

	// write, apply: how many events of this kind were left out (sampled)
	// since the previous one sent, on this stream's node.
	Sampled uint64 `json:"sampled,omitempty"`

	// sync: Peer, and the entries Node sent to it (Sent) and received from
	// it that changed its store (Received); Error if the round failed.
	// stream: Peer is the member whose stream was joined or lost.
	Peer     string `json:"peer,omitempty"`
	Sent     *int   `json:"sent,omitempty"`
	Received *int   `json:"received,omitempty"`
	Error    string `json:"error,omitempty"`

	// fault: ID and Fault (the request kind: partition, isolate, pause,
	// delay, loss), Parties (the nodes it names, FaultRecord.Named),
	// Action installed or lifted (Reason: healed, expired or purged), Text
	// (FaultRequest.Describe) and the Request as ordered. Reported when
	// the record enters or leaves Node's copy of the cluster's fault table,
	// whether or not Node is a party.
	ID      string        `json:"id,omitempty"`
	Fault   string        `json:"fault,omitempty"`
	Parties []string      `json:"parties,omitempty"`
	Action  string        `json:"action,omitempty"`
	Text    string        `json:"text,omitempty"`
	Request *FaultRequest `json:"request,omitempty"`

	// leader: Leader (empty: no leader known) and Term.
	Leader string `json:"leader,omitempty"`
	Term   uint64 `json:"term,omitempty"`

	// dropped: Reason. stream: Status "joined" or "lost", Reason why lost.
	// fault: why lifted.
	Reason string `json:"reason,omitempty"`
}

// When returns the event's time, or the zero time if it does not parse.
func (e *Event) When() time.Time {
	t, _ := time.Parse(EventTimeFormat, e.Time)
	return t
}

// maxEventLine bounds one line of the stream a client reads.
const maxEventLine = 1 << 20

// EventStream is an open event stream. Read events from C; C is closed
// when the stream ends: the context was cancelled, Close was called, the
// daemon ended it or the connection broke. Err then says why.
type EventStream struct {
	C      <-chan Event
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

// Close ends the stream and waits for its reader to stop. It may be called
// more than once.
func (s *EventStream) Close() {
	s.cancel()
	<-s.done
}

// Err returns why the stream ended once C is closed: nil after Close or a
// cancelled context, else the error (a "dropped" event is delivered on C
// before the stream ends with ErrDropped).
func (s *EventStream) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// ErrDropped ends a stream that the daemon closed because the client fell
// behind; the last event on C was the "dropped" event.
var ErrDropped = errors.New("event stream dropped by the daemon: the client fell behind")

// Events opens the event stream of node ("" the daemon itself) with the
// given kinds (nil: all), or of the whole cluster merged. It returns once
// the daemon has accepted the stream (an error if not: unknown kind, too
// many streams, unknown node). The events arrive on the returned stream's
// C, unbuffered beyond a few: a reader that stops reading makes the daemon
// drop the stream.
func (c *Client) Events(ctx context.Context, node string, kinds []string, cluster bool) (*EventStream, error) {
	q := url.Values{}
	if len(kinds) > 0 {
		q.Set("kinds", strings.Join(kinds, ","))
	}
	if cluster {
		q.Set("cluster", "1")
	}
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, "GET", c.url("/v1/events", node, q), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set(HeaderClient, "1")
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// The client's overall timeout would cut the stream: only the
	// transport is shared.
	hc := &http.Client{Transport: c.hc.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open event stream at %s: %w", c.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		defer cancel()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var ae Error
		if json.Unmarshal(data, &ae) == nil && ae.Error != "" {
			return nil, &StatusError{Code: resp.StatusCode, Kind: ae.Code, Msg: ae.Error}
		}
		return nil, &StatusError{Code: resp.StatusCode, Msg: fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(data)))}
	}
	ch := make(chan Event, 16)
	s := &EventStream{C: ch, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ch) // after done: Err is set once C is closed
		defer close(s.done)
		defer resp.Body.Close()
		err := ReadEvents(resp.Body, func(ev Event) error {
			select {
			case ch <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
			if ev.Kind == EventDropped {
				return ErrDropped
			}
			return nil
		})
		if ctx.Err() != nil {
			err = nil
		} else if err == nil {
			err = fmt.Errorf("event stream from %s ended", c.addr)
		}
		s.err = err
	}()
	return s, nil
}

// ReadEvents reads a Server-Sent Events body of Events and calls fn with
// each until r ends (nil) or fn or the read fails (that error). Comment
// lines and fields other than data are skipped; the data lines of one
// message are joined with newlines, as EventSource does.
func ReadEvents(r io.Reader, fn func(Event) error) error {
	return ReadEventData(r, func(data []byte) error {
		var ev Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return fmt.Errorf("decode event %q: %w", data, err)
		}
		return fn(ev)
	})
}

// ReadEventData is ReadEvents without decoding: fn gets each message's
// data, valid only until fn returns.
func ReadEventData(r io.Reader, fn func([]byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if len(data) == 0 {
				continue
			}
			if err := fn(data); err != nil {
				return err
			}
			data = data[:0]
			continue
		}
		if line[0] == ':' {
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(v, []byte(" "))...)
			if len(data) > maxEventLine {
				return fmt.Errorf("event over %d bytes", maxEventLine)
			}
		}
	}
	return sc.Err()
}
