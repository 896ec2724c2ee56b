package daemon

// The coordination API's handlers (internal/api/raft.go documents the
// routes). They parse and check the request, run it through coord.do
// (coord.go), and map its outcome to a status and error code.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"

	"github.com/peerctl/peerctl/store"
)

// Lock TTL and wait bounds.
const (
	minLockTTL     = 100 * time.Millisecond
	maxLockTTL     = time.Hour
	defaultLockTTL = 10 * time.Second
	maxLockWait    = time.Minute // below the server's write timeout
)

// coordRoutes mounts the coordination API on the mux; /v1/kv/KEY?consistent=1
// and /v1/locks/NAME are routed by hand in ServeHTTP, as /v1/kv/KEY is.
func (s *httpServer) coordRoutes() {
	s.mux.HandleFunc("GET /v1/leader", s.leader)
}

// writeCoordError maps an operation's error to a status.
func writeCoordError(w http.ResponseWriter, err error) {
	var nq *noQuorumError
	if errors.As(err, &nq) {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: nq.msg, Code: codeNoQuorum})
		return
	}
	writeError(w, http.StatusInternalServerError, err)
}

func (s *httpServer) leader(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.a.coord.leaderInfo(r.Context()))
}

// leaderInfo describes the group as this node sees it; each server's last
// contact is asked of the server itself (a raft-status call through the
// fault layer, at most 500 ms), so it shows what this node can reach.
func (c *coord) leaderInfo(ctx context.Context) LeaderInfo {
	out := LeaderInfo{Node: c.a.cfg.Name, Servers: []RaftServer{}}
	if c.r == nil {
		return out
	}
	out.State = c.r.State().String()
	out.Leader = c.leaderName()
	if out.Leader != "" {
		out.LeaderAPI, _ = c.addrOf(out.Leader)
	}
	out.Term, out.CommitIndex, out.LastIndex = c.r.CurrentTerm(), c.r.CommitIndex(), c.r.LastIndex()
	f := c.r.GetConfiguration()
	if f.Error() != nil {
		return out
	}
	alive := map[string]bool{}
	for _, m := range c.a.serf.Members() {
		alive[m.Name] = m.Status == serf.StatusAlive
	}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	servers := f.Configuration().Servers
	out.Servers = make([]RaftServer, len(servers))
	for i, sv := range servers {
		n := string(sv.ID)
		rs := RaftServer{Name: n, ID: n, Role: RoleVoter, LastContactMs: -1, Alive: alive[n]}
		if sv.Suffrage != raft.Voter {
			rs.Role = RoleNonvoter
		}
		if n == out.Leader {
			rs.Role = RoleLeader
		}
		out.Servers[i] = rs
		if n == c.a.cfg.Name {
			out.Servers[i].LastContactMs = c.status().LastContactMs
			continue
		}
		wg.Add(1)
		go func(rs *RaftServer) {
			defer wg.Done()
			if st, err := c.askStatus(ctx, rs.Name); err == nil {
				rs.LastContactMs = st.LastContactMs
			}
		}(&out.Servers[i])
	}
	wg.Wait()
	sort.Slice(out.Servers, func(i, j int) bool { return out.Servers[i].Name < out.Servers[j].Name })
	return out
}

// parseVersion reads if_version / if_absent.
func parseCond(q url.Values) (cond bool, v uint64, err error) {
	if s := q.Get("if_version"); s != "" {
		v, err = strconv.ParseUint(s, 10, 64)
		if err != nil {
			return false, 0, fmt.Errorf("if_version %q: want a version number (0: the key must be absent)", s)
		}
		cond = true
	}
	if s := q.Get("if_absent"); s != "" && s != "0" && s != "false" {
		if cond && v != 0 {
			return false, 0, fmt.Errorf("if_absent and if_version %d contradict each other", v)
		}
		cond, v = true, 0
	}
	return cond, v, nil
}

// consistentKV serves /v1/kv/KEY?consistent=1.
func (s *httpServer) consistentKV(w http.ResponseWriter, r *http.Request, key string) {
	if err := store.ValidateKey(key); err != nil {
		storeError(w, err)
		return
	}
	c := s.a.coord
	switch r.Method {
	case http.MethodGet:
		rep, err := c.do(r.Context(), &coordOp{Op: opGet, Key: key})
		if err != nil {
			writeCoordError(w, err)
			return
		}
		if rep.Code == codeKeyNotFound {
			writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("key %q not found in the consistent namespace", key), Code: codeKeyNotFound})
			return
		}
		writeJSON(w, http.StatusOK, &KV{Key: key, Value: rep.Value, Version: strconv.FormatUint(rep.Version, 10), Origin: rep.Leader})
	case http.MethodPut, http.MethodPost, http.MethodDelete:
		cond, ifv, err := parseCond(r.URL.Query())
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		op := &coordOp{Op: opDelete, Key: key, Cond: cond, IfVersion: ifv}
		if r.Method != http.MethodDelete {
			body, ok := readValue(w, r)
			if !ok {
				return
			}
			op.Op, op.Value = opPut, body
		}
		rep, err := c.do(r.Context(), op)
		if err != nil {
			writeCoordError(w, err)
			return
		}
		if rep.Code == codeNamespaceFull {
			writeJSON(w, http.StatusInsufficientStorage, apiError{Error: fmt.Sprintf("the consistent namespace is full (%d bytes of keys and values at most: it is for coordination data; delete keys or use the gossip store)", maxFSMBytes), Code: codeNamespaceFull})
			return
		}
		if rep.Code == codeVersionMismatch {
			what := "absent"
			if rep.Existed {
				what = "at version " + strconv.FormatUint(rep.Version, 10)
			}
			writeJSON(w, http.StatusConflict, apiError{Error: fmt.Sprintf("version mismatch: key %q is %s, not at version %d", key, what, ifv), Code: codeVersionMismatch})
			return
		}
		writeJSON(w, http.StatusOK, WriteResult{Key: key, Version: strconv.FormatUint(rep.Version, 10), Origin: rep.Leader, Existed: rep.Existed})
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on /v1/kv/KEY", r.Method))
	}
}

