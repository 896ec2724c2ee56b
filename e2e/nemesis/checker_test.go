package nemesis

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/peerctl/peerctl/store"
)

// The checker judges a history against the final state of every node, read
// once the cluster has converged and no client writes any more. Under
// last-writer-wins the final state of a key is not a particular write, but
// it is constrained:
//
//	(a) every node holds the same version, tombstone flag and value of
//	    every key (convergence);
//	(b) for every acknowledged write of version v to key k, k's final
//	    version is >= v in (timestamp, node) order, and if equal it is that
//	    very write: same tombstone flag and value (no acknowledged write is
//	    lost, it may only be superseded);
//	(c) every final value was written by some put to that key at the node
//	    its version names, with the acknowledged version if it was
//	    acknowledged, and not by a put that provably failed; every final
//	    tombstone likewise comes from a delete (nothing appears from
//	    nowhere).

// keyState is one key as one node holds it.
type keyState struct {
	Present bool // the node holds an entry, live or tombstone
	Version store.Version
	Deleted bool
	Value   string // live entries only
}

func (s keyState) String() string {
	switch {
	case !s.Present:
		return "absent"
	case s.Deleted:
		return "deleted@" + s.Version.String()
	}
	return fmt.Sprintf("%s=%q", s.Version, s.Value)
}

// finalState maps node -> key -> state.
type finalState map[string]map[string]keyState

// problem is one violation, tied to a key.
type problem struct {
	Key  string
	What string
}

func (p problem) String() string { return p.Key + ": " + p.What }

