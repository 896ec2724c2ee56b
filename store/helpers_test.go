package store

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// fakeTime is a wall clock the test moves by hand.
type fakeTime struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeTime() *fakeTime {
	return &fakeTime{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (f *fakeTime) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeTime) Add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func (f *fakeTime) Set(t time.Time) {
	f.mu.Lock()
	f.t = t
	f.mu.Unlock()
}

// openMem opens a Store named node over a fresh MemBackend.
func openMem(tb testing.TB, node string, now func() time.Time, ttl time.Duration) *Store {
	tb.Helper()
	s, err := Open(NewMemBackend(), Config{Node: node, Now: now, TombstoneTTL: ttl})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func entryEqual(a, b Entry) bool {
	return a.Key == b.Key && a.Version == b.Version && a.Deleted == b.Deleted && bytes.Equal(a.Value, b.Value)
}

// contents returns every entry a store holds, tombstones included.
func contents(tb testing.TB, s *Store) map[string]Entry {
	tb.Helper()
	all := make([]int, NumBuckets)
	for i := range all {
		all[i] = i
	}
	var keys []string
	for _, sum := range s.Summaries(all) {
		keys = append(keys, sum.Key)
	}
	es, err := s.Entries(keys)
	if err != nil {
		tb.Fatalf("Entries: %v", err)
	}
	out := make(map[string]Entry, len(es))
	for _, e := range es {
		out[e.Key] = e
	}
	return out
}
