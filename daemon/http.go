package daemon

import (
	"bufio"
	"context"
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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/peerctl/peerctl/store"
)

// httpServer serves the API described in api.go.
type httpServer struct {
	a     *Agent
	ln    net.Listener
	srv   *http.Server
	mux   *http.ServeMux
	hc    *http.Client // for ?all fan-out
	done  chan struct{}
	guard *guard
	lim   Limits
	// budget bounds the body bytes all requests hold (budget.go).
	budget *bodyBudget

	smu      sync.Mutex // guards streams, byPeer, stopping
	streams  map[*http.ResponseController]string
	byPeer   map[string]*http.ResponseController // the stream each peer name holds
	stopping bool
}

func newHTTPServer(a *Agent, ln net.Listener) *httpServer {
	lim := a.cfg.Limits.withDefaults()
	s := &httpServer{a: a, ln: ln, mux: http.NewServeMux(), done: make(chan struct{}),
		streams: make(map[*http.ResponseController]string),
		byPeer:  make(map[string]*http.ResponseController),
		hc:      &http.Client{Timeout: 5 * time.Second},
		guard:   newGuard(ln.Addr(), a.cfg.API, advertisedAPI(ln.Addr().String(), a.cfg)),
		lim:     lim, budget: newBodyBudget(lim.MaxBodyBytes)}
	s.mux.HandleFunc("GET /v1/members", s.members)
	s.mux.HandleFunc("GET /v1/info", s.info)
	s.mux.HandleFunc("GET /v1/kv", s.list)
	s.mux.HandleFunc("POST /v1/kill", s.kill)
	s.mux.HandleFunc("POST /v1/leave", s.leave)
	s.mux.HandleFunc("POST /v1/internal/stream", s.stream)
	s.mux.HandleFunc("POST /v1/internal/{kind}", s.internal)
	s.mux.Handle("GET /metrics", a.metricsHandler())
	if a.cfg.Pprof {
		// Go profiles, for `go tool pprof http://API/debug/pprof/profile`;
		// only with --pprof: they show the heap and every goroutine.
		s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	s.mux.HandleFunc("GET /v1/check", s.check)
	s.mux.HandleFunc("GET /v1/debug/arrivals", s.debugArrivals)
	s.mux.HandleFunc("GET /v1/digest", s.digest)
	s.mux.HandleFunc("GET /v1/summaries", s.summaries)
	s.faultRoutes() // faultsapi.go
	// The timeouts bound every route but the internal stream, which
	// replaces them with its own idle deadline (stream).
	s.srv = &http.Server{Handler: s,
		ReadHeaderTimeout: min(10*time.Second, lim.ReadTimeout),
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	return s
}

func (s *httpServer) start() {
	ln := &limitListener{Listener: s.ln, max: s.lim.MaxConns, log: s.a.log}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
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
	if err := s.guard.check(r); err != nil {
		s.a.repl.warns.warn(s.a.log, r.RemoteAddr, "api request refused", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusForbidden, err)
		return
	}
	if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad query string %q: %w", r.URL.RawQuery, err))
		return
	}
	if node := r.URL.Query().Get("node"); node != "" && node != s.a.cfg.Name {
		s.forward(w, r, node) // the body passes through; the target's budget counts it
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		bb := &budgetBody{ReadCloser: r.Body, b: s.budget}
		r.Body = bb
		defer bb.release()
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
			// This node checked the origin (guard); to the target the
			// request comes from this node.
			pr.Out.Header.Del("Origin")
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

// writeJSONComplete is writeJSON with a Content-Length, flushed: the whole
// response is on the wire when it returns, before a kill or an exit that
// follows could cut a chunked body short (the client saw "unexpected EOF").
func writeJSONComplete(w http.ResponseWriter, code int, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// bodyErrorCode is the status for a failed body read: 503 when the body
// budget is exhausted (budget.go), else 400.
func bodyErrorCode(err error) int {
	if errors.Is(err, errBusy) {
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
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
	case errors.Is(err, store.ErrNoSpace):
		writeError(w, http.StatusInsufficientStorage, err)
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
	return Info{
		Name: a.cfg.Name, Addr: a.gossip, API: a.apiAddr, Version: Version,
		Profile: a.cfg.Profile, DataDir: a.cfg.DataDir, PID: os.Getpid(),
		Encrypted: a.cfg.EncryptKey != "", StartedAt: a.startedAt,
		Uptime:  time.Since(a.startedAt).Round(time.Second).String(),
		Members: counts,
		Store: StoreStats{Keys: st.Keys, Tombstones: st.Tombstones, DiskBytes: st.DiskBytes,
			Digest: digestHex(&d), Corrupt: st.Corrupt, Quarantined: a.be.QuarantinedCount()},
		Replication: a.repl.stats().ReplicationStats,
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
			if errors.Is(err, store.ErrNotFound) && s.setAside(key) {
				writeJSON(w, http.StatusServiceUnavailable, apiError{Code: codeKeySetAside, Error: fmt.Sprintf(
					"key %q: this node's copy was damaged on disk and set aside (quarantined, kept); anti-entropy restores it from a peer within a few sync intervals. Read it from another node meanwhile (--node NAME); if no peer holds it, restore it from a backup", key)})
				return
			}
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
			writeError(w, bodyErrorCode(err), err)
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

// setAside reports whether key is missing here only because its damaged
// record was set aside: no entry (not even a tombstone) is held, and the
// quarantine has one. A key deleted after a repair is not set aside.
func (s *httpServer) setAside(key string) bool {
	if _, err := s.a.st.GetEntry(key); !errors.Is(err, store.ErrNotFound) {
		return false
	}
	q, err := s.a.be.IsQuarantined(key)
	return err == nil && q
}

// maxFanOut bounds the requests one ?all=1 has in flight at a time.
const maxFanOut = 32

// getAll asks every alive member for the key, at most maxFanOut at a time.
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
	sem := make(chan struct{}, maxFanOut)
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
		sem <- struct{}{}
		go func(nk *NodeKV, api string) {
			defer wg.Done()
			defer func() { <-sem }()
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
	writeJSONComplete(w, http.StatusAccepted, map[string]string{"killed": s.a.cfg.Name})
	go s.a.kill()
}

func (s *httpServer) leave(w http.ResponseWriter, r *http.Request) {
	writeJSONComplete(w, http.StatusAccepted, map[string]string{"leaving": s.a.cfg.Name})
	go s.a.leaveAndExit()
}

// stream serves a peer's stream of one-way messages (transport.go,
// frame.go) until the peer closes it, a frame is refused, or no frame (a
// keepalive included) arrives for Limits.StreamIdle. It replaces the
// server's read and write timeouts, which would cut a healthy stream.
// One stream per peer name: a new one from the same name ends the old.
func (s *httpServer) stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	from := r.Header.Get(headerFrom)
	s.smu.Lock()
	if s.stopping {
		s.smu.Unlock()
		refuseStream(w, rc, http.StatusServiceUnavailable, fmt.Errorf("shutting down"))
		return
	}
	if old, ok := s.byPeer[from]; ok {
		old.SetReadDeadline(time.Now()) // the peer reconnected: it gave the old one up
		delete(s.streams, old)
	} else if len(s.streams) >= s.lim.MaxStreams {
		s.smu.Unlock()
		s.a.repl.warns.warn(s.a.log, r.RemoteAddr, "replication stream refused: stream limit reached", "from", from, "limit", s.lim.MaxStreams)
		refuseStream(w, rc, http.StatusServiceUnavailable, fmt.Errorf("too many replication streams (limit %d)", s.lim.MaxStreams))
		return
	}
	s.streams[rc] = from
	s.byPeer[from] = rc
	s.smu.Unlock()
	defer func() {
		s.smu.Lock()
		delete(s.streams, rc)
		if s.byPeer[from] == rc {
			delete(s.byPeer, from)
		}
		s.smu.Unlock()
	}()
	rc.SetWriteDeadline(time.Time{})
	br := bufio.NewReaderSize(r.Body, 64<<10)
	for {
		// Renew the idle deadline, unless stop cut the stream meanwhile.
		s.smu.Lock()
		if _, ok := s.streams[rc]; !ok || s.stopping {
			s.smu.Unlock()
			return
		}
		rc.SetReadDeadline(time.Now().Add(s.lim.StreamIdle))
		s.smu.Unlock()
		k, body, err := readFrame(br, maxFrame)
		if err != nil {
			s.endStream(w, rc, r, from, err)
			return
		}
		if k != kindKeepalive && !s.a.faults.CutOff() { // frozen or isolated: nothing gets through
			if _, err := s.a.repl.handleOneWay(kinds[k], body); err != nil {
				s.a.repl.warns.warn(s.a.log, r.RemoteAddr, "rejected replication message", "kind", kinds[k], "from", from, "err", err)
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
func (s *httpServer) endStream(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, from string, err error) {
	s.smu.Lock()
	_, ok := s.streams[rc]
	cut := !ok || s.stopping
	s.smu.Unlock()
	reason := ""
	switch {
	case cut:
		return // this node is stopping, or the peer opened a newer stream
	case errors.Is(err, errBusy):
		s.a.repl.warns.warn(s.a.log, r.RemoteAddr, "replication stream closed: server busy", "from", from, "err", err)
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
		s.a.repl.warns.warn(s.a.log, r.RemoteAddr, "replication stream idle: closing it", "from", from, "idle", s.lim.StreamIdle)
		if reason != "" {
			s.a.repl.dropped(reason)
		}
		return
	case errors.Is(err, errFrameTruncated):
		reason = dropTruncated
	default:
		return // the peer closed the stream between frames
	}
	s.a.repl.dropped(reason)
	s.a.repl.warns.warn(s.a.log, r.RemoteAddr, "malformed replication stream: closing it", "from", from, "reason", reason, "err", err)
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

// internal serves replication messages from peers (replicate.go).
func (s *httpServer) internal(w http.ResponseWriter, r *http.Request) {
	if s.a.faults.CutOff() {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("node is paused or isolated (fault injection)"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCall))
	if errors.Is(err, errBusy) {
		s.a.repl.warns.warn(s.a.log, r.RemoteAddr, "replication message refused: server busy", "kind", r.PathValue("kind"), "from", r.Header.Get(headerFrom), "err", err)
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	if err != nil {
		var mbe *http.MaxBytesError
		reason, code := dropTruncated, http.StatusBadRequest
		if errors.As(err, &mbe) {
			reason, code = dropOversize, http.StatusRequestEntityTooLarge
			err = fmt.Errorf("%w: body over %d bytes", store.ErrCorrupt, maxCall)
		}
		s.a.repl.dropped(reason)
		s.a.repl.warns.warn(s.a.log, r.RemoteAddr, "rejected replication message", "kind", r.PathValue("kind"), "from", r.Header.Get(headerFrom), "reason", reason, "err", err)
		writeError(w, code, err)
		return
	}
	reply, err := s.a.repl.handle(r.PathValue("kind"), body)
	if err != nil {
		code := http.StatusInternalServerError
		var re *rejectError
		if errors.As(err, &re) {
			code = http.StatusBadRequest
		}
		s.a.repl.warns.warn(s.a.log, r.RemoteAddr, "rejected replication message", "kind", r.PathValue("kind"), "from", r.Header.Get(headerFrom), "err", err)
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
