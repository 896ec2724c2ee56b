package store_test

import (
	"fmt"
	"time"

	"github.com/peerctl/peerctl/store"
)

// One anti-entropy exchange between two nodes: compare digests, list the
// differing buckets, and trade the entries each side lacks. In the daemon
// each step is a message encoded with the codec.
func Example_antiEntropy() {
	now := func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	a, _ := store.Open(store.NewMemBackend(), store.Config{Node: "a", Now: now})
	b, _ := store.Open(store.NewMemBackend(), store.Config{Node: "b", Now: now})
	a.Put("color", []byte("red"))
	b.Put("shape", []byte("round"))

	da, db := a.Digest(), b.Digest()
	buckets := da.Diff(&db)                                // a asks b for these buckets
	give, take := a.Compare(buckets, b.Summaries(buckets)) // b answers with summaries
	toB, _ := a.Entries(give)
	toA, _ := b.Entries(take)
	b.Merge(toB)
	a.Merge(toA)

	fmt.Println("give", give, "take", take)
	fmt.Println("converged:", a.Digest() == b.Digest())
	// Output:
	// give [color] take [shape]
	// converged: true
}
