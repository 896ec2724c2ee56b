package daemon

// Fault commands reach any daemon and act on the whole cluster. The daemon
// that receives POST /v1/faults checks the request against the members it
// can find (planFault), adds a record to the cluster's fault table
// (faultstate.go), saves and applies it, and pushes the table to every
// member it can find; each node derives and applies its own rules. A
// member that cannot be reached (down) applies the fault when it returns,
// from its saved table or its first exchange. A heal turns records into
// tombstones the same way.
//
//	POST   /v1/faults            FaultRequest -> FaultResult
//	GET    /v1/faults            this node's rules; ?all=1: FaultsView of the cluster
//	DELETE /v1/faults[?target=X] heal every fault, or those that named node X, or fault X -> HealResult
//	POST   /v1/faults/table      table exchange between nodes: see faultsync.go

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"
)

// planFault computes the rules each node applies for a request. members
// lists every node that may be named. It is pure.
func planFault(req FaultRequest, members []string, id string, now time.Time) (map[string][]Rule, error) {
	known := func(ns []string) error {
		for _, n := range ns {
			if !slices.Contains(members, n) {
				return fmt.Errorf("unknown node %q: `peerctl members` lists the nodes", n)
			}
		}
		return nil
	}
	targets := req.Nodes
	if len(targets) == 1 && targets[0] == "*" {
		targets = slices.Clone(members)
	}
	base := Rule{ID: id, Since: now, Reason: req.Reason}
	if req.For > 0 {
		base.Until = now.Add(req.For)
	}
	plan := map[string][]Rule{}
	add := func(node string, r Rule) { plan[node] = append(plan[node], r) }
	switch req.Kind {
	case ReqPartition:
		if len(req.Groups) < 2 {
			return nil, fmt.Errorf("partition needs at least two sides, e.g. a,b / c,d,e")
		}
		seen := map[string]bool{}
		var all []string
		for _, g := range req.Groups {
			if len(g) == 0 {
				return nil, fmt.Errorf("partition: a side is empty")
			}
			if err := known(g); err != nil {
				return nil, err
			}
			for _, n := range g {
				if seen[n] {
					return nil, fmt.Errorf("partition: node %q is on two sides", n)
				}
				seen[n] = true
			}
			all = append(all, g...)
		}
		for i, g := range req.Groups {
			var others []string
			for j, h := range req.Groups {
				if i != j {
					others = append(others, h...)
				}
			}
			sort.Strings(others)
			for _, n := range g {
				r := base
				r.Kind, r.Peers, r.Nodes = FaultDrop, others, all
				add(n, r)
			}
		}
		return plan, nil
	case ReqIsolate, ReqPause, ReqDelay, ReqLoss:
	default:
		return nil, fmt.Errorf("unknown fault %q: want partition, isolate, pause, delay or loss", req.Kind)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%s: name at least one node", req.Kind)
	}
	if err := known(targets); err != nil {
		return nil, err
	}
	if err := known(req.Peers); err != nil {
		return nil, err
	}
	base.Nodes = slices.Clone(targets)
	switch req.Kind {
	case ReqPause:
		for _, n := range targets {
			r := base
			r.Kind = FaultPause
			add(n, r)
		}
		return plan, nil
	case ReqIsolate:
		for _, m := range members {
			r := base
			r.Kind = FaultDrop
			if !slices.Contains(targets, m) {
				r.Peers = slices.Clone(targets)
			}
			add(m, r)
		}
		return plan, nil
	}
	// delay and loss act in both directions: the targets toward their
	// peers, and the peers toward the targets.
	r := base
	r.Delay, r.Jitter, r.Rate = req.Delay, req.Jitter, req.Rate
	r.Kind = FaultDelay
	if req.Kind == ReqLoss {
		r.Kind = FaultLoss
	}
	if err := validateRule(&r); err != nil {
		return nil, err
	}
	peers := req.Peers
	if len(peers) == 0 {
		for _, m := range members {
			if !slices.Contains(targets, m) {
				peers = append(peers, m)
			}
		}
	}
	for _, t := range targets {
		tr := r
		if len(req.Peers) > 0 {
			tr.Peers = slices.Clone(req.Peers)
		}
		add(t, tr)
	}
	for _, p := range peers {
		if slices.Contains(targets, p) {
			continue
		}
		pr := r
		pr.Peers = slices.Clone(targets)
		add(p, pr)
	}
	return plan, nil
}

func newFaultID() string {
	var b [4]byte
	rand.Read(b[:])
	return "f-" + hex.EncodeToString(b[:])
}

