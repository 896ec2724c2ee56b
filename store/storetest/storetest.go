// Package storetest is the conformance suite every store.Backend must pass.
// Run it from a backend's tests with a function that opens a fresh, empty
// backend (litestream's RunWithReplicaClient has the same shape):
//
//	func TestBackend(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Backend { return store.NewMemBackend() })
//	}
//
// The suite closes every backend it opens, so open must not register its own
// Close; a second Close is part of the contract and is checked.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
)

// Run runs every conformance test against backends made by open.
func Run(t *testing.T, open func(t *testing.T) store.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b store.Backend)
	}{
		{"Empty", testEmpty},
		{"PutGet", testPutGet},
		{"Replace", testReplace},
		{"Delete", testDelete},
		{"Load", testLoad},
		{"LoadStops", testLoadStops},
		{"LargeBatch", testLargeBatch},
		{"NoAliasing", testNoAliasing},
		{"ConcurrentGet", testConcurrentGet},
		{"Store", testStore},
		{"Quarantine", testQuarantine},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := open(t)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, b)
		})
	}
}

// Entry returns a valid live entry for tests.
func Entry(key, value string, ts store.Timestamp) store.Entry {
	return store.Entry{Key: key, Value: []byte(value), Version: store.Version{TS: ts, Node: "n1"}}
}

// Tombstone returns a valid tombstone for tests.
func Tombstone(key string, ts store.Timestamp) store.Entry {
	return store.Entry{Key: key, Deleted: true, Version: store.Version{TS: ts, Node: "n1"}}
}

// Equal reports whether two entries have the same key, version, deletion
// and value bytes (nil and empty values are equal).
func Equal(a, b store.Entry) bool {
	return a.Key == b.Key && a.Version == b.Version && a.Deleted == b.Deleted && bytes.Equal(a.Value, b.Value)
}