// consistentList serves GET /v1/kv?consistent=1&prefix=P.
func (s *httpServer) consistentList(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on /v1/kv", r.Method))
		return
	}
	rep, err := s.a.coord.do(r.Context(), &coordOp{Op: opList, Key: r.URL.Query().Get("prefix")})
	if err != nil {
		writeCoordError(w, err)
		return
	}
	if rep.Keys == nil {
		rep.Keys = []KeyInfo{}
	}
	writeJSON(w, http.StatusOK, rep.Keys)
}

// locks serves /v1/locks/NAME and /v1/locks/NAME/renew; rest is the
// escaped path after /v1/locks/.
func (s *httpServer) locks(w http.ResponseWriter, r *http.Request, rest string) {
	renew := false
	if n, ok := strings.CutSuffix(rest, "/renew"); ok {
		rest, renew = n, true
	}
	name, err := url.PathUnescape(rest)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad lock name escape in path: %w", err))
		return
	}
	if err := store.ValidateKey(name); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("lock name: %w", err))
		return
	}
	q := r.URL.Query()
	c := s.a.coord
	switch {
	case renew && r.Method == http.MethodPost:
		s.lockOp(w, r, name, &coordOp{Op: opRenew, Key: name, Session: q.Get("session")})
	case !renew && r.Method == http.MethodDelete:
		s.lockOp(w, r, name, &coordOp{Op: opUnlock, Key: name, Session: q.Get("session")})
	case !renew && r.Method == http.MethodPost:
		ttl, err := durationParam(q, "ttl", defaultLockTTL, minLockTTL, maxLockTTL)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		wait, err := durationParam(q, "wait", 0, 0, maxLockWait)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		deadline := time.Now().Add(wait)
		op := &coordOp{Op: opLock, Key: name, Session: newSession(), TTLMillis: ttl.Milliseconds()}
		for {
			changed := c.fsm.lockChanged()
			rep, err := c.do(r.Context(), op)
			if err != nil {
				writeCoordError(w, err)
				return
			}
			if rep.Code == codeNamespaceFull {
				writeJSON(w, http.StatusInsufficientStorage, apiError{Error: "the consistent namespace is full: no room for another lock", Code: codeNamespaceFull})
				return
			}
			if rep.Code == "" {
				writeJSON(w, http.StatusOK, LockGrant{Name: name, Session: op.Session, Fence: rep.Lock.Fence, TTLMillis: rep.Lock.TTLMillis})
				return
			}
			left := time.Until(deadline)
			if left <= 0 {
				writeJSON(w, http.StatusConflict, apiError{Error: fmt.Sprintf("lock %q is held by another session (fence %d); waited %v", name, rep.Lock.Fence, wait), Code: codeLockHeld})
				return
			}
			// Wake at the next lock change this node applies, or poll.
			tm := time.NewTimer(min(left, 250*time.Millisecond))
			select {
			case <-changed:
			case <-tm.C:
			case <-r.Context().Done():
				tm.Stop()
				return
			}
			tm.Stop()
		}
	default:
		w.Header().Set("Allow", "POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on %s", r.Method, r.URL.Path))
	}
}

// lockOp runs a renew or release for the session.
func (s *httpServer) lockOp(w http.ResponseWriter, r *http.Request, name string, op *coordOp) {
	if op.Session == "" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("session is required (the one the lock was granted to)"))
		return
	}
	rep, err := s.a.coord.do(r.Context(), op)
	if err != nil {
		writeCoordError(w, err)
		return
	}
	if rep.Code == codeLockLost {
		writeJSON(w, http.StatusConflict, apiError{Error: fmt.Sprintf("lock %q is not held by session %s (expired or released)", name, op.Session), Code: codeLockLost})
		return
	}
	if op.Op == opUnlock {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, LockGrant{Name: name, Session: op.Session, Fence: rep.Lock.Fence, TTLMillis: rep.Lock.TTLMillis})
}

// durationParam parses a duration query parameter within [lo, hi].
func durationParam(q url.Values, name string, def, lo, hi time.Duration) (time.Duration, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a duration such as 10s", name, s)
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("%s %v: want %v to %v", name, d, lo, hi)
	}
	return d, nil
}
