package daemon

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/peerctl/peerctl/store"
)

// httpServer serves the API described in api.go.
type httpServer struct {
	a    *Agent
	ln   net.Listener
	srv  *http.Server
	mux  *http.ServeMux
	hc   *http.Client // for ?all fan-out
	done chan struct{}

	smu      sync.Mutex // guards streams, stopping
	streams  map[*http.ResponseController]struct{}
	stopping bool
}

func newHTTPServer(a *Agent, ln net.Listener) *httpServer {
	s := &httpServer{a: a, ln: ln, mux: http.NewServeMux(), done: make(chan struct{}),
		streams: make(map[*http.ResponseController]struct{}),
		hc:      &http.Client{Timeout: 5 * time.Second}}
	s.mux.HandleFunc("GET /v1/members", s.members)
	s.mux.HandleFunc("GET /v1/info", s.info)
	s.mux.HandleFunc("GET /v1/kv", s.list)
	s.mux.HandleFunc("POST /v1/kill", s.kill)
	s.mux.HandleFunc("POST /v1/leave", s.leave)
	s.mux.HandleFunc("POST /v1/internal/stream", s.stream)
	s.mux.HandleFunc("POST /v1/internal/{kind}", s.internal)
	s.mux.Handle("GET /metrics", a.metricsHandler())
	// Go profiles, for `go tool pprof http://API/debug/pprof/profile`.
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	s.mux.HandleFunc("GET /v1/check", s.check)
	s.mux.HandleFunc("GET /v1/debug/arrivals", s.debugArrivals)
	s.mux.HandleFunc("GET /v1/digest", s.digest)
	s.mux.HandleFunc("GET /v1/summaries", s.summaries)
	s.mux.HandleFunc("POST /v1/faults", s.postFaults)
	s.mux.HandleFunc("GET /v1/faults", s.getFaults)
	s.mux.HandleFunc("DELETE /v1/faults", s.deleteFaults)
	s.mux.HandleFunc("POST /v1/faults/local", s.postLocalFaults)
	s.mux.HandleFunc("DELETE /v1/faults/local", s.deleteLocalFaults)
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	return s
}

func (s *httpServer) start() {
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.a.log.Error("http api stopped", "err", err)
		}
	}()
}

func (s *httpServer) stop() {
	// Peers' streams never end on their own: cut them so Shutdown need
	// not wait for them.
	s.smu.Lock()
	s.stopping = true
	for rc := range s.streams {
		rc.SetReadDeadline(time.Now())
	}
	s.smu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
}

// ServeHTTP forwards requests for another node, routes /v1/kv/KEY by hand
// (ServeMux would clean and redirect keys containing "//" or ".."), and
// hands the rest to the mux.
func (s *httpServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if node := r.URL.Query().Get("node"); node != "" && node != s.a.cfg.Name {
		s.forward(w, r, node)
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/v1/kv/"); ok {
		key, err := url.PathUnescape(rest)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("bad key escape in path: %w", err))
			return
		}
		s.kv(w, r, key)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// forward proxies the request to the named member's API.
func (s *httpServer) forward(w http.ResponseWriter, r *http.Request, node string) {
	var target *Member
	for _, m := range s.a.Members() {
		if m.Name == node {
			m := m
			target = &m
		}
	}
	if target == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("unknown node %q: `peerctl members` lists the nodes", node))
		return
	}
	if target.API == "" {
		writeError(w, http.StatusBadGateway, fmt.Errorf("node %q advertises no API address", node))
		return
	}
	if target.Status == "left" {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("node %q has left the cluster", node))
		return
	}
	// A failed member may only be cut off from gossip (partition, pause):
	// its API can still answer, so try it.
	u := &url.URL{Scheme: "http", Host: target.API}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			q := pr.Out.URL.Query()
			q.Del("node")
			pr.Out.URL.RawQuery = q.Encode()
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, http.StatusBadGateway, fmt.Errorf("node %q (%s) at %s did not answer: %v", node, target.Status, target.API, err))
		},
	}
	p.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, apiError{Error: err.Error()})
}