// LoadAll returns every entry in b, sorted by key.
func LoadAll(tb testing.TB, b store.Backend) []store.Entry {
	tb.Helper()
	var out []store.Entry
	if err := b.Load(func(e store.Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		tb.Fatalf("Load: %v", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func mustPut(tb testing.TB, b store.Backend, es ...store.Entry) {
	tb.Helper()
	if err := b.Put(es); err != nil {
		tb.Fatalf("Put(%d entries): %v", len(es), err)
	}
}

func wantGet(tb testing.TB, b store.Backend, want store.Entry) {
	tb.Helper()
	got, err := b.Get(want.Key)
	if err != nil {
		tb.Fatalf("Get(%q): %v", want.Key, err)
	}
	if !Equal(got, want) {
		tb.Fatalf("Get(%q) = %+v; want %+v", want.Key, got, want)
	}
}

func wantMissing(tb testing.TB, b store.Backend, key string) {
	tb.Helper()
	if e, err := b.Get(key); !errors.Is(err, store.ErrNotFound) {
		tb.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", key, e, err)
	}
}

func testEmpty(t *testing.T, b store.Backend) {
	wantMissing(t, b, "nothing")
	if es := LoadAll(t, b); len(es) != 0 {
		t.Fatalf("Load on empty backend = %d entries; want 0", len(es))
	}
	if err := b.Delete([]string{"nothing"}); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	if err := b.Put(nil); err != nil {
		t.Fatalf("Put(nil): %v", err)
	}
	if b.Size() < 0 {
		t.Fatalf("Size() = %d; want >= 0", b.Size())
	}
}

func testPutGet(t *testing.T, b store.Backend) {
	big := strings.Repeat("v", store.MaxValueLen)
	key := strings.Repeat("k", store.MaxKeyLen)
	es := []store.Entry{
		Entry("a", "1", 1),
		Entry("empty", "", 2),
		Tombstone("gone", 3),
		Entry(key, big, 4),
		Entry("ключ/ü", "unicode", 5),
		{Key: "long-node", Value: []byte("x"), Version: store.Version{TS: store.MaxTimestamp, Node: strings.Repeat("n", store.MaxNodeLen)}},
	}
	mustPut(t, b, es...)
	for _, e := range es {
		wantGet(t, b, e)
	}
	got, _ := b.Get("gone")
	if !got.Deleted || len(got.Value) != 0 {
		t.Fatalf("Get(tombstone) = %+v; want Deleted and no value", got)
	}
	wantMissing(t, b, "b")
	wantMissing(t, b, "a0") // a neighbour of a stored key
	wantMissing(t, b, "")
}

func testReplace(t *testing.T, b store.Backend) {
	mustPut(t, b, Entry("k", "old", 1))
	mustPut(t, b, Tombstone("k", 2))
	wantGet(t, b, Tombstone("k", 2))
	mustPut(t, b, Entry("k", "new", 3))
	wantGet(t, b, Entry("k", "new", 3))
	// The backend stores what it is told: ordering is Store's job.
	mustPut(t, b, Entry("k", "older", 1))
	wantGet(t, b, Entry("k", "older", 1))
	// Within one batch the last entry for a key wins.
	mustPut(t, b, Entry("d", "first", 5), Entry("d", "second", 4))
	wantGet(t, b, Entry("d", "second", 4))
	if n := len(LoadAll(t, b)); n != 2 {
		t.Fatalf("Load after replacing = %d entries; want 2", n)
	}
}

func testDelete(t *testing.T, b store.Backend) {
	mustPut(t, b, Entry("a", "1", 1), Tombstone("b", 2), Entry("c", "3", 3))
	if err := b.Delete([]string{"a", "b", "missing"}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMissing(t, b, "a")
	wantMissing(t, b, "b")
	wantGet(t, b, Entry("c", "3", 3))
	if err := b.Delete(nil); err != nil {
		t.Fatalf("Delete(nil): %v", err)
	}
}

func testLoad(t *testing.T, b store.Backend) {
	want := map[string]store.Entry{}
	var es []store.Entry
	for i := 0; i < 500; i++ {
		e := Entry(fmt.Sprintf("key/%03d", i), fmt.Sprint(i), store.Timestamp(i+1))
		if i%7 == 0 {
			e = Tombstone(e.Key, e.Version.TS)
		}
		es = append(es, e)
		want[e.Key] = e
	}
	mustPut(t, b, es...)
	seen := map[string]bool{}
	for _, e := range LoadAll(t, b) {
		if seen[e.Key] {
			t.Fatalf("Load visited %q twice", e.Key)
		}
		seen[e.Key] = true
		if !Equal(e, want[e.Key]) {
			t.Fatalf("Load gave %+v; want %+v", e, want[e.Key])
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("Load visited %d entries; want %d", len(seen), len(want))
	}
}

func testLoadStops(t *testing.T, b store.Backend) {
	mustPut(t, b, Entry("a", "1", 1), Entry("b", "2", 2), Entry("c", "3", 3))
	stop := errors.New("stop")
	calls := 0
	err := b.Load(func(store.Entry) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Load with failing fn = %v after %d calls; want the fn's error after 1", err, calls)
	}
}

// testLargeBatch puts more than fits one badger transaction with a small
// memtable, plus values past badger's value-log threshold.
func testLargeBatch(t *testing.T, b store.Backend) {
	n := 20000
	if testing.Short() {
		n = 5000
	}
	es := make([]store.Entry, 0, n)
	keys := make([]string, 0, n)
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", 32))
		if i%1000 == 0 {
			v = strings.Repeat("L", 8<<10)
		}
		e := Entry(fmt.Sprintf("bulk/%06d", i), v, store.Timestamp(i+1))
		es = append(es, e)
		keys = append(keys, e.Key)
	}
	mustPut(t, b, es...)
	if got := len(LoadAll(t, b)); got != n {
		t.Fatalf("Load after large Put = %d entries; want %d", got, n)
	}
	for i := 0; i < n; i += 997 {
		wantGet(t, b, es[i])
	}
	if err := b.Delete(keys); err != nil {
		t.Fatalf("Delete(%d keys): %v", n, err)
	}
	if got := len(LoadAll(t, b)); got != 0 {
		t.Fatalf("Load after large Delete = %d entries; want 0", got)
	}
}

func testNoAliasing(t *testing.T, b store.Backend) {
	v := []byte("original")
	mustPut(t, b, store.Entry{Key: "k", Value: v, Version: store.Version{TS: 1, Node: "n1"}})
	copy(v, "CHANGED!")
	wantGet(t, b, Entry("k", "original", 1))
	got, _ := b.Get("k")
	copy(got.Value, "CHANGED!")
	wantGet(t, b, Entry("k", "original", 1))
	_ = b.Load(func(e store.Entry) error {
		copy(e.Value, "CHANGED!")
		return nil
	})
	wantGet(t, b, Entry("k", "original", 1))
}

// testConcurrentGet runs Gets beside a writer, as Store allows.
func testConcurrentGet(t *testing.T, b store.Backend) {
	const n = 200
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if err := b.Put([]store.Entry{Entry(fmt.Sprintf("c/%d", i%10), fmt.Sprint(i), store.Timestamp(i+1))}); err != nil {
				t.Errorf("Put: %v", err)
				return
			}
		}
	}()
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				e, err := b.Get(fmt.Sprintf("c/%d", i%10))
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Get: %v", err)
					return
				}
				if err == nil && (e.Version.TS == 0 || string(e.Value) != fmt.Sprint(int(e.Version.TS)-1)) {
					t.Errorf("Get = %+v: torn entry", e)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// testStore drives a Store over the backend through writes, merges,
// deletes and a purge, then reopens a Store over the same backend and
// checks that it rebuilds the same digest.
func testStore(t *testing.T, b store.Backend) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	cfg := store.Config{Node: "n1", Now: clock, TombstoneTTL: time.Hour}
	s, err := store.Open(b, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for i := 0; i < 50; i++ {
		if _, err := s.Put(fmt.Sprintf("k%02d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	if _, live, err := s.Delete("k00"); err != nil || !live {
		t.Fatalf("Delete(k00) = live %v, %v; want true, nil", live, err)
	}
	remote := store.Entry{Key: "k01", Value: []byte("remote"), Version: store.Version{TS: s.Clock().Last() + 10, Node: "n2"}}
	if changed, err := s.Merge([]store.Entry{remote}); err != nil || len(changed) != 1 {
		t.Fatalf("Merge = %v, %v; want 1 change", changed, err)
	}
	if e, err := s.Get("k01"); err != nil || string(e.Value) != "remote" {
		t.Fatalf("Get(k01) = %+v, %v; want the merged value", e, err)
	}
	if _, _, err := s.Delete("k02"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	if n, err := s.Purge(); err != nil || n != 2 {
		t.Fatalf("Purge = %d, %v; want 2", n, err)
	}
	want := s.Digest()
	stats := s.Stats()
	if stats.Keys != 48 || stats.Tombstones != 0 {
		t.Fatalf("Stats = %+v; want 48 keys, 0 tombstones", stats)
	}

	// A second Store over the same backend sees the same state. (Closing
	// the first would close the backend.)
	s2, err := store.Open(b, cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if got := s2.Digest(); got != want {
		t.Fatalf("reopened digest differs in buckets %v", got.Diff(&want))
	}
	if s2.Clock().Last() < s.Clock().Last()-1 {
		t.Fatalf("reopened clock %v is behind the stored versions %v", s2.Clock().Last(), s.Clock().Last())
	}
	if _, err := s2.Get("k00"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(purged k00) = %v; want ErrNotFound", err)
	}
}

// testQuarantine checks a Backend that implements store.Quarantiner: a
// quarantined record leaves the live keyspace (Get, Load) without
// disturbing other keys, and a good copy can be stored under the same key
// afterwards, which is how anti-entropy repairs it.
func testQuarantine(t *testing.T, b store.Backend) {
	q, ok := b.(store.Quarantiner)
	if !ok {
		t.Skip("backend does not implement store.Quarantiner")
	}
	mustPut(t, b, Entry("bad", "damaged", 1), Entry("good", "fine", 2))
	if err := q.Quarantine("bad", fmt.Errorf("%w: test", store.ErrCorrupt)); err != nil {
		t.Fatalf("Quarantine: %v", err)
	}
	wantMissing(t, b, "bad")
	wantGet(t, b, Entry("good", "fine", 2))
	if es := LoadAll(t, b); len(es) != 1 || es[0].Key != "good" {
		t.Fatalf("Load after Quarantine = %v; want only good", es)
	}
	mustPut(t, b, Entry("bad", "repaired", 3))
	wantGet(t, b, Entry("bad", "repaired", 3))
	if es := LoadAll(t, b); len(es) != 2 {
		t.Fatalf("Load after the repair = %d entries; want 2", len(es))
	}
}

func testClose(t *testing.T, b store.Backend) {
	mustPut(t, b, Entry("a", "1", 1))
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close = %v; want nil", err)
	}
}
