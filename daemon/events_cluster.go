package daemon

// The merged cluster stream (GET /v1/events?cluster=1): this node's own
// events plus the stream of every other member whose API may answer
// (alive or suspect), opened directly at the member's API address. Every
// eventClusterLook the handler compares the members with the streams it
// holds: it opens streams to members that appeared (or came back), and
// retries a lost one at that pace. Each member's stream joined or lost is
// reported as a "stream" event. Events from all streams go through one
// bounded queue to the client: a client that falls behind is dropped, as
// on a node's own stream, and with it every upstream stream.

import (
	"context"
	"fmt"
	"net"
	"net/http"
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
	merged := make(chan *Event, eventSubBuffer)
	over := make(chan struct{})
	var overOnce sync.Once
	put := func(ev *Event) bool {
		select {
		case merged <- ev:
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
			st, err := NewClientWith(addr, eventsHC).Events(ctx, "", kindList, false)
			if err != nil {
				if ctx.Err() == nil && kinds&kindBits[api.EventStreamStatus] != 0 {
					put(&Event{Kind: api.EventStreamStatus, Peer: name, Status: "lost", Reason: oneLineErr(err)})
				}
				return
			}
			defer st.Close()
			if kinds&kindBits[api.EventStreamStatus] != 0 && !put(&Event{Kind: api.EventStreamStatus, Peer: name, Status: "joined"}) {
				return
			}
			for ev := range st.C {
				if !put(&ev) {
					return
				}
			}
			if ctx.Err() == nil && kinds&kindBits[api.EventStreamStatus] != 0 {
				why := "stream ended"
				if err := st.Err(); err != nil {
					why = oneLineErr(err)
				}
				put(&Event{Kind: api.EventStreamStatus, Peer: name, Status: "lost", Reason: why})
			}
		}()
	}
	look := func() {
		for _, m := range s.a.Members() {
			if m.Name == s.a.cfg.Name || streams[m.Name] || m.API == "" || len(streams) >= maxClusterStreams {
				continue
			}
			if m.Status == "alive" || m.Status == "suspect" {
				open(m.Name, m.API)
			}
		}
	}
	sw := newSSEWriter(w)
	if err := sw.start(); err != nil {
		return
	}
	seen := map[string]string{} // member -> its stream's last status reported
	look()
	tick := time.NewTicker(eventClusterLook)
	defer tick.Stop()
	hb := time.NewTicker(api.EventHeartbeat)
	defer hb.Stop()
	for {
		select {
		case b := <-sub.ch:
			if sw.data(b) != nil || sw.flush() != nil {
				return
			}
		case ev := <-merged:
			if ev.Kind == api.EventStreamStatus {
				if seen[ev.Peer] == ev.Status {
					continue // a member still unreachable: said once
				}
				seen[ev.Peer] = ev.Status
				ev.Node, ev.Time = h.node, h.now().UTC().Format(api.EventTimeFormat)
			}
			if sw.event(ev) != nil {
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

// eventsHC opens members' streams for merged streams: connecting and the
// reply's header are bounded, the stream itself is not.
var eventsHC = &http.Client{Transport: &http.Transport{
	DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	ResponseHeaderTimeout: 5 * time.Second,
	MaxIdleConnsPerHost:   2,
	IdleConnTimeout:       30 * time.Second,
}}
