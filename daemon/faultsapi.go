package daemon

// Fault commands reach any daemon and act on the whole cluster: the daemon
// that receives POST /v1/faults plans the rules each node must apply
// (planFault) and installs them on every node involved through their APIs,
// which stay outside the fault layer. So a partition is installed on both
// sides, and a faulted node can always be healed.
//
//	POST   /v1/faults            FaultRequest -> FaultResult
//	GET    /v1/faults            this node's rules; ?all=1: []NodeFaults of every member
//	DELETE /v1/faults[?target=N] heal every node (of rules that named N) -> []NodeFaults
//	POST   /v1/faults/local      {"rules": [...], "seed": N}: install on this node
//	DELETE /v1/faults/local[?target=N]

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"
)

// Fault request kinds.
const (
	ReqPartition = "partition"
	ReqIsolate   = "isolate"
	ReqPause     = "pause"
	ReqDelay     = "delay"
	ReqLoss      = "loss"
)

// FaultRequest asks for a fault across the cluster.
type FaultRequest struct {
	Kind   string        `json:"kind"`             // partition, isolate, pause, delay, loss
	Groups [][]string    `json:"groups,omitempty"` // partition: the sides
	Nodes  []string      `json:"nodes,omitempty"`  // the targets; ["*"] means every node
	Peers  []string      `json:"peers,omitempty"`  // delay, loss: only toward these (default all)
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	Rate   float64       `json:"rate,omitempty"`
	For    time.Duration `json:"for,omitempty"`  // 0: until healed
	Seed   uint64        `json:"seed,omitempty"` // 0: keep each node's generator
	Reason string        `json:"reason,omitempty"`
}

// NodeFaults is one node's rules, or why it could not be reached.
type NodeFaults struct {
	Node   string `json:"node"`
	Rules  []Rule `json:"rules"`
	Healed int    `json:"healed,omitempty"`
	Error  string `json:"error,omitempty"`
}

// FaultResult reports what a fault command installed where.
type FaultResult struct {
	ID    string       `json:"id"`
	Nodes []NodeFaults `json:"nodes"`
}

type localFaults struct {
	Rules []Rule `json:"rules"`
	Seed  uint64 `json:"seed,omitempty"`
}

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
	if err := r.validate(); err != nil {
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
// node or to any member it knows, transitively. A node that restarted a
// moment ago, or that is cut off, may not know every member itself; the
// nodes that hold fault rules must all be reached, or a heal would leave
// rules in place.
func (s *httpServer) discover(ctx context.Context) []Member {
	mv := s.walkMembers(ctx, s.a.reachable())
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
	return c.do(ctx, method, "http://"+m.API+path, strings.NewReader(string(body)), out)
}

func (s *httpServer) postFaults(w http.ResponseWriter, r *http.Request) {
	var req FaultRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad fault request: %w", err))
		return
	}
	members := s.discover(r.Context())
	var names []string
	for _, m := range members {
		names = append(names, m.Name)
	}
	id := newFaultID()
	plan, err := planFault(req, names, id, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var involved []string
	for n := range plan {
		involved = append(involved, n)
	}
	res := FaultResult{ID: id}
	res.Nodes = eachNode(members, involved, func(m Member) NodeFaults {
		seed := req.Seed
		if seed != 0 {
			h := fnv.New64a()
			h.Write([]byte(m.Name))
			seed ^= h.Sum64()
		}
		nf := NodeFaults{Node: m.Name, Rules: plan[m.Name]}
		if err := s.callNode(r.Context(), m, "POST", "/v1/faults/local", localFaults{Rules: plan[m.Name], Seed: seed}, nil); err != nil {
			nf.Error = err.Error()
		}
		return nf
	})
	writeJSON(w, http.StatusOK, res)
}

func (s *httpServer) getFaults(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("all") == "" {
		writeJSON(w, http.StatusOK, s.a.faults.Rules())
		return
	}
	writeJSON(w, http.StatusOK, eachNode(s.discover(r.Context()), nil, func(m Member) NodeFaults {
		nf := NodeFaults{Node: m.Name}
		if err := s.callNode(r.Context(), m, "GET", "/v1/faults", nil, &nf.Rules); err != nil {
			nf.Error = err.Error()
		}
		return nf
	}))
}

func (s *httpServer) deleteFaults(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("target")
	path := "/v1/faults/local"
	if target != "" {
		path += "?target=" + url.QueryEscape(target)
	}
	writeJSON(w, http.StatusOK, eachNode(s.discover(r.Context()), nil, func(m Member) NodeFaults {
		nf := NodeFaults{Node: m.Name}
		var res struct {
			Healed int `json:"healed"`
		}
		if err := s.callNode(r.Context(), m, "DELETE", path, nil, &res); err != nil {
			nf.Error = err.Error()
		}
		nf.Healed = res.Healed
		return nf
	}))
}

func (s *httpServer) postLocalFaults(w http.ResponseWriter, r *http.Request) {
	var lf localFaults
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&lf); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad fault rules: %w", err))
		return
	}
	if lf.Seed != 0 {
		s.a.faults.Seed(lf.Seed)
	}
	if err := s.a.faults.Add(lf.Rules...); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	for _, rule := range lf.Rules {
		until := "until healed"
		if !rule.Until.IsZero() {
			until = "until " + rule.Until.Format(time.RFC3339)
		}
		s.a.log.Warn("fault injected: "+rule.Describe(), "id", rule.ID, "reason", rule.Reason, "for", until)
	}
	writeJSON(w, http.StatusOK, map[string]int{"installed": len(lf.Rules)})
}

func (s *httpServer) deleteLocalFaults(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("target")
	var ids []string
	if target != "" {
		for _, rule := range s.a.faults.Rules() {
			if slices.Contains(rule.Nodes, target) {
				ids = append(ids, rule.ID)
			}
		}
	}
	n := 0
	if target == "" || len(ids) > 0 {
		n = s.a.faults.Heal(ids...)
	}
	if n > 0 {
		s.a.log.Warn("faults healed", "count", n, "target", target)
		s.a.rejoinFailed()
	}
	writeJSON(w, http.StatusOK, map[string]int{"healed": n})
}

// rejoinFailed contacts members marked failed at once, rather than waiting
// for serf's reconnect loop, so nodes that declared each other failed
// during a fault find each other again within moments of a heal.
func (a *Agent) rejoinFailed() {
	var addrs []string
	for _, m := range a.Members() {
		if m.Status == serf.StatusFailed.String() {
			addrs = append(addrs, m.Addr)
		}
	}
	if len(addrs) == 0 {
		return
	}
	go func() {
		n, err := a.serf.Join(addrs, true)
		a.log.Info("rejoin after heal", "failed_members", len(addrs), "contacted", n, "err", err)
	}()
}
