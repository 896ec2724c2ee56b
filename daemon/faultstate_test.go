package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func members5() []Endpoint {
	var out []Endpoint
	for i := 1; i <= 5; i++ {
		out = append(out, Endpoint{Name: fmt.Sprintf("n%d", i), Gossip: fmt.Sprintf("127.0.0.1:%d", 7000+2*i), API: fmt.Sprintf("127.0.0.1:%d", 7001+2*i)})
	}
	return out
}

func partitionRecord(id string, created time.Time, forD time.Duration) FaultRecord {
	r := FaultRecord{ID: id, Members: members5(), Created: created,
		Request: FaultRequest{Kind: ReqPartition, Groups: [][]string{{"n1"}, {"n2", "n3", "n4", "n5"}}, For: forD}}
	if forD > 0 {
		r.Until = created.Add(forD)
	}
	return r
}

func table(rs ...FaultRecord) FaultTable {
	t := FaultTable{}
	for _, r := range rs {
		t[r.ID] = r
	}
	return t
}

// randomTable draws a table from a small pool of IDs, each record live or
// healed at one of a few times, so tables built independently overlap.
func randomTable(rng *rand.Rand) FaultTable {
	t := FaultTable{}
	for i := range 5 {
		if rng.IntN(3) == 0 {
			continue
		}
		r := partitionRecord(fmt.Sprintf("f-%d", i), t0.Add(time.Duration(i)*time.Second), 0)
		if rng.IntN(2) == 0 {
			r.Healed = t0.Add(time.Duration(10+rng.IntN(3)) * time.Second)
		}
		t[r.ID] = r
	}
	return t
}

// The merge is a join: commutative, associative, idempotent, so nodes that
// exchange tables in any order converge (faultstate.go).
func TestMergeFaultsLaws(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	now := t0.Add(time.Minute)
	for i := range 500 {
		a, b, c := randomTable(rng), randomTable(rng), randomTable(rng)
		if ab, ba := mergeFaults(a, b, now), mergeFaults(b, a, now); !equalFaults(ab, ba) {
			t.Fatalf("case %d: merge(a,b) = %v; merge(b,a) = %v", i, ab, ba)
		}
		if l, r := mergeFaults(mergeFaults(a, b, now), c, now), mergeFaults(a, mergeFaults(b, c, now), now); !equalFaults(l, r) {
			t.Fatalf("case %d: merge is not associative: %v vs %v", i, l, r)
		}
		if aa := mergeFaults(a, a, now); !equalFaults(aa, a) {
			t.Fatalf("case %d: merge(a,a) = %v; want %v", i, aa, a)
		}
		// A tombstone in either input is a tombstone in the result.
		m := mergeFaults(a, b, now)
		for _, in := range []FaultTable{a, b} {
			for id, r := range in {
				if !r.Healed.IsZero() && m[id].Healed.IsZero() {
					t.Fatalf("case %d: %s healed in an input, live after merge", i, id)
				}
			}
		}
	}
}

// A stale live copy never undoes a heal, whichever side it comes from.
func TestMergeTombstoneWins(t *testing.T) {
	live := partitionRecord("f-1", t0, 0)
	healed := live
	healed.Healed = t0.Add(time.Second)
	for _, m := range []FaultTable{
		mergeFaults(table(live), table(healed), t0.Add(2*time.Second)),
		mergeFaults(table(healed), table(live), t0.Add(2*time.Second)),
	} {
		if m["f-1"].Healed.IsZero() {
			t.Errorf("merge of live and healed f-1 = %+v; want healed", m["f-1"])
		}
	}
	// After faultTombstoneTTL the tombstone is purged.
	if m := mergeFaults(table(healed), nil, healed.Healed.Add(faultTombstoneTTL+time.Second)); len(m) != 0 {
		t.Errorf("tombstone older than its TTL kept: %v", m)
	}
}

