package nemesis

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The checkers of the consistent namespace, leadership and locks must be
// able to fail: each test below feeds one a history that breaks its rule
// and one that keeps it.

func TestLinearizableCheck(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	put := func(c int, key, v string, from, to int, out linOutcome, ver uint64) linOp {
		return linOp{Client: c, Node: "n1", Kind: linPut, Key: key, Value: v, Invoke: ms(from), Done: ms(to), Outcome: out, Version: ver}
	}
	get := func(c int, key, v string, from, to int, ver uint64) linOp {
		return linOp{Client: c, Node: "n2", Kind: linGet, Key: key, Value: v, Found: v != "", Invoke: ms(from), Done: ms(to), Outcome: linOK, Version: ver}
	}
	cas := func(c int, key string, if_ uint64, v string, from, to int, out linOutcome, ver uint64) linOp {
		return linOp{Client: c, Node: "n3", Kind: linCAS, Key: key, IfVersion: if_, Value: v, Invoke: ms(from), Done: ms(to), Outcome: out, Version: ver}
	}
	del := func(c int, key string, from, to int, out linOutcome) linOp {
		return linOp{Client: c, Node: "n1", Kind: linDel, Key: key, Invoke: ms(from), Done: ms(to), Outcome: out}
	}
	cases := []struct {
		name string
		ops  []linOp
		ok   bool
	}{
		{"read after write", []linOp{put(0, "k", "a", 0, 10, linOK, 5), get(1, "k", "a", 20, 30, 5)}, true},
		{"stale read", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			put(0, "k", "b", 20, 30, linOK, 7),
			get(1, "k", "a", 40, 50, 5), // b was acknowledged before the read began
		}, false},
		{"read of a concurrent write either way", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			put(0, "k", "b", 20, 60, linOK, 7),
			get(1, "k", "a", 30, 40, 5),
			get(2, "k", "b", 45, 50, 7),
		}, true},
		{"reads go back in time", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			put(0, "k", "b", 20, 100, linOK, 7),
			get(1, "k", "b", 30, 40, 7),
			get(2, "k", "a", 50, 60, 5), // after a read saw b
		}, false},
		{"absent read after write", []linOp{put(0, "k", "a", 0, 10, linOK, 5), get(1, "k", "", 20, 30, 0)}, false},
		{"read of the wrong version", []linOp{put(0, "k", "a", 0, 10, linOK, 5), get(1, "k", "a", 20, 30, 6)}, false},
		{"versions go backwards", []linOp{put(0, "k", "a", 0, 10, linOK, 7), put(0, "k", "b", 20, 30, linOK, 5)}, false},
		{"indeterminate write seen later", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			put(1, "k", "b", 20, 30, linUnknown, 0),
			get(2, "k", "b", 500, 510, 9),
		}, true},
		{"indeterminate write never seen", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			put(1, "k", "b", 20, 30, linUnknown, 0),
			get(2, "k", "a", 500, 510, 5),
		}, true},
		{"failed write seen", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			put(1, "k", "b", 20, 30, linFail, 0),
			get(2, "k", "b", 500, 510, 9),
		}, false},
		{"cas applied", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			cas(1, "k", 5, "b", 20, 30, linOK, 8),
			get(2, "k", "b", 40, 50, 8),
		}, true},
		{"cas applied on the wrong version", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			put(0, "k", "b", 20, 30, linOK, 7),
			cas(1, "k", 5, "c", 40, 50, linOK, 9), // the version was 7 all along
		}, false},
		{"cas refused though the version matched", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			cas(1, "k", 5, "b", 20, 30, linMismatch, 0),
		}, false},
		{"two cas on one version both applied", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			cas(1, "k", 5, "b", 20, 30, linOK, 8),
			cas(2, "k", 5, "c", 20, 30, linOK, 9),
		}, false},
		{"cas if absent after delete", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			del(0, "k", 20, 30, linOK),
			cas(1, "k", 0, "b", 40, 50, linOK, 12),
			get(2, "k", "b", 60, 70, 12),
		}, true},
		{"lost acknowledged write", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			get(2, "k", "", 6000, 6010, 0), // after kills and restarts
		}, false},
		{"keys are independent", []linOp{
			put(0, "k", "a", 0, 10, linOK, 5),
			put(0, "j", "b", 20, 30, linOK, 7),
			get(1, "k", "a", 40, 50, 5),
			get(1, "j", "b", 40, 50, 7),
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok := porcupine.CheckOperations(kvModel, linOperations(c.ops))
			if ok != c.ok {
				t.Errorf("linearizable(%v) = %v; want %v", c.ops, ok, c.ok)
			}
		})
	}
}

