package daemon

// The merged cluster stream (GET /v1/events?cluster=1): this node's own
// events plus the stream of every other member whose API may answer (all
// but those that left: a member failed in this node's view may only be cut
// off from gossip), opened directly at the member's API address.
//
// The members' streams are shared: while any merged client is connected,
// one feed (clusterFeed) holds one stream (every kind) to each member and
// fans its events out, undecoded, through a hub of its own to every merged
// client, each with its kinds. So ten dashboards on one node cost each
// member one stream, not ten. Every eventClusterLook the feed compares the
// members with the streams it holds: it opens streams to members that
// appeared (or came back) and retries a lost one at that pace. Each
// member's stream joined or lost is reported once as a "stream" event; a
// client that connects later first gets a "joined" event for each stream
// already open. A merged client that falls behind is dropped with a final
// event, as on a node's own stream. The feed stops when its last client
// goes.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

const (
	eventClusterLook = time.Second
	// maxClusterStreams bounds the members a feed follows.
	maxClusterStreams = 1024
)

// clusterFeeds holds the current feed of a node's merged streams.
type clusterFeeds struct {
	mu  sync.Mutex // guards cur
	cur *clusterFeed
}

// clusterFeed is one generation of the shared member streams: started by
// its first client, stopped after its last.
type clusterFeed struct {
	hub    *eventHub // fans the members' events out to the merged clients
	cancel context.CancelFunc
	refs   int // clients; guarded by clusterFeeds.mu

	mu     sync.Mutex        // guards status
	status map[string]string // member -> its stream's last status reported (joined, lost)
}

// acquire returns the running feed, starting one if there is none.
func (s *httpServer) acquireFeed() *clusterFeed {
	cf := &s.a.feeds
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if cf.cur == nil {
		ctx, cancel := context.WithCancel(context.Background())
		f := &clusterFeed{hub: newEventHub(s.a.cfg.Name), cancel: cancel, status: map[string]string{}}
		cf.cur = f
		go s.runFeed(ctx, f)
	}
	cf.cur.refs++
	return cf.cur
}

// release drops a client of f; the last one stops it.
func (s *httpServer) releaseFeed(f *clusterFeed) {
	cf := &s.a.feeds
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if f.refs--; f.refs == 0 {
		f.cancel()
		f.hub.close()
		if cf.cur == f {
			cf.cur = nil
		}
	}
}

// report emits a "stream" event for member unless it says what the last
// one said.
func (f *clusterFeed) report(member, status, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status[member] == status {
		return
	}
	f.status[member] = status
	f.hub.emit(&Event{Kind: api.EventStreamStatus, Peer: member, Status: status, Reason: reason})
}

// joined lists the members whose stream is open, sorted.
func (f *clusterFeed) joined() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for m, st := range f.status {
		if st == "joined" {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

// runFeed holds the members' streams until ctx ends or the agent stops.
func (s *httpServer) runFeed(ctx context.Context, f *clusterFeed) {
	var wg sync.WaitGroup
	defer wg.Wait()
	streams := map[string]bool{} // member -> stream open; this goroutine only
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
			body, err := openMemberEvents(ctx, s.a.eventsHC, addr)
			if err != nil {
				if ctx.Err() == nil {
					f.report(name, "lost", oneLineErr(err))
				}
				return
			}
			defer body.Close()
			f.report(name, "joined", "")
			err = api.ReadEventData(body, func(data []byte) error {
				// One line of JSON from a member; its own "dropped" event
				// (it gave up on this node) is not the clients': the
				// stream's end says it.
				kind := rawKind(data)
				if kind == api.EventDropped || bytes.IndexByte(data, '\n') >= 0 {
					return nil
				}
				f.hub.emitRaw(kind, data)
				return ctx.Err()
			})
			if ctx.Err() == nil {
				why := "stream ended"
				if err != nil {
					why = oneLineErr(err)
				}
				f.report(name, "lost", why)
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
	look()
	tick := time.NewTicker(eventClusterLook)
	defer tick.Stop()
	for {
		select {
		case name := <-ended:
			delete(streams, name)
		case <-tick.C:
			look()
		case <-ctx.Done():
			return
		case <-s.a.events.done:
			f.cancel()
			return
		}
	}
}

// rawKind returns the "kind" of an encoded event, or "".
func rawKind(data []byte) string {
	_, rest, ok := bytes.Cut(data, []byte(`"kind":"`))
	if !ok {
		return ""
	}
	k, _, ok := bytes.Cut(rest, []byte(`"`))
	if !ok {
		return ""
	}
	return string(k)
}

func (s *httpServer) serveClusterEvents(w http.ResponseWriter, r *http.Request, kinds kindMask) {
	h := s.a.events
	own, err := h.subscribe(kinds)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	defer h.unsubscribe(own)
	f := s.acquireFeed()
	defer s.releaseFeed(f)
	merged, err := f.hub.subscribe(kinds)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	defer f.hub.unsubscribe(merged)
	sw := newSSEWriter(w)
	if err := sw.start(); err != nil {
		return
	}
	defer sw.stop()
	if kinds&kindBits[api.EventStreamStatus] != 0 {
		for _, m := range f.joined() {
			ev := &Event{Kind: api.EventStreamStatus, Node: h.node, Time: h.now().UTC().Format(api.EventTimeFormat), Peer: m, Status: "joined"}
			if sw.event(ev) != nil {
				return
			}
		}
	}
	pumpEvents(r, sw, h, own, merged, f.hub.done)
}

// openMemberEvents opens the event stream (every kind) of the member whose
// API is at addr and returns its body.
func openMemberEvents(ctx context.Context, hc *http.Client, addr string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/events", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(headerClient, "1")
	resp, err := hc.Do(req)
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

// newEventsTransport is the transport of the client that opens members'
// streams for merged streams: connecting and the reply's header are
// bounded, the stream itself is not. The agent wraps it in its peer round
// tripper (auth.go), so the streams carry the token and use TLS where the
// member serves it.
func newEventsTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 5 * time.Second,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
	}
}