// Each node derives its part of a partition; a heal or the expiry lifts it.
func TestDeriveRules(t *testing.T) {
	tb := table(partitionRecord("f-1", t0, 30*time.Second))
	got := deriveRules(tb, "n1", t0.Add(time.Second))
	if len(got) != 1 || got[0].Kind != FaultDrop || !reflect.DeepEqual(got[0].Peers, []string{"n2", "n3", "n4", "n5"}) || !got[0].Until.Equal(t0.Add(30*time.Second)) {
		t.Errorf("n1's rules = %+v; want one drop to n2..n5 until created+30s", got)
	}
	if got := deriveRules(tb, "n4", t0.Add(time.Second)); len(got) != 1 || !reflect.DeepEqual(got[0].Peers, []string{"n1"}) {
		t.Errorf("n4's rules = %+v; want one drop to n1", got)
	}
	if got := deriveRules(tb, "n9", t0); len(got) != 0 {
		t.Errorf("a node the fault does not name got rules: %+v", got)
	}
	if got := deriveRules(tb, "n1", t0.Add(30*time.Second)); len(got) != 0 {
		t.Errorf("rules at the expiry: %+v; want none (expiry is absolute, from creation)", got)
	}
	healed := healFaults(tb, []string{"f-1"}, t0.Add(2*time.Second))
	if got := deriveRules(healed, "n1", t0.Add(3*time.Second)); len(got) != 0 {
		t.Errorf("rules after heal: %+v; want none", got)
	}
	if tb["f-1"].Healed != (time.Time{}) {
		t.Error("healFaults changed its input")
	}
}

func TestSelectHeal(t *testing.T) {
	p := partitionRecord("f-1", t0, 0)
	l := FaultRecord{ID: "f-2", Members: members5(), Created: t0.Add(time.Second), Request: FaultRequest{Kind: ReqLoss, Nodes: []string{"n3"}, Rate: 0.2}}
	all := FaultRecord{ID: "f-3", Members: members5(), Created: t0.Add(2 * time.Second), Request: FaultRequest{Kind: ReqDelay, Nodes: []string{"*"}, Delay: time.Millisecond}}
	tb := table(p, l, all)
	now := t0.Add(time.Minute)
	for _, c := range []struct {
		target string
		want   []string
	}{
		{"", []string{"f-1", "f-2", "f-3"}},
		{"f-2", []string{"f-2"}},
		{"n3", []string{"f-1", "f-2", "f-3"}},
		{"n1", []string{"f-1", "f-3"}},
		{"n9", nil},
		{"f-9", nil},
	} {
		if got := selectHeal(tb, c.target, now); !reflect.DeepEqual(got, c.want) {
			t.Errorf("selectHeal(%q) = %v; want %v", c.target, got, c.want)
		}
	}
	if got := selectHeal(healFaults(tb, []string{"f-2"}, now), "f-2", now); got != nil {
		t.Errorf("selectHeal of a healed fault = %v; want none", got)
	}
}

// Records from the network or disk are checked before they are applied
// (issue 7: a negative `for` never expired).
func TestFaultRecordValidate(t *testing.T) {
	good := partitionRecord("f-1", t0, time.Minute)
	if err := validateRecord(&good); err != nil {
		t.Fatalf("good record: %v", err)
	}
	for name, mut := range map[string]func(*FaultRecord){
		"negative for":    func(r *FaultRecord) { r.Request.For = -time.Second; r.Until = r.Created.Add(-time.Second) },
		"absurd for":      func(r *FaultRecord) { r.Request.For = 1000 * time.Hour; r.Until = r.Created.Add(1000 * time.Hour) },
		"until mismatch":  func(r *FaultRecord) { r.Until = r.Until.Add(time.Hour) },
		"empty id":        func(r *FaultRecord) { r.ID = "" },
		"id with space":   func(r *FaultRecord) { r.ID = "f 1" },
		"no members":      func(r *FaultRecord) { r.Members = nil },
		"repeated member": func(r *FaultRecord) { r.Members = append(r.Members, r.Members[0]) },
		"unknown node":    func(r *FaultRecord) { r.Request.Groups[0] = []string{"n9"} },
		"no created":      func(r *FaultRecord) { r.Created = time.Time{} },
		"bad rate": func(r *FaultRecord) {
			r.Request = FaultRequest{Kind: ReqLoss, Nodes: []string{"n1"}, Rate: 2}
			r.Until = time.Time{}
		},
		"negative delay": func(r *FaultRecord) {
			r.Request = FaultRequest{Kind: ReqDelay, Nodes: []string{"n1"}, Delay: -time.Second}
			r.Until = time.Time{}
		},
	} {
		r := partitionRecord("f-1", t0, time.Minute)
		mut(&r)
		if err := validateRecord(&r); err == nil {
			t.Errorf("%s: validate accepted %+v", name, r)
		}
	}
}