// reachable returns the members whose API can be asked: all but those that
// left. A partitioned node is "failed" to this side, yet its API answers.
func (a *Agent) reachable() []Member {
	var out []Member
	for _, m := range a.Members() {
		if m.Status != serf.StatusLeft.String() && m.API != "" {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// discover returns every member whose API can be asked, as known to this
// node, to its fault table or to any member it knows, transitively. A node that restarted a
// moment ago, or that is cut off, may not know every member itself; the
// nodes that hold fault rules must all be reached, or a heal would leave
// rules in place.
func (s *httpServer) discover(ctx context.Context) []Member {
	mv := s.walkMembers(ctx, append(s.a.reachable(), s.a.faultPeers()...))
	out := make([]Member, 0, len(mv.known))
	for _, m := range mv.known {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// eachNode calls fn for each of ms (only those named, if names is not nil)
// in parallel and collects the results in name order.
func eachNode(ms []Member, names []string, fn func(m Member) NodeFaults) []NodeFaults {
	var out []NodeFaults
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range ms {
		if names != nil && !slices.Contains(names, m.Name) {
			continue
		}
		wg.Add(1)
		go func(m Member) {
			defer wg.Done()
			nf := fn(m)
			mu.Lock()
			out = append(out, nf)
			mu.Unlock()
		}(m)
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// callNode sends a JSON request to a member's API.
func (s *httpServer) callNode(ctx context.Context, m Member, method, path string, in, out any) error {
	if m.Name == s.a.cfg.Name {
		m.API = s.ln.Addr().String()
	}
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	c := NewClientWith(m.API, s.hc)
	return c.Do(ctx, method, path, strings.NewReader(string(body)), out)
}

// faultRoutes registers the fault endpoints.
func (s *httpServer) faultRoutes() {
	s.mux.HandleFunc("POST /v1/faults", s.postFaults)
	s.mux.HandleFunc("GET /v1/faults", s.getFaults)
	s.mux.HandleFunc("DELETE /v1/faults", s.deleteFaults)
	s.mux.HandleFunc("POST /v1/faults/table", s.postFaultTable)
}

func (s *httpServer) postFaults(w http.ResponseWriter, r *http.Request) {
	var req FaultRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, bodyErrorCode(err), fmt.Errorf("bad fault request: %w", err))
		return
	}
	if err := validateFaultRequest(req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	members := s.discover(r.Context())
	rec := FaultRecord{ID: newFaultID(), Request: req, Created: time.Now().UTC()}
	for _, m := range members {
		rec.Members = append(rec.Members, Endpoint{Name: m.Name, Gossip: m.Addr, API: m.API})
	}
	if req.For > 0 {
		rec.Until = rec.Created.Add(req.For)
	}
	plan, err := planRecord(&rec)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := validateRecord(&rec); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	_, err = s.a.updateFaults(func(t FaultTable) (FaultTable, error) {
		if n := len(t.live(time.Now())); n >= maxLiveFaults {
			return nil, fmt.Errorf("%d faults in force, the most there may be: heal some first (`peerctl faults` lists them)", n)
		}
		out := maps.Clone(t)
		if out == nil {
			out = FaultTable{}
		}
		out[rec.ID] = rec
		if n := len(encodeFaults(out)); n > maxFaultBody/2 {
			return nil, fmt.Errorf("the fault table would hold %d bytes, more than %d: heal some faults first", n, maxFaultBody/2)
		}
		return out, nil
	})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("record fault: %w", err))
		return
	}
	told := s.a.pushFaults(r.Context(), members)
	res := FaultResult{ID: rec.ID, Until: rec.Until}
	for _, nf := range told {
		if rules, ok := plan[nf.Node]; ok {
			nf.Rules = rules
			res.Nodes = append(res.Nodes, nf)
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *httpServer) getFaults(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("all") == "" {
		writeJSON(w, http.StatusOK, s.a.faults.Rules())
		return
	}
	nodes := eachNode(s.discover(r.Context()), nil, func(m Member) NodeFaults {
		nf := NodeFaults{Node: m.Name, Rules: []Rule{}}
		if err := s.callNode(r.Context(), m, "GET", "/v1/faults", nil, &nf.Rules); err != nil {
			nf.Error = err.Error()
		}
		return nf
	})
	view := FaultsView{Faults: []FaultStatus{}, Nodes: nodes}
	for _, rec := range s.a.faultTable().live(time.Now()) {
		st := FaultStatus{FaultRecord: rec, Named: rec.Named(), Applied: []string{}, Pending: []string{}}
		for _, n := range involvedNodes(&rec) {
			applied := false
			for _, nf := range nodes {
				if nf.Node == n && slices.ContainsFunc(nf.Rules, func(r Rule) bool { return r.ID == rec.ID }) {
					applied = true
				}
			}
			if applied {
				st.Applied = append(st.Applied, n)
			} else {
				st.Pending = append(st.Pending, n)
			}
		}
		view.Faults = append(view.Faults, st)
	}
	writeJSON(w, http.StatusOK, view)
}

// deleteFaults heals: every fault in force, the fault whose ID is
// ?target=, or the faults that named the node ?target=. A target that is
// neither a fault nor a node anyone knows is an error (a typo must not
// look like a heal).
func (s *httpServer) deleteFaults(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("target")
	members := s.discover(r.Context())
	var healed []FaultRecord
	_, err := s.a.updateFaults(func(t FaultTable) (FaultTable, error) {
		now := time.Now().UTC()
		ids := selectHeal(t, target, now)
		if len(ids) == 0 && target != "" && !knownFaultTarget(t, members, target) {
			return nil, errUnknownTarget
		}
		for _, id := range ids {
			healed = append(healed, t[id])
		}
		return healFaults(t, ids, now), nil
	})
	switch {
	case errors.Is(err, errUnknownTarget):
		writeError(w, http.StatusNotFound, fmt.Errorf("no fault or node %q: `peerctl faults` lists the faults, `peerctl members` the nodes", target))
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("record heal: %w", err))
		return
	}
	res := HealResult{Healed: []FaultRecord{}, Nodes: s.a.pushFaults(r.Context(), members)}
	res.Healed = append(res.Healed, healed...)
	if len(healed) > 0 {
		s.a.log.Warn("faults healed", "count", len(healed), "target", target)
	}
	writeJSON(w, http.StatusOK, res)
}

var errUnknownTarget = errors.New("unknown heal target")

// knownFaultTarget reports whether target names a member or a fault the
// table holds (healed or expired).
func knownFaultTarget(t FaultTable, members []Member, target string) bool {
	if _, ok := t[target]; ok {
		return true
	}
	if _, ok := t.endpoints()[target]; ok {
		return true
	}
	return slices.ContainsFunc(members, func(m Member) bool { return m.Name == target })
}
