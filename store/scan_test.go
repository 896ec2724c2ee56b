package store

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// A scan of a large store (a peer's digest round asks for the summaries of
// every bucket, compares them, reads the entries; a client lists every
// key) must not hold the store's lock for its whole length: local writes
// go through while it runs. Before, Summaries sorted a million summaries
// under the read lock and every Put waited for it: during a 300k-entry
// push with one peer syncing, writes stalled for 0.7 s. Reference: issue 7,
// "public writes never wait behind one push for more than a few
// milliseconds".
func TestWritesGoThroughDuringLargeScans(t *testing.T) {
	s, err := Open(NewMemBackend(), Config{Node: "self"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50_000
	batch := make([]Entry, 0, 1000)
	ts := MakeTimestamp(time.Now().UnixMilli(), 0)
	for i := 0; i < n; i++ {
		batch = append(batch, Entry{Key: fmt.Sprintf("k%07d", i), Value: []byte("v"), Version: Version{TS: ts, Node: "peer"}})
		if len(batch) == cap(batch) {
			if _, err := s.Merge(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	all := make([]int, NumBuckets)
	keys := make([]string, n)
	for i := range all {
		all[i] = i
	}
	for i := range keys {
		keys[i] = fmt.Sprintf("k%07d", i)
	}
	remote := s.Summaries(all)[:n/2]

	scans := []struct {
		name string
		run  func()
	}{
		{"Summaries", func() { s.Summaries(all) }},
		{"Compare", func() { s.Compare(all, remote) }},
		{"Entries", func() {
			if _, err := s.Entries(keys); err != nil {
				t.Error(err)
			}
		}},
		{"List", func() { s.List("") }},
	}
	for _, sc := range scans {
		t.Run(sc.name, func(t *testing.T) {
			var scanning atomic.Bool
			var worst atomic.Int64 // longest write overlapping a scan, ns
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					during := scanning.Load()
					start := time.Now()
					if _, err := s.Put(fmt.Sprintf("w%d", i%100), []byte("x")); err != nil {
						t.Error(err)
						return
					}
					if d := time.Since(start); during || scanning.Load() {
						worst.Store(max(worst.Load(), int64(d)))
					}
				}
			}()
			// Two scans, so a slow start of the writer cannot decide it.
			shortest := time.Hour
			for r := 0; r < 2; r++ {
				scanning.Store(true)
				start := time.Now()
				sc.run()
				shortest = min(shortest, time.Since(start))
				scanning.Store(false)
			}
			close(stop)
			<-done
			w := time.Duration(worst.Load())
			t.Logf("%s of %d keys: shortest scan %v, longest write during the scans %v", sc.name, n, shortest, w)
			if w > shortest/2 {
				t.Errorf("a write waited %v during a scan of %v; want it to go through while the scan runs (< half of it; a write that waits for the whole scan is what this catches)", w, shortest)
			}
		})
	}
}