// storeError maps store errors to status codes.
func storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, store.ErrInvalidKey):
		writeError(w, http.StatusBadRequest, err)
	case errors.Is(err, store.ErrValueTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err)
	case errors.Is(err, store.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}

func (s *httpServer) members(w http.ResponseWriter, r *http.Request) {
	ms := s.a.Members()
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	writeJSON(w, http.StatusOK, ms)
}

func (s *httpServer) info(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.a.Info())
}

// Info describes the node.
func (a *Agent) Info() Info {
	counts := map[string]int{}
	for _, m := range a.Members() {
		counts[m.Status]++
	}
	st := a.st.Stats()
	d := a.st.Digest()
	r := a.repl
	var sum [8]byte
	v := d.Sum()
	for i := range sum {
		sum[i] = byte(v >> (8 * i))
	}
	rs := ReplicationStats{
		MsgsSent: a.counters.msgsSent.Load(), MsgsReceived: a.counters.msgsRecv.Load(),
		BytesSent: a.counters.bytesSent.Load(), BytesReceived: a.counters.bytesRecv.Load(),
		PushesSent: r.pushesSent.Load(), PushesFailed: r.pushesFailed.Load(),
		EntriesPushed: r.entriesPush.Load(), EntriesApplied: r.applied.Load(),
		SyncRounds: r.syncRounds.Load(), SyncRepaired: r.repaired.Load(),
		Pending: r.pending(), LagMillis: r.lastLag.Load(), LagAvgMillis: r.avgLag.Load(),
		MalformedDropped: r.malformed.Load(),
	}
	if ms := r.lastSync.Load(); ms > 0 {
		rs.LastSync = time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
	}
	return Info{
		Name: a.cfg.Name, Addr: a.gossip, API: a.apiAddr, Version: Version,
		Profile: a.cfg.Profile, DataDir: a.cfg.DataDir, PID: os.Getpid(),
		Encrypted: a.cfg.EncryptKey != "", StartedAt: a.startedAt,
		Uptime:  time.Since(a.startedAt).Round(time.Second).String(),
		Members: counts,
		Store: StoreStats{Keys: st.Keys, Tombstones: st.Tombstones, DiskBytes: st.DiskBytes,
			Digest: hex.EncodeToString(sum[:]), Corrupt: st.Corrupt, Quarantined: st.Quarantined},
		Replication: rs,
	}
}

func toKV(e store.Entry) *KV {
	return &KV{Key: e.Key, Value: e.Value, Version: e.Version.String(), TS: uint64(e.Version.TS),
		Origin: e.Version.Node, Time: e.Version.TS.Time().UTC(), Deleted: e.Deleted}
}

func toWrite(e store.Entry) WriteResult {
	return WriteResult{Key: e.Key, Version: e.Version.String(), TS: uint64(e.Version.TS), Origin: e.Version.Node}
}

func (s *httpServer) kv(w http.ResponseWriter, r *http.Request, key string) {
	switch r.Method {
	case http.MethodGet:
		if r.URL.Query().Get("all") != "" {
			s.getAll(w, r, key)
			return
		}
		e, err := s.a.st.Get(key)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("key %q not found", key), Code: codeKeyNotFound})
				return
			}
			storeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, toKV(e))
	case http.MethodPut, http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, store.MaxValueLen+1))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: value is over %d bytes", store.ErrValueTooLarge, store.MaxValueLen))
				return
			}
			writeError(w, http.StatusBadRequest, err)
			return
		}
		e, err := s.a.Put(key, body)
		if err != nil {
			storeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, toWrite(e))
	case http.MethodDelete:
		e, existed, err := s.a.Delete(key)
		if err != nil {
			storeError(w, err)
			return
		}
		res := toWrite(e)
		res.Existed = existed
		writeJSON(w, http.StatusOK, res)
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on /v1/kv/KEY", r.Method))
	}
}

