package store

import (
	"errors"
	"testing"
	"time"
)

func TestTombstoneOrdering(t *testing.T) {
	ft := newFakeTime()
	s := openMem(t, "n1", ft.Now, 0)
	put, err := s.Put("k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	tomb, live, err := s.Delete("k")
	if err != nil || !live || !tomb.Deleted || tomb.Value != nil || tomb.Version.Compare(put.Version) <= 0 {
		t.Fatalf("Delete = %+v, live %v, %v; want a newer tombstone of a live key", tomb, live, err)
	}
	if _, err := s.Get("k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete = %v; want ErrNotFound", err)
	}
	if e, err := s.GetEntry("k"); err != nil || !entryEqual(e, tomb) {
		t.Fatalf("GetEntry after Delete = %+v, %v; want the tombstone", e, err)
	}
	if _, live, _ := s.Delete("k"); live {
		t.Fatal("second Delete reported a live value")
	}
	if _, live, _ := s.Delete("never"); live {
		t.Fatal("Delete of an unknown key reported a live value")
	}

	// The tombstone wins over an older put from another node...
	older := Entry{Key: "k", Value: []byte("older"), Version: Version{TS: tomb.Version.TS - 1, Node: "n9"}}
	if changed, _ := s.Merge([]Entry{older}); len(changed) != 0 {
		t.Fatalf("Merge(put older than tombstone) = %v; want no change", changed)
	}
	// ...and also over a put with the same timestamp from a lower node.
	cur, _ := s.GetEntry("k")
	tie := Entry{Key: "k", Value: []byte("tie"), Version: Version{TS: cur.Version.TS, Node: "n0"}}
	if changed, _ := s.Merge([]Entry{tie}); len(changed) != 0 {
		t.Fatalf("Merge(put tied with tombstone, lower node) = %v; want no change", changed)
	}
	// It loses to a newer put.
	newer := Entry{Key: "k", Value: []byte("newer"), Version: Version{TS: s.Clock().Last() + 1, Node: "n0"}}
	if changed, _ := s.Merge([]Entry{newer}); len(changed) != 1 {
		t.Fatalf("Merge(put newer than tombstone) = %v; want it applied", changed)
	}
	if e, err := s.Get("k"); err != nil || string(e.Value) != "newer" {
		t.Fatalf("Get = %+v, %v; want the newer put", e, err)
	}
	// A remote tombstone newer than the value deletes it.
	rt := Entry{Key: "k", Deleted: true, Version: Version{TS: s.Clock().Last() + 1, Node: "n2"}}
	if changed, _ := s.Merge([]Entry{rt}); len(changed) != 1 {
		t.Fatalf("Merge(newer tombstone) = %v; want it applied", changed)
	}
	if st := s.Stats(); st.Keys != 0 || st.Tombstones != 2 {
		t.Fatalf("Stats = %+v; want 0 keys, 2 tombstones (k, never)", st)
	}
}

func TestPurge(t *testing.T) {
	ft := newFakeTime()
	const ttl = time.Hour
	s := openMem(t, "n1", ft.Now, ttl)
	s.Put("live-old", []byte("v"))
	s.Delete("old")
	ft.Add(50 * time.Minute)
	s.Delete("young")
	ft.Add(10*time.Minute + time.Millisecond) // "old" is now just past the TTL

	n, err := s.Purge()
	if err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	if _, err := s.GetEntry("old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetEntry(purged) = %v; want ErrNotFound", err)
	}
	if e, err := s.GetEntry("young"); err != nil || !e.Deleted {
		t.Fatalf("GetEntry(young tombstone) = %+v, %v; want kept", e, err)
	}
	if _, err := s.Get("live-old"); err != nil {
		t.Fatalf("Purge removed a live key: %v", err)
	}
	if st := s.Stats(); st.Keys != 1 || st.Tombstones != 1 {
		t.Fatalf("Stats after Purge = %+v; want 1 key, 1 tombstone", st)
	}
	if n, _ := s.Purge(); n != 0 {
		t.Fatalf("second Purge = %d; want 0", n)
	}
	ft.Add(ttl)
	if n, _ := s.Purge(); n != 1 {
		t.Fatalf("Purge after another TTL = %d; want 1", n)
	}
}

func TestPurgeKeepsForeverWithoutTTL(t *testing.T) {
	ft := newFakeTime()
	s := openMem(t, "n1", ft.Now, 0)
	s.Delete("k")
	ft.Add(10 * 365 * 24 * time.Hour)
	if n, err := s.Purge(); n != 0 || err != nil {
		t.Fatalf("Purge with no TTL = %d, %v; want 0, nil", n, err)
	}
	old := Entry{Key: "o", Deleted: true, Version: Version{TS: 1, Node: "n2"}}
	if changed, _ := s.Merge([]Entry{old}); len(changed) != 1 {
		t.Fatalf("Merge(ancient tombstone) with no TTL = %v; want applied", changed)
	}
}

