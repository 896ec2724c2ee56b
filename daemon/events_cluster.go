package daemon

// The merged cluster stream (GET /v1/events?cluster=1): this node's own
// events plus the stream of every other member whose API may answer (all
// but those that left: a member failed in this node's view may only be cut
// off from gossip), opened directly at the member's API address. Every
// eventClusterLook the handler compares the members with the streams it
// holds: it opens streams to members that appeared (or came back), and
// retries a lost one at that pace. Each member's stream joined or lost is
// reported as a "stream" event. Events from all streams go through one
// bounded queue to the client: a client that falls behind is dropped, as
// on a node's own stream, and with it every upstream stream.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

const (
	eventClusterLook = time.Second
	// maxClusterStreams bounds the members one merged stream follows.
	maxClusterStreams = 1024
)

func (s *httpServer) serveClusterEvents(w http.ResponseWriter, r *http.Request, kinds kindMask) {
	h := s.a.events
	sub, err := h.subscribe(kinds)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	defer h.unsubscribe(sub)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var kindList []string
	for _, k := range api.EventKinds {
		if kinds&kindBits[k] != 0 {
			kindList = append(kindList, k)
		}
	}
	if kinds == allKinds {
		kindList = nil
	}
	q := url.Values{}
	if len(kindList) > 0 {
		q.Set("kinds", strings.Join(kindList, ","))
	}
	query := q.Encode()
	wantStream := kinds&kindBits[api.EventStreamStatus] != 0
	// merged carries members' events as they sent them (encoded: they are
	// passed on without decoding) and this handler's stream events.
	type item struct {
		data []byte
		ev   *Event
	}
	merged := make(chan item, eventSubBuffer)
	over := make(chan struct{})
	var overOnce sync.Once
	put := func(it item) bool {
		select {
		case merged <- it:
			return true
		case <-ctx.Done():
			return false
		default:
			overOnce.Do(func() { close(over) })
			return false
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	streams := map[string]bool{} // member -> stream open; touched by this goroutine only
	ended := make(chan string, maxClusterStreams)
	open := func(name, addr string) {
		streams[name] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				select {
				case ended <- name:
				case <-ctx.Done():
				}
			}()
			body, err := openMemberEvents(ctx, addr, query)
			if err != nil {
				if ctx.Err() == nil && wantStream {
					put(item{ev: &Event{Kind: api.EventStreamStatus, Peer: name, Status: "lost", Reason: oneLineErr(err)}})
				}
				return
			}
			defer body.Close()
			if wantStream && !put(item{ev: &Event{Kind: api.EventStreamStatus, Peer: name, Status: "joined"}}) {
				return
			}
			err = api.ReadEventData(body, func(data []byte) error {
				// One line of JSON from a member; its own "dropped" event
				// (it gave up on this node) is not the client's: the
				// stream's end says it.
				if bytes.IndexByte(data, '\n') >= 0 || bytes.Contains(data, droppedKind) {
					return nil
				}
				if !put(item{data: bytes.Clone(data)}) {
					return errStopMerge
				}
				return nil
			})
			if ctx.Err() == nil && wantStream && err != errStopMerge {
				why := "stream ended"
				if err != nil {
					why = oneLineErr(err)
				}
				put(item{ev: &Event{Kind: api.EventStreamStatus, Peer: name, Status: "lost", Reason: why}})
			}
		}()
	}
	look := func() {
		for _, m := range s.a.Members() {
			if m.Name == s.a.cfg.Name || streams[m.Name] || m.API == "" || len(streams) >= maxClusterStreams {
				continue
			}
			// A failed member may only be cut off from gossip (partition,
			// pause): its API can still answer, and its view is the other
			// side's. One that left is gone.
			if m.Status != "left" && m.Status != "leaving" {
				open(m.Name, m.API)
			}
		}
	}
	sw := newSSEWriter(w)
	if err := sw.start(); err != nil {
		return
	}
	defer sw.stop()
	seen := map[string]string{} // member -> its stream's last status reported
	writeItem := func(it item) error {
		ev := it.ev
		if ev == nil {
			return sw.data(it.data)
		}
		if seen[ev.Peer] == ev.Status {
			return nil // a member still unreachable: said once
		}
		seen[ev.Peer] = ev.Status
		ev.Node, ev.Time = h.node, h.now().UTC().Format(api.EventTimeFormat)
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		return sw.data(b)
	}
	look()
	tick := time.NewTicker(eventClusterLook)
	defer tick.Stop()
	hb := time.NewTicker(api.EventHeartbeat)
	defer hb.Stop()
	for {
		select {
		case b := <-sub.ch:
			if sw.data(b) != nil {
				return
			}
			sw.soon()
		case it := <-merged:
			if writeItem(it) != nil {
				return
			}
			sw.soon()
		case <-sw.due():
			if sw.flush() != nil {
				return
			}
		case name := <-ended:
			delete(streams, name)
		case <-tick.C:
			look()
		case <-sub.over:
			sw.final(h, fmt.Sprintf("client fell behind: %d events were waiting for it", eventSubBuffer))
			return
		case <-over:
			sw.final(h, fmt.Sprintf("client fell behind: %d events from the members were waiting for it", eventSubBuffer))
			return
		case <-hb.C:
			if sw.comment("ping") != nil {
				return
			}
		case <-h.done:
			return
		case <-r.Context().Done():
			return
		}
	}
}

var (
	droppedKind  = []byte(`"kind":"dropped"`)
	errStopMerge = errors.New("merged stream ended")
)

// openMemberEvents opens the event stream of the member whose API is at
// addr, with the query given, and returns its body.
func openMemberEvents(ctx context.Context, addr, query string) (io.ReadCloser, error) {
	u := "http://" + addr + "/v1/events"
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(headerClient, "1")
	resp, err := eventsHC.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return resp.Body, nil
}

// eventsHC opens members' streams for merged streams: connecting and the
// reply's header are bounded, the stream itself is not.
var eventsHC = &http.Client{Transport: &http.Transport{
	DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	ResponseHeaderTimeout: 5 * time.Second,
	MaxIdleConnsPerHost:   2,
	IdleConnTimeout:       30 * time.Second,
}}
