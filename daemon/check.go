package daemon

// Convergence check: GET /v1/check asks every member for its digest (GET
// /v1/digest) and, where digests differ, for the summaries of the differing
// buckets (GET /v1/summaries?b=...), and reports the keys on which nodes
// disagree. It reads through the members' APIs, outside the fault layer, so
// it works while faults are active.
//
// Which members: every member that this node, any member it can ask, or
// its saved membership (known.go) knows of, found transitively through the
// members' APIs (walkMembers, which the fault commands use too). A node
// that restarted behind a partition sees only itself; it must not answer
// "converged" for a cluster it cannot see. A member that left does not
// count. A member is compared only if this node sees it alive; one that it
// sees failed or does not know, or that another node sees failed, makes the
// answer "not converged", with the reason (Reasons): "n2, n3 unreachable
// from n1: partitioned?", "n3 failed", "n1 failed to n2: partitioned?".

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/peerctl/peerctl/store"
)

const checkSample = 20

// digestHex is the hex form of a digest's hash that /v1/info and /v1/check
// both print: the 64-bit sum, big-endian, 16 hex digits.
func digestHex(d *store.Digest) string { return fmt.Sprintf("%016x", d.Sum()) }

func (s *httpServer) digest(w http.ResponseWriter, r *http.Request) {
	d := s.a.st.Digest()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(store.EncodeDigest(&d))
}

func (s *httpServer) summaries(w http.ResponseWriter, r *http.Request) {
	var buckets []int
	for _, f := range strings.Split(r.URL.Query().Get("b"), ",") {
		if f == "" {
			continue
		}
		b, err := strconv.Atoi(f)
		if err != nil || b < 0 || b >= store.NumBuckets {
			writeError(w, http.StatusBadRequest, fmt.Errorf("bad bucket %q: want 0..%d", f, store.NumBuckets-1))
			return
		}
		buckets = append(buckets, b)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(store.EncodeSummaries(s.a.st.Summaries(buckets)))
}

func (s *httpServer) getRaw(ctx context.Context, api, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+api+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMessage))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// checkBudget bounds one check's fan-out (the walk of members, then the
// digests and summaries): a member that has not answered by then, a hung
// or stopped process, counts as "could not be asked". ?timeout=D asks for
// less (`check --wait` passes the time it has left) or more, up to
// maxCheckBudget.
const (
	checkBudget    = 5 * time.Second
	minCheckBudget = 100 * time.Millisecond
	maxCheckBudget = 30 * time.Second
)