func TestMergeDropsTombstonesPastHorizon(t *testing.T) {
	ft := newFakeTime()
	s := openMem(t, "n1", ft.Now, time.Hour)
	at := func(d time.Duration) Timestamp { return MakeTimestamp(ft.Now().Add(d).UnixMilli(), 0) }
	stale := Entry{Key: "stale", Deleted: true, Version: Version{TS: at(-2 * time.Hour), Node: "n2"}}
	fresh := Entry{Key: "fresh", Deleted: true, Version: Version{TS: at(-30 * time.Minute), Node: "n2"}}
	oldPut := Entry{Key: "put", Value: []byte("v"), Version: Version{TS: at(-2 * time.Hour), Node: "n2"}}
	changed, err := s.Merge([]Entry{stale, fresh, oldPut})
	if err != nil || len(changed) != 2 || changed[0].Key != "fresh" || changed[1].Key != "put" {
		t.Fatalf("Merge = %v, %v; want [fresh put]: the stale tombstone counts as purged", changed, err)
	}
	if _, err := s.GetEntry("stale"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetEntry(stale) = %v; want ErrNotFound", err)
	}
}

// A clock near the epoch once made the horizon wrap around to the far
// future, so that Merge dropped every tombstone and Purge removed them all.
func TestHorizonNearEpoch(t *testing.T) {
	ft := newFakeTime()
	ft.Set(time.UnixMilli(5000))
	s := openMem(t, "n1", ft.Now, time.Hour)
	tomb := Entry{Key: "k", Deleted: true, Version: Version{TS: MakeTimestamp(4000, 0), Node: "n2"}}
	if changed, _ := s.Merge([]Entry{tomb}); len(changed) != 1 {
		t.Fatalf("Merge(tombstone 1 s old, TTL 1 h) = %v; want applied", changed)
	}
	if n, _ := s.Purge(); n != 0 {
		t.Fatalf("Purge = %d; want 0", n)
	}
}

func TestOpenRebuildsIndex(t *testing.T) {
	ft := newFakeTime()
	b := NewMemBackend()
	s, err := Open(b, Config{Node: "n1", Now: ft.Now})
	if err != nil {
		t.Fatal(err)
	}
	s.Put("a", []byte("1"))
	s.Put("b", []byte("2"))
	s.Delete("a")
	s.Merge([]Entry{{Key: "c", Value: []byte("3"), Version: Version{TS: MakeTimestamp(ft.Now().Add(30*time.Second).UnixMilli(), 0), Node: "n2"}}})
	s2, err := Open(b, Config{Node: "n1", Now: ft.Now})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Digest() != s.Digest() || s2.Stats() != s.Stats() {
		t.Fatalf("reopened Stats %+v / digest differ from %+v", s2.Stats(), s.Stats())
	}
	// The clock resumes past everything stored, even with the wall clock behind.
	if e, _ := s2.Put("d", nil); e.Version.TS <= s.Clock().Last() {
		t.Fatalf("write after reopen got %v; want past %v", e.Version.TS, s.Clock().Last())
	}
	if got := s2.List(""); len(got) != 3 || got[0].Key != "b" || got[1].Key != "c" || got[2].Key != "d" {
		t.Fatalf("List(\"\") = %v; want b, c, d", got)
	}
	if got := s2.List("c"); len(got) != 1 {
		t.Fatalf("List(\"c\") = %v; want [c]", got)
	}
}

func TestOpenValidatesNode(t *testing.T) {
	for _, node := range []string{"", string(make([]byte, MaxNodeLen+1))} {
		if _, err := Open(NewMemBackend(), Config{Node: node}); err == nil {
			t.Errorf("Open(node of %d bytes) = nil error; want one", len(node))
		}
	}
}

func TestClosed(t *testing.T) {
	s, _ := Open(NewMemBackend(), Config{Node: "n1", Now: newFakeTime().Now})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v; want nil", err)
	}
	if _, err := s.Put("k", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close = %v; want ErrClosed", err)
	}
	if _, _, err := s.Delete("k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close = %v; want ErrClosed", err)
	}
	if _, err := s.Get("k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v; want ErrClosed", err)
	}
	if _, err := s.Merge([]Entry{{Key: "k", Value: []byte{}, Version: Version{TS: 1, Node: "n"}}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Merge after Close = %v; want ErrClosed", err)
	}
	if _, err := s.Purge(); !errors.Is(err, ErrClosed) {
		t.Errorf("Purge after Close = %v; want ErrClosed", err)
	}
	if _, err := s.Entries([]string{"k"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Entries after Close = %v; want ErrClosed", err)
	}
}

// A caller that reuses its buffer after Put must not change the stored value.
func TestPutDoesNotAliasCallerBuffer(t *testing.T) {
	s := openMem(t, "n1", newFakeTime().Now, 0)
	buf := []byte("first")
	s.Put("k", buf)
	copy(buf, "XXXXX")
	if e, _ := s.Get("k"); string(e.Value) != "first" {
		t.Fatalf("Get = %q after the caller reused its buffer; want %q", e.Value, "first")
	}
}
