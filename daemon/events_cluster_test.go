package daemon

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

// waitEvent reads st until an event satisfies match, failing after d.
func waitEvent(tb testing.TB, st *api.EventStream, d time.Duration, what string, match func(api.Event) bool) api.Event {
	tb.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-st.C:
			if !ok {
				tb.Fatalf("stream ended waiting for %s: %v", what, st.Err())
			}
			if match(ev) {
				return ev
			}
		case <-timeout:
			tb.Fatalf("no %s within %v", what, d)
		}
	}
}

// Real agents: a node's own stream, another node's through ?node= (which
// must stream past the API's read and write timeouts), the merged
// ?cluster=1 stream, fault events, and a failed member with who detected it.
func TestEventsCluster(t *testing.T) {
	var nodes []*testNode
	for i := range 3 {
		var join []string
		if i > 0 {
			join = []string{nodes[0].GossipAddr()}
		}
		cfg := testConfig(t, fmt.Sprintf("n%d", i+1), t.TempDir(), join...)
		cfg.Limits.ReadTimeout, cfg.Limits.WriteTimeout = time.Second, time.Second
		nodes = append(nodes, startNode(t, cfg))
	}
	waitFor(t, 15*time.Second, "all nodes see each other alive", func() error { return allAlive(nodes, 3) })
	ctx := context.Background()
	c1 := NewClient(nodes[0].APIAddr())

	own, err := c1.Events(ctx, "", []string{api.EventMember, api.EventFault, api.EventWrite, api.EventApply}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	fwd, err := c1.Events(ctx, "n2", []string{api.EventWrite}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	merged, err := c1.Events(ctx, "", []string{api.EventWrite, api.EventStreamStatus}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer merged.Close()
	// The merged stream has joined both members' streams when n2's hub
	// counts two subscribers (the forwarded one and the merged one's).
	waitFor(t, 10*time.Second, "members' streams joined", func() error {
		if n2, n3 := nodes[1].events.n.Load(), nodes[2].events.n.Load(); n2 != 2 || n3 != 1 {
			return fmt.Errorf("n2 has %d streams, n3 %d", n2, n3)
		}
		return nil
	})
	// A second merged stream shares the members' streams: it is told
	// which are open, and the members serve no more streams than before.
	merged2, err := c1.Events(ctx, "", []string{api.EventStreamStatus}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer merged2.Close()
	for _, want := range []string{"n2", "n3"} {
		if ev := next(t, merged2); ev.Kind != api.EventStreamStatus || ev.Status != "joined" || ev.Peer != want {
			t.Fatalf("second merged stream: %+v; want %s joined", ev, want)
		}
	}
	if n2, n3 := nodes[1].events.n.Load(), nodes[2].events.n.Load(); n2 != 2 || n3 != 1 {
		t.Fatalf("with two merged streams n2 serves %d streams, n3 %d; want 2 and 1 (shared)", n2, n3)
	}
	merged2.Close()
	// Past the API's write timeout, the forwarded stream still streams.
	time.Sleep(1500 * time.Millisecond)
	for i, nd := range nodes {
		if _, err := NewClient(nd.APIAddr()).Put(ctx, "", fmt.Sprintf("k%d", i+1), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if ev := waitEvent(t, fwd, 10*time.Second, "n2's write through n1", func(ev api.Event) bool { return ev.Kind == api.EventWrite }); ev.Node != "n2" || ev.Key != "k2" {
		t.Fatalf("forwarded stream: %+v; want n2's write of k2", ev)
	}
	writers := map[string]string{}
	waitEvent(t, merged, 10*time.Second, "every node's write on the merged stream", func(ev api.Event) bool {
		if ev.Kind == api.EventWrite {
			writers[ev.Node] = ev.Key
		}
		return len(writers) == 3
	})
	if writers["n1"] != "k1" || writers["n2"] != "k2" || writers["n3"] != "k3" {
		t.Fatalf("merged writes %v; want n1:k1 n2:k2 n3:k3", writers)
	}
	ev := waitEvent(t, own, 10*time.Second, "k2 applied at n1", func(ev api.Event) bool { return ev.Kind == api.EventApply && ev.Key == "k2" })
	if ev.From != "n2" || ev.LatencyMS == nil || *ev.LatencyMS < 0 {
		t.Fatalf("apply event %+v; want from n2 with a latency", ev)
	}

	// Faults: installed and lifted, as n1's table sees them.
	res, err := c1.InjectFault(ctx, FaultRequest{Kind: ReqDelay, Nodes: []string{"n2"}, Delay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	id := res.ID
	ev = waitEvent(t, own, 10*time.Second, "fault installed", func(ev api.Event) bool { return ev.Kind == api.EventFault })
	if ev.ID != id || ev.Action != "installed" || ev.Fault != ReqDelay || len(ev.Parties) != 1 || ev.Parties[0] != "n2" {
		t.Fatalf("fault event %+v; want %s installed, delay, parties [n2]", ev, id)
	}
	if _, err := c1.Heal(ctx, ""); err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, own, 10*time.Second, "fault lifted", func(ev api.Event) bool { return ev.Kind == api.EventFault })
	if ev.ID != id || ev.Action != "lifted" || ev.Reason != "healed" {
		t.Fatalf("fault event %+v; want %s lifted, healed", ev, id)
	}

	// A member stops without leaving: n1 reports it suspect, then failed,
	// each with who detected it.
	nodes[2].Shutdown()
	var sawSuspect bool
	ev = waitEvent(t, own, 30*time.Second, "n3 failed", func(ev api.Event) bool {
		if ev.Kind != api.EventMember || ev.Member != "n3" {
			return false
		}
		if ev.Status == "suspect" {
			sawSuspect = true
			if ev.DetectedBy != "n1" && ev.DetectedBy != "n2" {
				t.Errorf("suspect event %+v; want detected_by n1 or n2", ev)
			}
		}
		return ev.Status == "failed"
	})
	if !sawSuspect || (ev.DetectedBy != "n1" && ev.DetectedBy != "n2") {
		t.Fatalf("failed event %+v (suspect seen: %v); want a suspicion first and detected_by n1 or n2", ev, sawSuspect)
	}
	waitEvent(t, merged, 10*time.Second, "n3's stream lost", func(ev api.Event) bool {
		return ev.Kind == api.EventStreamStatus && ev.Peer == "n3" && ev.Status == "lost"
	})
	// Once the last merged client and the forwarded one go, the feed
	// stops: n2 serves no stream, and n1 holds no feed.
	merged.Close()
	fwd.Close()
	waitFor(t, 10*time.Second, "the shared streams closed", func() error {
		nodes[0].feeds.mu.Lock()
		feed := nodes[0].feeds.cur != nil
		nodes[0].feeds.mu.Unlock()
		if n := nodes[1].events.n.Load(); n != 0 || feed {
			return fmt.Errorf("n2 serves %d streams; n1 holds a feed: %v", n, feed)
		}
		return nil
	})
}

// The dashboard's page, served from the API's own origin, may open the
// stream; a page elsewhere may not.
func TestEventsSameOriginOnly(t *testing.T) {
	nd := startNode(t, testConfig(t, "n1", t.TempDir()))
	for _, tc := range []struct {
		origin string
		code   int
	}{{"http://" + nd.APIAddr(), http.StatusOK}, {"http://evil.example", http.StatusForbidden}, {"", http.StatusOK}} {
		req, _ := http.NewRequest("GET", "http://"+nd.APIAddr()+"/v1/events?kinds=member", nil)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		ctx, cancel := context.WithCancel(context.Background())
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		resp.Body.Close()
		cancel()
		if resp.StatusCode != tc.code {
			t.Errorf("GET /v1/events with Origin %q: %d; want %d", tc.origin, resp.StatusCode, tc.code)
		}
		if tc.code == http.StatusOK && resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Errorf("Content-Type %q; want text/event-stream", resp.Header.Get("Content-Type"))
		}
	}
}

// With an API token, the merged stream still reaches every member: the
// node opening members' streams sends the token as every daemon-to-daemon
// call does (auth.go).
func TestEventsClusterToken(t *testing.T) {
	const token = "s3cret-token"
	var nodes []*testNode
	for i := range 2 {
		var join []string
		if i > 0 {
			join = []string{nodes[0].GossipAddr()}
		}
		cfg := testConfig(t, fmt.Sprintf("n%d", i+1), t.TempDir(), join...)
		cfg.Token = token
		nodes = append(nodes, startNode(t, cfg))
	}
	waitFor(t, 15*time.Second, "both nodes see each other alive", func() error { return allAlive(nodes, 2) })
	ctx := context.Background()
	c1, err := api.NewClientOptions(nodes[0].APIAddr(), api.Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	merged, err := c1.Events(ctx, "", []string{api.EventWrite, api.EventStreamStatus}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer merged.Close()
	waitEvent(t, merged, 10*time.Second, "n2's stream joined", func(ev api.Event) bool {
		if ev.Kind == api.EventStreamStatus && ev.Peer == "n2" && ev.Status != "joined" {
			t.Fatalf("n2's stream: %+v; want joined", ev)
		}
		return ev.Kind == api.EventStreamStatus && ev.Peer == "n2"
	})
	if _, err := c1.Put(ctx, "n2", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, merged, 10*time.Second, "n2's write", func(ev api.Event) bool { return ev.Kind == api.EventWrite }); ev.Node != "n2" {
		t.Fatalf("merged stream: %+v; want n2's write", ev)
	}
	if n := nodes[1].Info().Auth.TokenRefused; n != 0 {
		t.Fatalf("n2 refused %d requests for want of a token; want 0", n)
	}
}