// getAll asks every alive member for the key, in parallel.
func (s *httpServer) getAll(w http.ResponseWriter, r *http.Request, key string) {
	if err := store.ValidateKey(key); err != nil {
		storeError(w, err)
		return
	}
	var alive []Member
	for _, m := range s.a.Members() {
		if m.Status == "alive" || m.Status == "suspect" {
			alive = append(alive, m)
		}
	}
	sort.Slice(alive, func(i, j int) bool { return alive[i].Name < alive[j].Name })
	// out is sized before any goroutine starts; each writes only out[i].
	out := make([]NodeKV, len(alive))
	var wg sync.WaitGroup
	for i, m := range alive {
		out[i] = NodeKV{Node: m.Name, Status: m.Status}
		if m.Name == s.a.cfg.Name {
			if e, err := s.a.st.Get(key); err == nil {
				out[i].KV = toKV(e)
			} else if !errors.Is(err, store.ErrNotFound) {
				out[i].Error = err.Error()
			}
			continue
		}
		wg.Add(1)
		go func(nk *NodeKV, api string) {
			defer wg.Done()
			kv, err := NewClientWith(api, s.hc).Get(r.Context(), "", key)
			switch {
			case errors.Is(err, ErrKeyNotFound):
			case err != nil:
				nk.Error = err.Error()
			default:
				nk.KV = kv
			}
		}(&out[i], m.API)
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
}

func (s *httpServer) list(w http.ResponseWriter, r *http.Request) {
	sums := s.a.st.List(r.URL.Query().Get("prefix"))
	out := make([]KeyInfo, 0, len(sums))
	for _, sm := range sums {
		out = append(out, KeyInfo{Key: sm.Key, Version: sm.Version.String(), TS: uint64(sm.Version.TS), Origin: sm.Version.Node})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *httpServer) kill(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusAccepted, map[string]string{"killed": s.a.cfg.Name})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	go s.a.kill()
}

func (s *httpServer) leave(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusAccepted, map[string]string{"leaving": s.a.cfg.Name})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	go s.a.leaveAndExit()
}

// stream serves a peer's stream of one-way messages (transport.go) until
// the peer closes it. A malformed frame ends the stream.
func (s *httpServer) stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	s.smu.Lock()
	if s.stopping {
		s.smu.Unlock()
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("shutting down"))
		return
	}
	s.streams[rc] = struct{}{}
	s.smu.Unlock()
	defer func() {
		s.smu.Lock()
		delete(s.streams, rc)
		s.smu.Unlock()
	}()
	br := bufio.NewReaderSize(r.Body, 64<<10)
	from := r.Header.Get(headerFrom)
	for {
		k, err := br.ReadByte()
		if err != nil {
			return // peer closed the stream
		}
		n, err := binary.ReadUvarint(br)
		if err != nil || int(k) >= len(kinds) || n > maxMessage {
			s.a.log.Warn("malformed replication stream; closing it", "from", from, "err", err)
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: bad stream frame", store.ErrCorrupt))
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		if s.a.faults.CutOff() {
			continue // frozen or isolated: nothing gets through
		}
		if _, err := s.a.repl.handleOneWay(kinds[k], body); err != nil {
			s.a.log.Warn("rejected replication message", "kind", kinds[k], "from", from, "err", err)
		}
	}
}

// internal serves replication messages from peers (replicate.go).
func (s *httpServer) internal(w http.ResponseWriter, r *http.Request) {
	if s.a.faults.CutOff() {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("node is paused or isolated (fault injection)"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMessage))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	reply, err := s.a.repl.handle(r.PathValue("kind"), body)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrInvalidKey) || errors.Is(err, store.ErrValueTooLarge) || errors.Is(err, store.ErrClockSkew) {
			code = http.StatusBadRequest
		}
		s.a.log.Warn("rejected replication message", "kind", r.PathValue("kind"), "from", r.RemoteAddr, "err", err)
		writeError(w, code, err)
		return
	}
	// The reply is a message this node sends: its rules decide its fate.
	drop, delay := s.a.faults.Outbound(r.Header.Get(headerFrom))
	if drop {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("reply %w", errDropped))
		return
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(reply)
}
