package store

import (
	"fmt"
	"testing"
)

// Benchmarks of the paths that hash values (issue 7: the value hash in the
// digest and the check on every read must cost little):
//
//	go test -run '^$' -bench 'Merge|Entries|Get' -benchtime 2s ./store
func benchEntries(n, size int) []Entry {
	es := make([]Entry, n)
	value := make([]byte, size)
	for i := range es {
		es[i] = Entry{Key: fmt.Sprintf("bench/%07d", i), Value: value, Version: Version{TS: Timestamp(i + 1), Node: "peer"}}
	}
	return es
}

// BenchmarkMergeCatchUp merges 10,000 new entries, as a node catching up does.
func BenchmarkMergeCatchUp(b *testing.B) {
	for _, size := range []int{100, 4096} {
		b.Run(fmt.Sprintf("value=%d", size), func(b *testing.B) {
			es := benchEntries(10000, size)
			b.SetBytes(int64(len(es) * size))
			for i := 0; i < b.N; i++ {
				s, err := Open(NewMemBackend(), Config{Node: "self"})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Merge(es); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEntries reads 10,000 entries, as a node answering a sync does.
func BenchmarkEntries(b *testing.B) {
	for _, size := range []int{100, 4096} {
		b.Run(fmt.Sprintf("value=%d", size), func(b *testing.B) {
			es := benchEntries(10000, size)
			s, err := Open(NewMemBackend(), Config{Node: "self"})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Merge(es); err != nil {
				b.Fatal(err)
			}
			keys := make([]string, len(es))
			for i, e := range es {
				keys[i] = e.Key
			}
			b.SetBytes(int64(len(es) * size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.Entries(keys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGet reads one 100-byte value.
func BenchmarkGet(b *testing.B) {
	s, err := Open(NewMemBackend(), Config{Node: "self"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Put("k", make([]byte, 100)); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if _, err := s.Get("k"); err != nil {
			b.Fatal(err)
		}
	}
}
