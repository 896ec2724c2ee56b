package daemon

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
)

// Fuzz targets for what the network hands the daemon. Their seed corpora
// run with the normal tests; a long run is, e.g.
//
//	go test ./daemon -run '^$' -fuzz '^FuzzReadFrame$' -fuzztime 60s

// FuzzReadFrame feeds arbitrary bytes to the stream frame parser: it never
// panics, never returns a body over the limit, allocates about what
// arrived, reports a clean end only where the input ends, and what it
// accepts survives a round trip through appendFrame.
func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, 0, []byte("push body")))
	f.Add(appendFrame(appendFrame(nil, 1, nil), kindKeepalive, nil))
	f.Add([]byte{kindKeepalive, 1, 0})
	f.Add(frameHeader(0, 64<<20))
	f.Add(append(frameHeader(2, 300), "short"...))
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{9, 0})
	const max = 1 << 10
	f.Fuzz(func(t *testing.T, in []byte) {
		src := bytes.NewReader(in)
		br := bufio.NewReaderSize(src, 16)
		for {
			kind, body, err := readFrame(br, max)
			consumed := len(in) - src.Len() - br.Buffered()
			if err != nil {
				if err == io.EOF && consumed != len(in) {
					t.Fatalf("clean end after %d of %d bytes", consumed, len(in))
				}
				return
			}
			if len(body) > max {
				t.Fatalf("body of %d bytes over the limit %d", len(body), max)
			}
			if cap(body) > 2*len(body)+frameStep {
				t.Fatalf("body of %d bytes holds %d", len(body), cap(body))
			}
			if kind != kindKeepalive && int(kind) >= len(kinds) {
				t.Fatalf("accepted kind %d", kind)
			}
			k2, b2, err := readFrame(bufio.NewReader(bytes.NewReader(appendFrame(nil, kind, body))), max)
			if err != nil || k2 != kind || !bytes.Equal(b2, body) {
				t.Fatalf("frame (%d, %x) round-trips to (%d, %x, %v)", kind, body, k2, b2, err)
			}
		}
	})
}

// fuzzAgent starts an in-memory agent for a fuzz target: one per target
// and process (a fresh one per input would make the fuzzer crawl). It logs
// nowhere: millions of inputs would fill the test log.
func fuzzAgent(f *testing.F) *Agent {
	cfg := DefaultConfig()
	cfg.Name, cfg.Bind, cfg.API, cfg.InMemory = "fz", "127.0.0.1:0", "127.0.0.1:0", true
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Kill = func() {}
	a, err := Create(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { a.Shutdown() })
	return a
}

// FuzzFaultsJSON posts arbitrary JSON bodies to the fault endpoints, as a
// client would: the daemon answers 2xx or 4xx, never 5xx or a panic, and
// every rule it installed is one it accepts.
func FuzzFaultsJSON(f *testing.F) {
	f.Add(true, []byte(`{"kind":"partition","groups":[["fz"],["x"]]}`))
	f.Add(true, []byte(`{"kind":"delay","nodes":["*"],"delay":1000000,"jitter":-5,"for":-1}`))
	f.Add(true, []byte(`{"kind":"loss","nodes":["fz"],"rate":1e309}`))
	f.Add(false, []byte(`{"version":1,"records":[{"id":"f-1","request":{"kind":"pause","nodes":["fz"]},"members":[{"name":"fz"}],"created":"2026-01-01T00:00:00Z"}]}`))
	f.Add(false, []byte(`{"version":1,"records":[{"id":"f-2","request":{"kind":"delay","nodes":["*"],"delay":-1},"created":"2026-01-01T00:00:00Z"}]}`))
	f.Add(false, []byte(`{"version":1,"records":null}`))
	f.Add(true, []byte(`[`))
	a := fuzzAgent(f)
	f.Fuzz(func(t *testing.T, cluster bool, body []byte) {
		path := "/v1/faults/table" // the node-to-node table exchange
		if cluster {
			path = "/v1/faults"
		}
		req := httptest.NewRequest("POST", "http://"+a.APIAddr()+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		a.http.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("POST %s %q: %d %s", path, body, w.Code, w.Body)
		}
		for _, r := range a.faults.Rules() {
			if err := validateRule(&r); err != nil {
				t.Fatalf("POST %s %q installed a rule it refuses: %v", path, body, err)
			}
		}
		heal := httptest.NewRequest("DELETE", "http://"+a.APIAddr()+"/v1/faults", nil)
		heal.Header.Set("Content-Type", "application/json")
		a.http.ServeHTTP(httptest.NewRecorder(), heal)
		a.faults.Heal()
	})
}

// FuzzServe feeds arbitrary bodies of each replication message kind to
// what serves them (push, digest, sync), against a store holding a few
// keys: it never panics, a reply decodes as its kind's answer and a sync
// reply stays within syncChunk, and afterwards the node's clock still
// issues versions near the wall clock and a fresh write reads back.
// Reference: issue 7, item 6 ("the sync messages").
func FuzzServe(f *testing.F) {
	now := time.Now()
	ts := store.MakeTimestamp(now.UnixMilli(), 0)
	good := []store.Entry{{Key: "a", Value: []byte("1"), Version: store.Version{TS: ts, Node: "p"}}}
	var d store.Digest
	all := make([]int, store.NumBuckets)
	for i := range all {
		all[i] = i
	}
	f.Add(uint8(0), store.EncodeBatch(good))
	f.Add(uint8(0), store.EncodeBatch([]store.Entry{{Key: "x", Value: []byte("x"), Version: store.Version{TS: store.MaxTimestamp, Node: "m"}}}))
	f.Add(uint8(1), store.DigestReq{Digest: d}.Encode())
	f.Add(uint8(2), store.SyncReq{Buckets: all}.Encode())
	f.Add(uint8(2), store.SyncReq{Buckets: []int{3, 5000}, Summaries: []store.Summary{good[0].Summary()}}.Encode())
	f.Fuzz(func(t *testing.T, k uint8, body []byte) {
		st, err := store.Open(store.NewMemBackend(), store.Config{Node: "self", MaxClockSkew: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 8; i++ {
			if _, err := st.Put(fmt.Sprintf("k%d", i), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		r := newReplicator(st, nil, newCounters(), slog.New(slog.DiscardHandler), time.Millisecond, time.Second)
		defer r.cancel()
		kind := kinds[int(k)%len(kinds)]
		reply, err := r.serve(kind, body)
		if err == nil {
			switch kind {
			case kindDigest:
				if _, err := store.DecodeDigestReply(reply); err != nil {
					t.Fatalf("digest reply does not decode: %v", err)
				}
			case kindSync:
				m, err := store.DecodeSyncReply(reply)
				if err != nil {
					t.Fatalf("sync reply does not decode: %v", err)
				}
				size := 0
				for _, e := range m.Entries {
					size += store.EntrySize(e)
				}
				if size > syncChunk && len(m.Entries) > 1 {
					t.Fatalf("sync reply holds %d bytes of entries; limit %d", size, syncChunk)
				}
			}
		}
		e, err := st.Put("fresh", []byte("w"))
		if err != nil {
			t.Fatalf("write after serving %s: %v", kind, err)
		}
		if ahead := time.Until(e.Version.TS.Time()); ahead > 2*time.Minute {
			t.Fatalf("write after serving %s stamped %v, %v ahead of the wall clock", kind, e.Version, ahead)
		}
		if got, err := st.Get("fresh"); err != nil || string(got.Value) != "w" {
			t.Fatalf("fresh write reads back %q, %v", got.Value, err)
		}
	})
}
