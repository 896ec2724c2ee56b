package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
)

func memReplicator(t *testing.T) *replicator {
	t.Helper()
	st, err := store.Open(store.NewMemBackend(), store.Config{Node: "me"})
	if err != nil {
		t.Fatal(err)
	}
	return newReplicator(st, nil, newCounters(), slog.New(slog.NewTextHandler(io.Discard, nil)), time.Millisecond, time.Second)
}

// merge applies a batch in chunks with the result of one Store.Merge:
// every valid entry lands, the newest version of a key wins even when its
// versions sit in different chunks, and refused entries are reported.
func TestMergeInChunks(t *testing.T) {
	r := memReplicator(t)
	ts, _ := r.st.Clock().Now()
	var es []store.Entry
	for i := 0; i < 3*mergeChunkEntries+7; i++ {
		es = append(es, store.Entry{Key: fmt.Sprintf("k%04d", i), Value: []byte("v"), Version: store.Version{TS: ts + store.Timestamp(i), Node: "p"}})
	}
	// The same key, newest first, in the first and last chunks.
	es[0] = store.Entry{Key: "dup", Value: []byte("new"), Version: store.Version{TS: ts + 10_000, Node: "p"}}
	es[len(es)-1] = store.Entry{Key: "dup", Value: []byte("old"), Version: store.Version{TS: ts + 1, Node: "p"}}
	es[mergeChunkEntries+3].Key = "" // refused: invalid key
	applied, err := r.merge(es)
	if err == nil || !entriesRefused(err) {
		t.Fatalf("merge error = %v; want a refusal", err)
	}
	if want := len(es) - 2; len(applied) != want { // not the older dup, not the invalid one
		t.Errorf("applied %d entries; want %d", len(applied), want)
	}
	if got, _ := r.st.Get("dup"); string(got.Value) != "new" {
		t.Errorf("dup = %q; want the newer value", got.Value)
	}
	if got := r.st.Stats().Keys; got != len(es)-2 {
		t.Errorf("store holds %d keys; want %d", got, len(es)-2)
	}
}

// A sync request carries at most limit bytes of summaries: whole buckets,
// starting anywhere, and says so when it left buckets out.
func TestSummariesUpTo(t *testing.T) {
	r := memReplicator(t)
	var es []store.Entry
	ts, _ := r.st.Clock().Now()
	for i := 0; i < 5000; i++ {
		es = append(es, store.Entry{Key: fmt.Sprintf("key-%05d", i), Value: []byte("v"), Version: store.Version{TS: ts, Node: "p"}})
	}
	if _, err := r.merge(es); err != nil {
		t.Fatal(err)
	}
	all := make([]int, store.NumBuckets)
	for i := range all {
		all[i] = i
	}
	if b, sums, cut := r.summariesUpTo(all, 1<<30); cut || len(b) != len(all) || len(sums) != len(es) {
		t.Fatalf("under the limit: %d buckets, %d summaries, cut %v", len(b), len(sums), cut)
	}
	const limit = 20 << 10
	seen := map[int]bool{}
	for round := 0; round < 50; round++ {
		b, sums, cut := r.summariesUpTo(all, limit)
		if !cut {
			t.Fatal("over the limit, not cut")
		}
		in := map[int]bool{}
		for _, x := range b {
			in[x] = true
			seen[x] = true
		}
		size := 0
		for _, s := range sums {
			if !in[store.BucketOf(s.Key)] {
				t.Fatalf("summary of %q from a bucket not sent", s.Key)
			}
			size += len(s.Key) + len(s.Version.Node) + 24
		}
		if want := len(r.st.Summaries(b)); len(sums) != want {
			t.Fatalf("%d summaries for the buckets sent; want all %d", len(sums), want)
		}
		if size > limit {
			t.Fatalf("%d bytes of summaries; limit %d", size, limit)
		}
	}
	if len(seen) < store.NumBuckets/2 {
		t.Errorf("50 cut rounds reached %d of %d buckets; the start should move", len(seen), store.NumBuckets)
	}
}