func TestDecodeFaultsRefuses(t *testing.T) {
	good := encodeFaults(table(partitionRecord("f-1", t0, 0)))
	if _, err := decodeFaults(good); err != nil {
		t.Fatalf("decode of a good table: %v", err)
	}
	many := FaultTable{}
	for i := range maxFaultRecords + 1 {
		r := partitionRecord(fmt.Sprintf("f-%d", i), t0, 0)
		many[r.ID] = r
	}
	for name, data := range map[string][]byte{
		"garbage":         []byte("{not json"),
		"wrong version":   []byte(`{"version":2,"records":[]}`),
		"unknown field":   []byte(`{"version":1,"records":[],"x":1}`),
		"too big":         make([]byte, maxFaultBody+1),
		"too many":        encodeFaults(many),
		"field in record": []byte(strings.Replace(string(good), `"created"`, `"x":1,"created"`, 1)),
		"invalid record":  []byte(`{"version":1,"records":[{"id":"f-1","request":{"kind":"pause","nodes":["n1"],"for":-1},"members":[{"name":"n1"}],"created":"2026-01-01T00:00:00Z"}]}`),
	} {
		if _, err := decodeFaults(data); err == nil {
			t.Errorf("%s: decodeFaults accepted it", name)
		}
	}
}

func TestSaveLoadFaults(t *testing.T) {
	dir := t.TempDir()
	if got, err := loadFaults(dir); err != nil || len(got) != 0 {
		t.Fatalf("load with no file = %v, %v; want an empty table", got, err)
	}
	want := table(partitionRecord("f-1", t0, time.Minute), partitionRecord("f-2", t0, 0))
	if err := saveFaults(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := loadFaults(dir)
	if err != nil || !equalFaults(got, want) {
		t.Fatalf("load after save = %v, %v; want %v", got, err, want)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, faultFileName+".tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	os.WriteFile(filepath.Join(dir, faultFileName), []byte("{garbage"), 0o600)
	if _, err := loadFaults(dir); !errors.Is(err, errBadFaultFile) {
		t.Errorf("load of a damaged file = %v; want errBadFaultFile", err)
	}
}

// A fault recorded on a node is in force when it starts again on the same
// data dir, before it talks to anyone; a damaged table is set aside and
// the node starts.
func TestFaultTableSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, "n1", dir)
	n := startNode(t, cfg)
	c := NewClient(n.APIAddr())
	ctx := context.Background()
	res, err := c.InjectFault(ctx, FaultRequest{Kind: ReqIsolate, Nodes: []string{"n1"}, Reason: "test"})
	if err != nil || len(res.Nodes) != 1 || res.Nodes[0].Error != "" {
		t.Fatalf("isolate n1 = %+v, %v", res, err)
	}
	n.Shutdown()

	n = startNode(t, testConfig(t, "n1", dir))
	if rules := n.faults.Rules(); len(rules) != 1 || rules[0].ID != res.ID || !n.faults.CutOff() {
		t.Fatalf("after restart n1 applies %+v; want fault %s, cut off", rules, res.ID)
	}
	c = NewClient(n.APIAddr())
	if _, err := c.Heal(ctx, "n7"); err == nil || !strings.Contains(err.Error(), `no fault or node "n7"`) {
		t.Errorf("heal n7 (unknown) = %v; want an error naming n7", err)
	}
	if _, err := c.Heal(ctx, "f-00000000"); err == nil {
		t.Errorf("heal of an unknown fault ID succeeded")
	}
	h, err := c.Heal(ctx, res.ID)
	if err != nil || len(h.Healed) != 1 || h.Healed[0].ID != res.ID {
		t.Fatalf("heal %s = %+v, %v", res.ID, h, err)
	}
	if rules := n.faults.Rules(); len(rules) != 0 {
		t.Errorf("rules after heal: %+v", rules)
	}
	// Healing it again: known, nothing left to heal.
	if h, err := c.Heal(ctx, res.ID); err != nil || len(h.Healed) != 0 {
		t.Errorf("second heal %s = %+v, %v; want nothing healed, no error", res.ID, h, err)
	}
	n.Shutdown()

	os.WriteFile(filepath.Join(dir, faultFileName), []byte("{garbage"), 0o600)
	n = startNode(t, testConfig(t, "n1", dir))
	if _, err := os.Stat(filepath.Join(dir, faultFileName+".damaged")); err != nil {
		t.Errorf("damaged fault table not set aside: %v", err)
	}
	if rules := n.faults.Rules(); len(rules) != 0 {
		t.Errorf("rules from a damaged table: %+v", rules)
	}
}

// The API refuses negative or absurd durations and rates, names given
// twice and oversized reasons with 400.
func TestFaultAPIRefusesBadDurations(t *testing.T) {
	n := startNode(t, testConfig(t, "n1", t.TempDir()))
	c := NewClient(n.APIAddr())
	for _, req := range []FaultRequest{
		{Kind: ReqPause, Nodes: []string{"n1"}, For: -time.Second},
		{Kind: ReqPause, Nodes: []string{"n1"}, For: 10000 * time.Hour},
		{Kind: ReqDelay, Nodes: []string{"n1"}, Delay: -time.Millisecond},
		{Kind: ReqDelay, Nodes: []string{"n1"}, Delay: time.Hour},
		{Kind: ReqDelay, Nodes: []string{"n1"}, Delay: time.Second, Jitter: -time.Second},
		{Kind: ReqLoss, Nodes: []string{"n1"}, Rate: -0.5},
		{Kind: ReqLoss, Nodes: []string{"n1"}, Rate: 1.5},
		{Kind: ReqPause, Nodes: []string{"n1", "n1"}},
		{Kind: ReqPause, Nodes: []string{"n1"}, Reason: strings.Repeat("x", maxFaultReason+1)},
	} {
		_, err := c.InjectFault(context.Background(), req)
		var se *StatusError
		if !errors.As(err, &se) || se.Code != 400 {
			t.Errorf("%+v: err %v; want 400", req, err)
		}
	}
	if rules := n.faults.Rules(); len(rules) != 0 {
		t.Errorf("refused requests left rules: %+v", rules)
	}
}

// FuzzDecodeFaults: any bytes either decode into a table whose rules can
// be derived and which encodes back to itself, or are refused.
func FuzzDecodeFaults(f *testing.F) {
	f.Add(encodeFaults(table(partitionRecord("f-1", t0, time.Minute))))
	loss := FaultRecord{ID: "f-2", Members: members5(), Created: t0, Request: FaultRequest{Kind: ReqLoss, Nodes: []string{"*"}, Rate: 0.5, Seed: 7}}
	f.Add(encodeFaults(table(loss)))
	f.Add([]byte(`{"version":1,"records":[]}`))
	f.Add([]byte(`{"version":1,"records":[{"id":"f-1","request":{"kind":"pause","nodes":["n1"],"for":-1},"members":[{"name":"n1"}],"created":"2026-01-01T00:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, err := decodeFaults(data)
		if err != nil {
			return
		}
		for _, r := range tb {
			for _, m := range r.Members {
				for _, rule := range deriveRules(tb, m.Name, r.Created) {
					if err := validateRule(&rule); err != nil {
						t.Fatalf("derived an invalid rule %+v: %v", rule, err)
					}
				}
			}
		}
		again, err := decodeFaults(encodeFaults(tb))
		if err != nil || !equalFaults(again, tb) {
			t.Fatalf("round trip: %v, equal %v", err, equalFaults(again, tb))
		}
	})
}

// FuzzPlanFault: a fault request as JSON either is refused or plans only
// valid rules, for named members only, each rule on a node the request
// involves.
func FuzzPlanFault(f *testing.F) {
	for _, req := range []FaultRequest{
		{Kind: ReqPartition, Groups: [][]string{{"n1"}, {"n2", "n3"}}},
		{Kind: ReqIsolate, Nodes: []string{"n2"}, For: time.Second},
		{Kind: ReqPause, Nodes: []string{"*"}},
		{Kind: ReqDelay, Nodes: []string{"n1"}, Delay: 10 * time.Millisecond, Jitter: time.Millisecond, Peers: []string{"n3"}},
		{Kind: ReqLoss, Nodes: []string{"n1", "n2"}, Rate: 0.3},
	} {
		b, _ := json.Marshal(req)
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"loss","nodes":["n1"],"rate":-1,"for":-5}`))
	members := []string{"n1", "n2", "n3"}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req FaultRequest
		if json.Unmarshal(data, &req) != nil || validateFaultRequest(req) != nil {
			return
		}
		plan, err := planFault(req, members, "f-1", t0)
		if err != nil {
			return
		}
		for node, rules := range plan {
			if !slices.Contains(members, node) {
				t.Fatalf("plan has rules for %q, not a member", node)
			}
			for _, r := range rules {
				if err := validateRule(&r); err != nil {
					t.Fatalf("planned an invalid rule %+v: %v", r, err)
				}
				for _, p := range r.Peers {
					if !slices.Contains(members, p) {
						t.Fatalf("rule toward %q, not a member", p)
					}
				}
				if req.For > 0 && !r.Until.Equal(t0.Add(req.For)) {
					t.Fatalf("rule until %v; want %v", r.Until, t0.Add(req.For))
				}
			}
		}
		rec := FaultRecord{ID: "f-1", Request: req, Created: t0}
		for _, m := range members {
			rec.Members = append(rec.Members, Endpoint{Name: m})
		}
		if req.For > 0 {
			rec.Until = t0.Add(req.For)
		}
		if err := validateRecord(&rec); err != nil {
			t.Fatalf("a request that plans makes an invalid record: %v", err)
		}
	})
}
