package daemon

import (
	"context"
	"crypto/tls"
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

	"github.com/peerctl/peerctl/internal/ui"
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
	limit  *limitListener // set by start; stop waits for its refusals
	token  *tokenAuth     // the API token (auth.go)
	tls    *tls.Config    // nil: plain HTTP
}

func newHTTPServer(a *Agent, ln net.Listener) (*httpServer, error) {
	lim := a.cfg.Limits.withDefaults()
	tc, err := a.cfg.serverTLS()
	if err != nil {
		return nil, err
	}
	s := &httpServer{a: a, ln: ln, mux: http.NewServeMux(), done: make(chan struct{}),
		hc:    a.peerClient(5 * time.Second),
		token: newTokenAuth(a.cfg.Token), tls: tc,
		guard: newGuard(ln.Addr(), a.cfg.API, advertisedAPI(ln.Addr().String(), a.cfg)),
		lim:   lim, budget: newBodyBudget(lim.MaxBodyBytes)}
	s.mux.HandleFunc("GET /v1/members", s.members)
	s.mux.HandleFunc("GET /v1/info", s.info)
	s.mux.HandleFunc("GET /v1/kv", s.list)
	s.mux.HandleFunc("POST /v1/kill", s.kill)
	s.mux.HandleFunc("POST /v1/leave", s.leave)
	a.ht.register(s.mux) // replication: /v1/internal/* (transport.go)
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
	s.mux.HandleFunc("GET /v1/events", s.serveEvents) // events.go
	s.faultRoutes()                                   // faultsapi.go
	s.coordRoutes()                                   // coordhttp.go
	s.keyringRoutes()                                 // keyring.go
	s.uiRoutes()                                      // ui.go: the dashboard
	// The timeouts bound every route but the internal stream, which
	// replaces them with its own idle deadline (serveStream).
	s.srv = &http.Server{Handler: s,
		ReadHeaderTimeout: min(10*time.Second, lim.ReadTimeout),
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	if tc != nil {
		s.guard.tls = true
		s.srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){} // HTTP/1.1 only
	}
	return s, nil
}

func (s *httpServer) start() {
	lim := &limitListener{Listener: s.ln, max: s.lim.MaxConns, log: s.a.log}
	s.limit = lim
	var ln net.Listener = lim
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.a.log.Error("http api stopped", "err", err)
		}
	}()
}

// stop shuts the server down. Peers' streams never end on their own: the
// transport's close cuts them first (Agent.Shutdown).
func (s *httpServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
	s.limit.wait()
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
	if !ui.Public(r) && !s.checkToken(w, r) { // auth.go; the dashboard's files hold no data (ui.go)
		return
	}
	if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad query string %q: %w", r.URL.RawQuery, err))
		return
	}
	if node := r.URL.Query().Get("node"); node != "" && node != s.a.cfg.Name {
		if r.URL.Path == "/v1/events" {
			streamDeadlines(w) // the proxy streams it (events.go)
		}
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
		if r.URL.Query().Get("consistent") != "" {
			s.consistentKV(w, r, key) // coordhttp.go
			return
		}
		s.kv(w, r, key)
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/v1/locks/"); ok {
		s.locks(w, r, rest) // coordhttp.go
		return
	}
	if r.URL.Path == "/v1/kv" && r.URL.Query().Get("consistent") != "" {
		s.consistentList(w, r) // coordhttp.go
		return
	}
	if s.serveSealed(w, r, s.mux) { // authapi.go: member-only paths
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
		Transport: s.a.peerRT, // the token (already on r) and TLS (auth.go)
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
		Encrypted: a.keyring != nil, StartedAt: a.startedAt,
		Uptime:  time.Since(a.startedAt).Round(time.Second).String(),
		Members: counts,
		Store: StoreStats{Keys: st.Keys, Tombstones: st.Tombstones, DiskBytes: st.DiskBytes,
			Digest: digestHex(&d), Corrupt: st.Corrupt, Quarantined: a.be.QuarantinedCount()},
		Replication: a.repl.stats().ReplicationStats,
		Auth:        a.authStats(),
		Writes:      a.writes.Load(), RSSBytes: rssBytes(),
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
		body, ok := readValue(w, r)
		if !ok {
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

// readValue reads a put's body, the value, bounded by store.MaxValueLen; on
// failure it has answered (413 for a value too large) and returns false.
func readValue(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, store.MaxValueLen+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: value is over %d bytes", store.ErrValueTooLarge, store.MaxValueLen))
			return nil, false
		}
		writeError(w, bodyErrorCode(err), err)
		return nil, false
	}
	return body, true
}
