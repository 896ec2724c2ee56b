package daemon

// Convergence check: GET /v1/check asks every alive member for its digest
// (GET /v1/digest) and, where digests differ, for the summaries of the
// differing buckets (GET /v1/summaries?b=...), and reports the keys on which
// nodes disagree. It reads through the members' APIs, outside the fault
// layer, so it works while faults are active.

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/peerctl/peerctl/store"
)

// CheckResult is the outcome of a convergence check.
type CheckResult struct {
	Converged bool              `json:"converged"`
	Nodes     []string          `json:"nodes"`             // alive nodes compared
	Digests   map[string]string `json:"digests"`           // node -> digest hash
	Keys      map[string]int    `json:"keys"`              // node -> live keys
	Errors    map[string]string `json:"errors,omitempty"`  // nodes that could not be asked
	Skipped   map[string]string `json:"skipped,omitempty"` // members not compared (failed, ...) -> status
	Divergent int               `json:"divergent"`         // keys not identical everywhere
	Sample    []Divergence      `json:"sample,omitempty"`  // up to 20 of them
	Buckets   int               `json:"buckets,omitempty"` // digest buckets that differ
}

// Divergence is one key that nodes hold differently.
type Divergence struct {
	Key      string            `json:"key"`
	Versions map[string]string `json:"versions"` // node -> version ("" missing; "deleted@..." tombstone)
}

const checkSample = 20

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

func (s *httpServer) check(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var alive []Member
	skipped := map[string]string{}
	for _, m := range s.a.Members() {
		switch m.Status {
		case "alive", "suspect":
			if m.Name == s.a.cfg.Name {
				m.API = s.ln.Addr().String()
			}
			alive = append(alive, m)
		case "left", "leaving":
		default:
			// A failed member (down, or across a partition) may hold
			// anything: not converged until it is back and compared.
			skipped[m.Name] = m.Status
		}
	}
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
			sum := d.Sum()
			res.Digests[m.Name] = hex.EncodeToString([]byte{byte(sum >> 56), byte(sum >> 48), byte(sum >> 40), byte(sum >> 32), byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
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
	res.Converged = len(diff) == 0 && len(res.Errors) == 0 && len(skipped) == 0
	if len(skipped) > 0 {
		res.Skipped = skipped
	}
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