// TestLinearizableVisualization checks that a failing history yields an
// HTML file that names the operations.
func TestLinearizableVisualization(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	ops := []linOp{
		{Client: 0, Node: "n1", Kind: linPut, Key: "k", Value: "a", Invoke: 0, Done: ms(10), Outcome: linOK, Version: 5},
		{Client: 0, Node: "n1", Kind: linPut, Key: "k", Value: "b", Invoke: ms(20), Done: ms(30), Outcome: linOK, Version: 7},
		{Client: 2, Node: "n4", Kind: linPut, Key: "k", Value: "z", Invoke: ms(25), Done: ms(35), Outcome: linUnknown},
		{Client: 1, Node: "n2", Kind: linGet, Key: "k", Value: "a", Found: true, Invoke: ms(40), Done: ms(50), Outcome: linOK, Version: 5},
	}
	res, err := checkLinearizable(ops, 10*time.Second, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if res.Result != porcupine.Illegal || res.Visualized == "" {
		t.Fatalf("checkLinearizable(stale read) = %+v; want Illegal with a visualization", res)
	}
	b, err := os.ReadFile(res.Visualized)
	if err != nil {
		t.Fatal(err)
	}
	// The operations are in the page's JSON, where > is \u003e.
	for _, want := range []string{"<html", `get k -\u003e a@5`, `put k=b -\u003e @7`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("visualization %s lacks %q", res.Visualized, want)
		}
	}
	if res.Checked != 4 || res.Keys != 1 {
		t.Errorf("checked %d operations on %d keys; want 4 on 1", res.Checked, res.Keys)
	}
}

func TestLeaderCheck(t *testing.T) {
	r := func(node, leader string, term uint64) leaderReport {
		return leaderReport{Node: node, Leader: leader, Term: term, Self: node == leader, Source: "poll"}
	}
	cases := []struct {
		name    string
		reports []leaderReport
		terms   int
		bad     []uint64
	}{
		{"one leader per term", []leaderReport{r("n1", "n1", 2), r("n2", "n1", 2), r("n3", "", 3), r("n3", "n3", 4), r("n1", "n3", 4)}, 2, nil},
		{"two leaders in one term", []leaderReport{r("n1", "n1", 2), r("n2", "n1", 2), r("n4", "n4", 2), r("n3", "n3", 3)}, 2, []uint64{2}},
		{"a follower names another leader", []leaderReport{r("n1", "n1", 5), r("n2", "n3", 5)}, 1, []uint64{5}},
		{"same leader, later term", []leaderReport{r("n1", "n1", 5), r("n1", "n1", 6)}, 2, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			terms, bad := checkLeaders(c.reports)
			var got []uint64
			for _, b := range bad {
				got = append(got, b.Term)
				if !strings.Contains(b.String(), "leaders:") {
					t.Errorf("split brain described as %q", b)
				}
			}
			if terms != c.terms || len(got) != len(c.bad) || len(got) > 0 && got[0] != c.bad[0] {
				t.Errorf("checkLeaders(%v) = %d terms, split terms %v; want %d, %v", c.reports, terms, got, c.terms, c.bad)
			}
		})
	}
}

func TestLockCheck(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	s := func(c int, fence uint64, enter, exit int) section {
		return section{Client: c, Lock: "L", Session: "s" + string(rune('a'+c)), Fence: fence, Enter: ms(enter), Exit: ms(exit), Why: "released"}
	}
	cases := []struct {
		name string
		secs []section
		want []string
	}{
		{"one after another", []section{s(0, 10, 0, 100), s(1, 14, 150, 300), s(0, 20, 300, 400)}, nil},
		{"overlapping sections", []section{s(0, 10, 0, 100), s(1, 14, 50, 300)}, []string{"critical sections overlap"}},
		{"a long section overlaps a later one", []section{s(0, 10, 0, 1000), s(1, 14, 100, 200), s(2, 18, 300, 400)}, []string{"critical sections overlap", "critical sections overlap"}},
		{"fence went down", []section{s(0, 10, 0, 100), s(1, 8, 200, 300)}, []string{"fence did not increase"}},
		{"one fence twice", []section{s(0, 10, 0, 100), s(1, 10, 200, 300)}, []string{"two grants with one fence"}},
		{"other locks are independent", []section{s(0, 10, 0, 100), {Client: 1, Lock: "M", Fence: 3, Enter: ms(50), Exit: ms(60)}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := checkLocks(c.secs)
			if len(got) != len(c.want) {
				t.Fatalf("checkLocks(%v) = %v; want %q", c.secs, got, c.want)
			}
			for i, v := range got {
				if !strings.Contains(v.String(), c.want[i]) {
					t.Errorf("checkLocks(%v)[%d] = %q; want %q", c.secs, i, v, c.want[i])
				}
			}
		})
	}
}

func TestParseElectionWon(t *testing.T) {
	start := time.Date(2026, 11, 29, 15, 34, 0, 0, time.UTC)
	line := `time=2026-11-29T15:34:28.238Z level=INFO msg="raft: election won: term=12 tally=3" node=n1 part=raft`
	r, ok := parseElectionWon("n1", line, start)
	if !ok || r.Term != 12 || r.Leader != "n1" || !r.Self || r.At != 28238*time.Millisecond {
		t.Errorf("parseElectionWon(%q) = %+v, %v; want n1 leading term 12 at +28.238s", line, r, ok)
	}
	if _, ok := parseElectionWon("n1", `msg="raft: entering leader state"`, start); ok {
		t.Errorf("parseElectionWon parsed a line that is no election")
	}
}
