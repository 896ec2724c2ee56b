package store

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Tests for issue 7 ("hostile input and broken disks"), store side:
// versions cannot be poisoned, damaged records are set aside and repaired
// from peers, and the digest sees value bytes.

func at(ft *fakeTime, d time.Duration) Timestamp {
	return MakeTimestamp(ft.Now().Add(d).UnixMilli(), 0)
}

// Merge refuses, and never witnesses, entries more than MaxClockSkew ahead
// of the wall clock, and still applies the others of the batch.
func TestMergeRefusesVersionsTooFarAhead(t *testing.T) {
	ft := newFakeTime()
	s := openMem(t, "n1", ft.Now, 0)
	good := Entry{Key: "good", Value: []byte("g"), Version: Version{TS: at(ft, DefaultMaxClockSkew), Node: "n2"}}
	forged := []Entry{
		{Key: "max", Value: []byte("x"), Version: Version{TS: MaxTimestamp, Node: "evil"}},
		{Key: "century", Value: []byte("x"), Version: Version{TS: at(ft, 100*365*24*time.Hour), Node: "evil"}},
		{Key: "just-over", Value: []byte("x"), Version: Version{TS: at(ft, DefaultMaxClockSkew+time.Millisecond), Node: "evil"}},
		{Key: "tomb", Deleted: true, Version: Version{TS: MaxTimestamp, Node: "evil"}},
	}
	changed, err := s.Merge(append(forged, good))
	if !errors.Is(err, ErrClockSkew) {
		t.Fatalf("Merge(forged) error = %v; want ErrClockSkew", err)
	}
	if errors.Is(err, ErrCorrupt) {
		t.Fatalf("Merge(forged) error = %v also matches ErrCorrupt; want only ErrClockSkew", err)
	}
	var se *SkewError
	if !errors.As(err, &se) || se.Count != 4 || se.Key != "max" || se.Ahead < 200*365*24*time.Hour || se.Limit != DefaultMaxClockSkew {
		t.Fatalf("Merge(forged) error = %#v; want a SkewError for 4 entries, the first \"max\" millennia ahead", se)
	}
	if len(changed) != 1 || changed[0].Key != "good" {
		t.Fatalf("Merge applied %v; want only the entry at exactly the skew limit", changed)
	}
	for _, f := range forged {
		if _, err := s.GetEntry(f.Key); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetEntry(%s) = %v; want ErrNotFound", f.Key, err)
		}
	}
	if last := s.Clock().Last(); last != good.Version.TS {
		t.Fatalf("clock at %v after the merge; want %v (the accepted entry), not a refused one", last, good.Version.TS)
	}
	e, err := s.Put("later", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Version.TS <= good.Version.TS || e.Version.TS.WallMillis() > good.Version.TS.WallMillis()+1 {
		t.Fatalf("Put after the merge stamped %v; want just past %v", e.Version, good.Version)
	}
	// Once the wall clock has moved on, the same entry is accepted.
	ft.Add(time.Hour)
	if changed, err := s.Merge(forged[2:3]); err != nil || len(changed) != 1 {
		t.Fatalf("Merge of a formerly skewed entry an hour later = %v, %v; want applied", changed, err)
	}
}

