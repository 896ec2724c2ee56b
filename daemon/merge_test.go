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
	if err == nil || !store.Refused(err) {
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