// check returns every violation of (a), (b) and (c), ordered by key.
func check(keys []string, ops []op, final finalState) []problem {
	var probs []problem
	add := func(key, format string, args ...any) {
		probs = append(probs, problem{Key: key, What: fmt.Sprintf(format, args...)})
	}
	var nodes []string
	for n := range final {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	// Every key any node holds or any operation touched.
	all := map[string]bool{}
	for _, k := range keys {
		all[k] = true
	}
	for _, m := range final {
		for k := range m {
			all[k] = true
		}
	}
	byKey := map[string][]op{}
	byValue := map[string]op{}
	for _, o := range ops {
		all[o.Key] = true
		byKey[o.Key] = append(byKey[o.Key], o)
		if o.Kind == opPut {
			byValue[o.Value] = o
		}
	}
	var sorted []string
	for k := range all {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)

	for _, k := range sorted {
		// The distinct states of k and the nodes holding each.
		var states []keyState
		holders := map[keyState][]string{}
		for _, n := range nodes {
			s := final[n][k]
			if _, ok := holders[s]; !ok {
				states = append(states, s)
			}
			holders[s] = append(holders[s], n)
		}
		at := func(s keyState) string {
			if len(states) == 1 {
				return "final"
			}
			return "final at " + strings.Join(holders[s], ",")
		}
		// (a) convergence.
		if len(states) > 1 {
			var parts []string
			for _, s := range states {
				parts = append(parts, strings.Join(holders[s], ",")+": "+s.String())
			}
			add(k, "nodes differ: %s", strings.Join(parts, "; "))
		}
		for _, s := range states {
			// (b) no acknowledged write lost.
			for _, o := range byKey[k] {
				if o.Outcome != outOK {
					continue
				}
				switch c := s.Version.Compare(o.Version); {
				case !s.Present:
					add(k, "acknowledged write lost: %v; %s: absent", o, at(s))
				case c < 0:
					add(k, "acknowledged write lost: %v; %s: %v, older", o, at(s), s)
				case c == 0 && (s.Deleted != (o.Kind == opDel) || s.Value != o.Value):
					add(k, "acknowledged write changed: %v; %s: %v, same version", o, at(s), s)
				}
			}
			// (c) nothing from nowhere.
			switch {
			case !s.Present:
			case s.Deleted:
				if !slices.ContainsFunc(byKey[k], func(o op) bool {
					return o.Kind == opDel && (o.Outcome == outOK && o.Version == s.Version || o.Outcome == outUnknown && o.Node == s.Version.Node)
				}) {
					add(k, "%s: %v, a tombstone no delete accounts for", at(s), s)
				}
			default:
				o, ok := byValue[s.Value]
				switch {
				case !ok:
					add(k, "%s: %v, a value no client wrote", at(s), s)
				case o.Key != k:
					add(k, "%s: %v, a value written to %s: %v", at(s), s, o.Key, o)
				case o.Outcome == outFail:
					add(k, "%s: %v, the value of a write that failed: %v", at(s), s, o)
				case o.Outcome == outOK && o.Version != s.Version, o.Node != s.Version.Node:
					add(k, "%s: %v, but the write of that value was %v", at(s), s, o)
				}
			}
		}
	}
	// An acknowledgement that does not describe the write.
	for _, o := range ops {
		if o.Outcome == outOK && o.Err != "" {
			add(o.Key, "%v", o)
		}
	}
	sort.SliceStable(probs, func(i, j int) bool { return probs[i].Key < probs[j].Key })
	return probs
}

// readState reads every key of the keyspace at every running agent: the
// version and tombstone flag of each from the node's digest summaries
// (which, unlike GET /v1/kv, include tombstones), and the value of each
// live key. It fails if a node changes under it.
func readState(ctx context.Context, c *cluster, keys []string) (finalState, error) {
	bs := map[int]bool{}
	for _, k := range keys {
		bs[store.BucketOf(k)] = true
	}
	var list []string
	for b := range bs {
		list = append(list, strconv.Itoa(b))
	}
	out := finalState{}
	for _, a := range c.agents {
		sums, err := summaries(ctx, c.hc, a.api, strings.Join(list, ","))
		if err != nil {
			return nil, fmt.Errorf("summaries at %s: %w", a.name, err)
		}
		m := map[string]keyState{}
		for _, sm := range sums {
			s := keyState{Present: true, Version: sm.Version, Deleted: sm.Deleted}
			if !s.Deleted {
				kv, err := c.client(a).Get(ctx, "", sm.Key)
				if err != nil {
					return nil, fmt.Errorf("get %s at %s: %w", sm.Key, a.name, err)
				}
				got := store.Version{TS: store.Timestamp(kv.TS), Node: kv.Origin}
				if got != sm.Version || kv.Deleted {
					return nil, fmt.Errorf("%s at %s changed while read: summary %v, get %v", sm.Key, a.name, sm.Version, got)
				}
				s.Value = string(kv.Value)
			}
			m[sm.Key] = s
		}
		out[a.name] = m
	}
	return out, nil
}

// summaries reads GET /v1/summaries?b=buckets at the API address.
func summaries(ctx context.Context, hc *http.Client, api, buckets string) ([]store.Summary, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+api+"/v1/summaries?b="+buckets, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return store.DecodeSummaries(b)
}

// TestCheck ties each rule of the checker to a history that breaks it, and
// checks that legitimate histories pass: superseded writes, writes of
// unknown outcome, failed writes that left no trace.
func TestCheck(t *testing.T) {
	v := func(ts uint64, node string) store.Version { return store.Version{TS: store.Timestamp(ts), Node: node} }
	put := func(client int, node, key, value string, out outcome, ver store.Version) op {
		return op{Client: client, Node: node, Kind: opPut, Key: key, Value: value, Outcome: out, Version: ver}
	}
	del := func(client int, node, key string, out outcome, ver store.Version) op {
		return op{Client: client, Node: node, Kind: opDel, Key: key, Outcome: out, Version: ver}
	}
	live := func(ver store.Version, value string) keyState {
		return keyState{Present: true, Version: ver, Value: value}
	}
	tomb := func(ver store.Version) keyState { return keyState{Present: true, Version: ver, Deleted: true} }
	same := func(m map[string]keyState) finalState { return finalState{"n1": m, "n2": m} }

	cases := []struct {
		name  string
		ops   []op
		final finalState
		want  []string // substrings of the problems, in order; none: passes
	}{
		{"superseded write", []op{
			put(0, "n1", "k", "a", outOK, v(10, "n1")),
			put(1, "n2", "k", "b", outOK, v(12, "n2")),
		}, same(map[string]keyState{"k": live(v(12, "n2"), "b")}), nil},
		{"tie broken by node name", []op{
			put(0, "n1", "k", "a", outOK, v(10, "n1")),
			put(1, "n2", "k", "b", outOK, v(10, "n2")),
		}, same(map[string]keyState{"k": live(v(10, "n2"), "b")}), nil},
		{"unknown write wins", []op{
			put(0, "n1", "k", "a", outOK, v(10, "n1")),
			put(1, "n2", "k", "b", outUnknown, store.Version{}),
		}, same(map[string]keyState{"k": live(v(11, "n2"), "b")}), nil},
		{"unknown and failed writes leave no trace", []op{
			put(1, "n2", "k", "b", outUnknown, store.Version{}),
			put(1, "n3", "k", "c", outFail, store.Version{}),
		}, same(map[string]keyState{}), nil},
		{"delete supersedes", []op{
			put(0, "n1", "k", "a", outOK, v(10, "n1")),
			del(1, "n2", "k", outOK, v(11, "n2")),
		}, same(map[string]keyState{"k": tomb(v(11, "n2"))}), nil},
		{"lost write", []op{
			put(0, "n1", "k", "a", outOK, v(10, "n1")),
			put(1, "n2", "k", "b", outOK, v(12, "n2")),
		}, same(map[string]keyState{"k": live(v(10, "n1"), "a")}), []string{"acknowledged write lost: c1 put k=b"}},
		{"lost key", []op{
			put(0, "n1", "k", "a", outOK, v(10, "n1")),
		}, same(map[string]keyState{}), []string{"acknowledged write lost: c0 put k=a at n1 [+0s..+0s] ok version 1970-01-01T00:00:00.000Z+10@n1; final: absent"}},
		{"lost delete", []op{
			put(0, "n1", "k", "a", outOK, v(10, "n1")),
			del(1, "n2", "k", outOK, v(12, "n2")),
		}, same(map[string]keyState{"k": live(v(10, "n1"), "a")}), []string{"acknowledged write lost: c1 del k"}},
		{"same version, other value", []op{
			put(0, "n1", "k", "a", outOK, v(10, "n1")),
			put(1, "n1", "k", "b", outUnknown, store.Version{}),
		}, same(map[string]keyState{"k": live(v(10, "n1"), "b")}), []string{"acknowledged write changed"}},
		{"nodes differ", []op{
			put(0, "n1", "k", "a", outOK, v(10, "n1")),
			put(1, "n2", "k", "b", outOK, v(12, "n2")),
		}, finalState{
			"n1": {"k": live(v(10, "n1"), "a")},
			"n2": {"k": live(v(12, "n2"), "b")},
		}, []string{"nodes differ: n1: ", "acknowledged write lost: c1 put k=b at n2 [+0s..+0s] ok version 1970-01-01T00:00:00.000Z+12@n2; final at n1:"}},
		{"value from nowhere", nil, same(map[string]keyState{"k": live(v(10, "n1"), "zz")}), []string{"a value no client wrote"}},
		{"value of another key", []op{
			put(0, "n1", "j", "a", outUnknown, store.Version{}),
		}, same(map[string]keyState{"k": live(v(10, "n1"), "a")}), []string{"a value written to j"}},
		{"value of a failed write", []op{
			put(0, "n1", "k", "a", outFail, store.Version{}),
		}, same(map[string]keyState{"k": live(v(10, "n1"), "a")}), []string{"the value of a write that failed"}},
		{"value at the wrong origin", []op{
			put(0, "n1", "k", "a", outUnknown, store.Version{}),
		}, same(map[string]keyState{"k": live(v(10, "n2"), "a")}), []string{"but the write of that value was"}},
		{"tombstone from nowhere", nil, same(map[string]keyState{"k": tomb(v(10, "n1"))}), []string{"a tombstone no delete accounts for"}},
		{"tombstone of an unknown delete", []op{
			del(0, "n1", "k", outUnknown, store.Version{}),
		}, same(map[string]keyState{"k": tomb(v(10, "n1"))}), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := check([]string{"k"}, c.ops, c.final)
			if len(got) != len(c.want) {
				t.Fatalf("check(%v) = %v; want %d problems %q", c.ops, got, len(c.want), c.want)
			}
			for i, p := range got {
				if !strings.Contains(p.String(), c.want[i]) {
					t.Errorf("check(%v) problem %d = %q; want it to contain %q", c.ops, i, p, c.want[i])
				}
			}
		})
	}
}
