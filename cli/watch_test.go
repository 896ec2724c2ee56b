package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

var watchEvents = []string{
	`{"time":"2026-11-29T15:23:40.925Z","node":"n1","kind":"member","member":"n2","status":"suspect","detected_by":"n1"}`,
	`{"time":"2026-11-29T15:23:41.000Z","node":"n2","kind":"write","key":"k1","version":"v1"}`,
	`{"time":"2026-11-29T15:23:41.010Z","node":"n1","kind":"apply","key":"k1","version":"v1","from":"n2","latency_ms":10,"sampled":3}`,
}

// sseServer serves GET /v1/events: each connection gets the events, then
// the stream ends; connected counts connections and records the query.
func sseServer(t *testing.T, connected chan<- string) string {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/events" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ": hello\n\n")
		for _, e := range watchEvents {
			fmt.Fprintf(w, "data: %s\n\n", e)
		}
		w.(http.Flusher).Flush()
		if n.Add(1) > 1 {
			select {
			case connected <- r.URL.RawQuery:
			default:
			}
			<-r.Context().Done() // the second stream stays open
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// One line per event, in order; with --once the end of the stream is an
// error; --kinds and --cluster reach the query.
func TestWatchLinesOnce(t *testing.T) {
	addr := sseServer(t, nil)
	r := run(t, addr, "", "watch", "--once")
	if r.err == nil || !strings.Contains(r.err.Error(), "ended") {
		t.Fatalf("watch --once: %v; want the stream's end as an error", r.err)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines; want 3:\n%s", len(lines), r.stdout)
	}
	for i, want := range []string{"n1 member n2 suspect (detected by n1)", "n2 write k1 v1", "n1 apply k1 from n2 after 10 ms [+3 more apply events left out]"} {
		if got := strings.Join(strings.Fields(lines[i])[1:], " "); got != want {
			t.Errorf("line %d = %q; want %q after the time", i, got, want)
		}
	}
	if strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("colour codes written to a non-terminal:\n%q", r.stdout)
	}
	if r := run(t, addr, "", "watch", "--kinds", "member,bogus"); r.err == nil || !strings.Contains(r.err.Error(), `"bogus"`) {
		t.Fatalf("--kinds bogus: %v; want an error naming it", r.err)
	}
}

// Without --once, watch reconnects when the stream ends, and a cancelled
// context (Ctrl-C) ends it cleanly; --json prints one object per line.
func TestWatchReconnectsAndStops(t *testing.T) {
	connected := make(chan string, 1)
	addr := sseServer(t, connected)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case q := <-connected:
			if q != "cluster=1&kinds=member%2Cwrite" {
				t.Errorf("query %q; want cluster=1&kinds=member%%2Cwrite", q)
			}
			time.Sleep(100 * time.Millisecond) // let the second copy print
		case <-time.After(20 * time.Second):
		}
		cancel()
	}()
	r := runApp(t, NewApp(), ctx, addr, "", "watch", "--json", "--cluster", "--kinds", "member,write")
	if r.err != nil {
		t.Fatalf("watch ended with %v; want nil after Ctrl-C", r.err)
	}
	if !strings.Contains(r.stderr, "reconnect") {
		t.Errorf("stderr does not mention reconnecting:\n%s", r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("got %d lines; want 6 (two connections):\n%s", len(lines), r.stdout)
	}
	for i, l := range lines {
		var ev api.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Kind == "" {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
	}
}
