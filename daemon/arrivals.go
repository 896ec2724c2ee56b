package daemon

// Arrival tracing for benchmarks (--trace-arrivals): each node records when
// each key's newest version first became readable on it, so a harness on the
// same machine can compute, per write, the time from its acknowledgement to
// the moment the last node could read it, without polling every node for
// every key. GET /v1/debug/arrivals?prefix=P returns {key: unix nanos}.

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/peerctl/peerctl/store"
)

const maxArrivals = 1 << 20

// arrivals records first-readable times. It is safe for concurrent use.
type arrivals struct {
	mu sync.Mutex // guards m
	m  map[string]int64
}

func (a *arrivals) record(es []store.Entry) {
	if a == nil || len(es) == 0 {
		return
	}
	now := time.Now().UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[string]int64)
	}
	for _, e := range es {
		if len(a.m) >= maxArrivals {
			return
		}
		a.m[e.Key] = now
	}
}

func (s *httpServer) debugArrivals(w http.ResponseWriter, r *http.Request) {
	tr := s.a.repl.arrivals
	if tr == nil {
		writeError(w, http.StatusNotFound, errNoTrace)
		return
	}
	prefix := r.URL.Query().Get("prefix")
	out := map[string]int64{}
	tr.mu.Lock()
	for k, v := range tr.m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	tr.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

var errNoTrace = errors.New("arrival tracing is off: start the agent with --trace-arrivals")