func (s *httpServer) check(w http.ResponseWriter, r *http.Request) {
	budget := checkBudget
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < minCheckBudget || d > maxCheckBudget {
			writeError(w, http.StatusBadRequest, fmt.Errorf("check: timeout %q: want a duration from %v to %v", v, minCheckBudget, maxCheckBudget))
			return
		}
		budget = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), budget)
	defer cancel()
	// The walk gets half the budget, so the digests get the rest even when
	// a member hangs in both.
	walkCtx, cancelWalk := context.WithTimeout(ctx, budget/2)
	alive, skipped, reasons := s.checkMembers(walkCtx)
	cancelWalk()
	sort.Slice(alive, func(i, j int) bool { return alive[i].Name < alive[j].Name })
	res := CheckResult{Digests: map[string]string{}, Keys: map[string]int{}, Errors: map[string]string{}}
	digests := map[string]*store.Digest{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range alive {
		wg.Add(1)
		go func(m Member) {
			defer wg.Done()
			b, err := s.getRaw(ctx, m.API, "/v1/digest")
			var d *store.Digest
			if err == nil {
				d, err = store.DecodeDigest(b)
			}
			var info *Info
			if err == nil {
				info, err = NewClientWith(m.API, s.hc).Info(ctx, "")
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errors[m.Name] = err.Error()
				return
			}
			digests[m.Name] = d
			res.Digests[m.Name] = digestHex(d)
			res.Keys[m.Name] = info.Store.Keys
		}(m)
	}
	wg.Wait()
	for name := range digests {
		res.Nodes = append(res.Nodes, name)
	}
	sort.Strings(res.Nodes)
	// Buckets in which any two nodes differ.
	diff := map[int]bool{}
	if len(res.Nodes) > 0 {
		d0 := digests[res.Nodes[0]]
		for _, n := range res.Nodes[1:] {
			for _, b := range d0.Diff(digests[n]) {
				diff[b] = true
			}
		}
	}
	res.Buckets = len(diff)
	res.Converged = len(diff) == 0 && len(res.Errors) == 0 && len(reasons) == 0
	if len(skipped) > 0 {
		res.Skipped = skipped
	}
	res.Reasons = reasons
	if len(diff) > 0 {
		var bs []string
		for b := range diff {
			bs = append(bs, strconv.Itoa(b))
		}
		path := "/v1/summaries?b=" + strings.Join(bs, ",")
		// key -> node -> summary
		held := map[string]map[string]store.Summary{}
		for _, n := range res.Nodes {
			var api string
			for _, m := range alive {
				if m.Name == n {
					api = m.API
				}
			}
			b, err := s.getRaw(ctx, api, path)
			var sums []store.Summary
			if err == nil {
				sums, err = store.DecodeSummaries(b)
			}
			if err != nil {
				res.Errors[n] = err.Error()
				continue
			}
			for _, sm := range sums {
				if held[sm.Key] == nil {
					held[sm.Key] = map[string]store.Summary{}
				}
				held[sm.Key][n] = sm
			}
		}
		var keys []string
		for k, per := range held {
			same := len(per) == len(res.Nodes)
			var first *store.Summary
			for _, sm := range per {
				if first == nil {
					sm := sm
					first = &sm
				} else if sm != *first {
					same = false
				}
			}
			if !same {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		res.Divergent = len(keys)
		for _, k := range keys[:min(len(keys), checkSample)] {
			dv := Divergence{Key: k, Versions: map[string]string{}}
			for _, n := range res.Nodes {
				sm, ok := held[k][n]
				switch {
				case !ok:
					dv.Versions[n] = ""
				case sm.Deleted:
					dv.Versions[n] = "deleted@" + sm.Version.String()
				default:
					dv.Versions[n] = sm.Version.String()
				}
			}
			res.Sample = append(res.Sample, dv)
		}
	}
	if len(res.Errors) == 0 {
		res.Errors = nil
	}
	writeJSON(w, http.StatusOK, res)
}

// Member statuses as strings, as Member.Status carries them.
var (
	statusAlive   = serf.StatusAlive.String()
	statusFailed  = serf.StatusFailed.String()
	statusLeft    = serf.StatusLeft.String()
	statusLeaving = serf.StatusLeaving.String()
)

func isUp(status string) bool { return status == statusAlive || status == "suspect" }

func isGone(status string) bool { return status == statusLeft || status == statusLeaving }

// checkMembers decides which members check compares: those this node sees
// alive (with their API addresses, this node's own listener for itself),
// and for the others why they cannot be: skipped maps each to its reason,
// and reasons summarises, one line per reason, every member that makes
// the cluster not converged (including compared members another node sees
// failed).
func (s *httpServer) checkMembers(ctx context.Context) (alive []Member, skipped map[string]string, reasons []string) {
	self := s.a.cfg.Name
	seeds := s.a.reachable()
	local := map[string]string{}
	for _, m := range s.a.Members() {
		local[m.Name] = m.Status
	}
	have := map[string]bool{}
	for _, m := range seeds {
		have[m.Name] = true
	}
	for _, k := range s.a.knownMembers() {
		if have[k.Name] || k.API == "" || isGone(local[k.Name]) {
			continue
		}
		have[k.Name] = true
		seeds = append(seeds, Member{Name: k.Name, Addr: k.Addr, API: k.API})
	}
	mv := s.walkMembers(ctx, seeds)

	// status[N][V]: member N's status as node V sees it.
	status := map[string]map[string]string{}
	for viewer, ms := range mv.views {
		for _, m := range ms {
			if status[m.Name] == nil {
				status[m.Name] = map[string]string{}
			}
			status[m.Name][viewer] = m.Status
		}
	}
	for name := range have {
		if status[name] == nil {
			status[name] = map[string]string{}
		}
	}
	names := make([]string, 0, len(status))
	for n := range status {
		names = append(names, n)
	}
	sort.Strings(names)

	skipped = map[string]string{}
	groups := map[string][]string{} // reason -> members
	var order []string
	group := func(reason, name string) {
		if groups[reason] == nil {
			order = append(order, reason)
		}
		groups[reason] = append(groups[reason], name)
	}
	for _, n := range names {
		var upTo, failedTo []string // other nodes that see n alive, failed
		left := false
		for v, st := range status[n] {
			switch {
			case v == n:
			case isUp(st):
				upTo = append(upTo, v)
			case st == statusFailed:
				failedTo = append(failedTo, v)
			case isGone(st):
				left = true
			}
		}
		sort.Strings(upTo)
		sort.Strings(failedTo)
		if left && len(upTo) == 0 {
			continue // it left: it does not count
		}
		_, answered := mv.views[n] // its own API answered
		if n != self && !isUp(status[n][self]) {
			switch {
			case len(upTo) > 0 || answered:
				skipped[n] = "unreachable from " + self + ": partitioned?"
			case len(failedTo) > 0:
				skipped[n] = statusFailed
			default:
				skipped[n] = "unreachable from " + self + ": down?" // its API does not answer, no node that does knows it
			}
			group(skipped[n], n)
			continue
		}
		if n == self {
			alive = append(alive, Member{Name: self, API: s.ln.Addr().String(), Status: statusAlive})
		} else {
			for _, m := range mv.views[self] {
				if m.Name == n {
					alive = append(alive, m)
				}
			}
		}
		var others []string
		for _, v := range failedTo {
			if v != self {
				others = append(others, v)
			}
		}
		if len(others) > 0 {
			group("failed to "+strings.Join(others, ", ")+": partitioned?", n)
		}
	}
	for _, reason := range order {
		ns := groups[reason]
		if reason == statusFailed {
			reasons = append(reasons, strings.Join(ns, ", ")+" failed")
			continue
		}
		reasons = append(reasons, strings.Join(ns, ", ")+" "+reason)
	}
	return alive, skipped, reasons
}

// memberViews is what walkMembers learned.
type memberViews struct {
	known map[string]Member   // every member not left, with an API address: its first record
	views map[string][]Member // node -> the members as it sees them (this node's own included)
}

// walkMembers asks seeds, and the members they know of, transitively, for
// their members (GET /v1/members, through the members' APIs, which stay
// outside the fault layer). This node answers from its own view. It asks
// at most maxWalk nodes in at most 3 rounds, in parallel within a round;
// a node that does not answer is left out of views.
func (s *httpServer) walkMembers(ctx context.Context, seeds []Member) memberViews {
	const maxWalk = 1024
	self := s.a.cfg.Name
	mv := memberViews{known: map[string]Member{}, views: map[string][]Member{self: s.a.Members()}}
	var frontier []Member
	for _, m := range seeds {
		if _, ok := mv.known[m.Name]; ok || isGone(m.Status) || m.API == "" {
			continue
		}
		mv.known[m.Name] = m
		frontier = append(frontier, m)
	}
	asked := 0
	for round := 0; round < 3 && len(frontier) > 0; round++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		var next []Member
		for _, m := range frontier {
			if m.Name == self || asked >= maxWalk {
				continue
			}
			asked++
			wg.Add(1)
			go func(m Member) {
				defer wg.Done()
				var ms []Member
				if err := s.callNode(ctx, m, "GET", "/v1/members", nil, &ms); err != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				mv.views[m.Name] = ms
				for _, o := range ms {
					if _, ok := mv.known[o.Name]; !ok && !isGone(o.Status) && o.API != "" {
						mv.known[o.Name] = o
						next = append(next, o)
					}
				}
			}(m)
		}
		wg.Wait()
		frontier = next
	}
	return mv
}