func TestMergeSkewIsConfigurable(t *testing.T) {
	ft := newFakeTime()
	s, err := Open(NewMemBackend(), Config{Node: "n1", Now: ft.Now, MaxClockSkew: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := Entry{Key: "k", Value: []byte{}, Version: Version{TS: at(ft, 2*time.Second), Node: "n2"}}
	if _, err := s.Merge([]Entry{e}); !errors.Is(err, ErrClockSkew) {
		t.Fatalf("Merge 2s ahead with a 1s limit = %v; want ErrClockSkew", err)
	}
	if _, err := Open(NewMemBackend(), Config{Node: "n1", MaxClockSkew: -time.Second}); err == nil {
		t.Fatal("Open with a negative MaxClockSkew = nil error; want one")
	}
}

// A write at the clock's limit fails with a clear error and stores
// nothing; what was stored stays readable.
func TestPutAtClockLimitFailsCleanly(t *testing.T) {
	end := time.UnixMilli(MaxTimestamp.WallMillis())
	b := NewMemBackend()
	s, err := Open(b, Config{Node: "n1", Now: func() time.Time { return end }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put("before", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// A peer's entry at the limit is not ahead of this (year 6429) clock.
	if _, err := s.Merge([]Entry{{Key: "peer", Value: []byte("p"), Version: Version{TS: MaxTimestamp, Node: "n2"}}}); err != nil {
		t.Fatal(err)
	}
	for _, write := range []func() (Entry, error){
		func() (Entry, error) { return s.Put("after", []byte("v")) },
		func() (Entry, error) { e, _, err := s.Delete("before"); return e, err },
	} {
		if e, err := write(); !errors.Is(err, ErrClockExhausted) {
			t.Fatalf("write at MaxTimestamp = %+v, %v; want ErrClockExhausted", e, err)
		}
	}
	if _, err := s.Get("after"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(after) = %v; want ErrNotFound", err)
	}
	if e, err := s.Get("before"); err != nil || string(e.Value) != "v" {
		t.Fatalf("Get(before) = %+v, %v; want the stored value", e, err)
	}
	for _, e := range b.m {
		if err := e.Validate(); err != nil {
			t.Fatalf("backend holds an invalid entry: %v", err)
		}
	}
}

// Open sets aside what fails validation or lies too far ahead, starts
// anyway, and anti-entropy brings good copies back from a peer.
func TestOpenQuarantinesBadRecordsAndPeersRepairThem(t *testing.T) {
	ft := newFakeTime()
	peer := openMem(t, "peer", ft.Now, 0)
	var good []Entry
	for _, k := range []string{"zero-ts", "past-max", "century", "tomb-value", "fine"} {
		e, err := peer.Put(k, []byte("good "+k))
		if err != nil {
			t.Fatal(err)
		}
		good = append(good, e)
	}
	b := NewMemBackend()
	damaged := []Entry{
		{Key: "zero-ts", Value: []byte("x"), Version: Version{TS: 0, Node: "peer"}},
		{Key: "past-max", Value: []byte("x"), Version: Version{TS: MaxTimestamp + 1, Node: "peer"}},
		{Key: "century", Value: []byte("x"), Version: Version{TS: at(ft, 100*365*24*time.Hour), Node: "peer"}},
		{Key: "tomb-value", Value: []byte("x"), Deleted: true, Version: good[3].Version},
		good[4],
	}
	if err := b.Put(damaged); err != nil {
		t.Fatal(err)
	}
	s, err := Open(b, Config{Node: "n1", Now: ft.Now})
	if err != nil {
		t.Fatalf("Open over damaged records = %v; want it to start", err)
	}
	t.Cleanup(func() { s.Close() })
	q := s.Quarantined()
	if len(q) != 4 || s.Stats().Quarantined != 4 {
		t.Fatalf("Quarantined() = %v (Stats %d); want the 4 damaged records", q, s.Stats().Quarantined)
	}
	for _, r := range q {
		if r.Err != nil {
			t.Errorf("%s: not moved: %v", r.Key, r.Err)
		}
		want := ErrCorrupt
		if r.Key == "century" {
			want = ErrClockSkew
		}
		if !errors.Is(r.Reason, want) {
			t.Errorf("%s set aside because %v; want %v", r.Key, r.Reason, want)
		}
	}
	if got := b.Quarantined(); len(got) != 4 {
		t.Fatalf("backend quarantine holds %d records; want 4", len(got))
	}
	if last := s.Clock().Last(); last > at(ft, time.Minute) {
		t.Fatalf("clock at %v after Open; a set-aside record moved it", last)
	}
	if st := s.Stats(); st.Keys != 1 {
		t.Fatalf("Stats = %+v; want only the good key indexed", st)
	}

	n := &network{t: t, stores: []*Store{s, peer}, cut: map[[2]int]bool{}}
	n.sync(0, 1)
	if !n.converged() {
		t.Fatal("digests differ after one exchange")
	}
	for _, w := range good {
		if e, err := s.Get(w.Key); err != nil || !entryEqual(e, w) {
			t.Errorf("Get(%s) after repair = %+v, %v; want %+v", w.Key, e, err, w)
		}
	}
	// The repaired store restarts cleanly: nothing left to set aside.
	s2, err := Open(b, Config{Node: "n1", Now: ft.Now})
	if err != nil || len(s2.Quarantined()) != 0 || s2.Digest() != s.Digest() {
		t.Fatalf("reopen after repair: %v, quarantined %v", err, s2.Quarantined())
	}
}

// A value damaged in storage after it was indexed is never served: Get and
// Entries fail with ErrCorrupt, the record is set aside, and a peer's copy
// repairs it.
func TestDamagedValueIsNotServedAndIsRepaired(t *testing.T) {
	ft := newFakeTime()
	b := NewMemBackend()
	s, err := Open(b, Config{Node: "n1", Now: ft.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	peer := openMem(t, "peer", ft.Now, 0)
	var es []Entry
	for i := 0; i < 3; i++ {
		e, err := s.Put(fmt.Sprintf("k%d", i), []byte(fmt.Sprintf("value %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	mustMerge(t, peer, es)
	// The disk flips bits in two values; versions still decode.
	for _, i := range []int{0, 2} {
		bad := es[i]
		bad.Value = []byte(fmt.Sprintf("VALUE %d", i))
		if err := b.Put([]Entry{bad}); err != nil {
			t.Fatal(err)
		}
	}
	if e, err := s.Get("k0"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get(damaged k0) = %+v, %v; want ErrCorrupt", e, err)
	}
	got, err := s.Entries([]string{"k0", "k1", "k2"})
	if !errors.Is(err, ErrCorrupt) || len(got) != 1 || !entryEqual(got[0], es[1]) {
		t.Fatalf("Entries(k0, k1, k2) = %v, %v; want only k1 and ErrCorrupt", got, err)
	}
	if st := s.Stats(); st.Keys != 1 || st.Quarantined != 2 {
		t.Fatalf("Stats = %+v; want 1 key left, 2 quarantined", st)
	}
	if q := b.Quarantined(); len(q) != 2 {
		t.Fatalf("backend quarantine = %v; want k0 and k2", q)
	}
	n := &network{t: t, stores: []*Store{s, peer}, cut: map[[2]int]bool{}}
	n.sync(1, 0)
	if !n.converged() {
		t.Fatal("digests differ after repair")
	}
	for _, w := range es {
		if e, err := s.Get(w.Key); err != nil || !entryEqual(e, w) {
			t.Fatalf("Get(%s) after repair = %+v, %v; want %+v", w.Key, e, err, w)
		}
	}
}

// Two copies of one version with different bytes differ in the digest; one
// exchange leaves both stores with the Entry.Newer winner, whichever side
// starts it, and the replacement is counted as corruption.
func TestDigestFindsSameVersionWithDifferentBytes(t *testing.T) {
	for _, starter := range []int{0, 1} {
		ft := newFakeTime()
		a := openMem(t, "a", ft.Now, 0)
		b := openMem(t, "b", ft.Now, 0)
		v := Version{TS: at(ft, 0), Node: "w"}
		lo := Entry{Key: "k", Value: []byte("aaa"), Version: v}
		hi := Entry{Key: "k", Value: []byte("bbb"), Version: v}
		mustMerge(t, a, []Entry{lo})
		mustMerge(t, b, []Entry{hi})
		if a.Digest() == b.Digest() {
			t.Fatal("digests are equal though the values differ")
		}
		buckets := []int{BucketOf("k")}
		give, take := a.Compare(buckets, b.Summaries(buckets))
		if len(give) != 1 || len(take) != 1 {
			t.Fatalf("Compare = give %v, take %v; want k both ways", give, take)
		}
		n := &network{t: t, stores: []*Store{a, b}, cut: map[[2]int]bool{}}
		n.sync(starter, 1-starter)
		if !n.converged() {
			t.Fatalf("starter %d: digests differ after one exchange", starter)
		}
		for _, s := range n.stores {
			if e, err := s.Get("k"); err != nil || !entryEqual(e, hi) {
				t.Fatalf("starter %d: %s holds %+v, %v; want %+v", starter, s.Node(), e, err, hi)
			}
		}
		if a.Stats().Corrupt != 1 || b.Stats().Corrupt != 0 {
			t.Fatalf("starter %d: Corrupt = %d, %d; want 1 at the node that held the losing bytes", starter, a.Stats().Corrupt, b.Stats().Corrupt)
		}
		// An identical re-delivery changes and counts nothing.
		if changed, err := a.Merge([]Entry{hi}); err != nil || len(changed) != 0 || a.Stats().Corrupt != 1 {
			t.Fatalf("re-merge = %v, %v, corrupt %d", changed, err, a.Stats().Corrupt)
		}
	}
}

// On load the bound is twice MaxClockSkew: this node's own writes may run
// a little past the skew (the logical counter carries after witnessing an
// entry at the limit) and must survive a restart; a century does not.
func TestOpenKeepsRecordsWithinTwiceTheSkew(t *testing.T) {
	ft := newFakeTime()
	b := NewMemBackend()
	near := Entry{Key: "near", Value: []byte{}, Version: Version{TS: at(ft, DefaultMaxClockSkew+time.Second), Node: "n1"}}
	far := Entry{Key: "far", Value: []byte{}, Version: Version{TS: at(ft, 2*DefaultMaxClockSkew+time.Second), Node: "n1"}}
	if err := b.Put([]Entry{near, far}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(b, Config{Node: "n1", Now: ft.Now})
	if err != nil {
		t.Fatal(err)
	}
	q := s.Quarantined()
	if len(q) != 1 || q[0].Key != "far" || !errors.Is(q[0].Reason, ErrClockSkew) {
		t.Fatalf("Quarantined() = %v; want only far", q)
	}
	if _, err := s.Get("near"); err != nil {
		t.Fatalf("Get(near) = %v", err)
	}
}
