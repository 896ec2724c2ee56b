package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
)

// peerFunc is a Transport whose calls are answered by a function: a peer
// under the test's control. Send is refused.
type peerFunc func(kind string, body []byte) ([]byte, error)

func (f peerFunc) Call(_ context.Context, _, _, kind string, body []byte) ([]byte, error) {
	return f(kind, body)
}
func (f peerFunc) Send(_, _, _ string, _ []byte) error { return errors.New("no streams") }
func (f peerFunc) SetHandler(Handler)                  {}

var _ Transport = peerFunc(nil)

// A malicious peer answers this node's anti-entropy round with forged
// entries, one at 2^63-1 and one a century ahead, beside a good one. The
// round applies the good entry and refuses the forged ones (not stored,
// clock not moved, counted as refused); later writes stay near the wall
// clock. Reference: issue 7, item 1 ("push, sync, catch-up"), and the
// reviewer's probe "via a sync reply a malicious peer returns".
func TestForgedSyncReplyIsRefused(t *testing.T) {
	st, err := store.Open(store.NewMemBackend(), store.Config{Node: "self", MaxClockSkew: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	good := store.Entry{Key: "good", Value: []byte("v"), Version: store.Version{TS: store.MakeTimestamp(now.UnixMilli(), 0), Node: "mallory"}}
	forged := []store.Entry{
		good,
		{Key: "forged/max", Value: []byte("x"), Version: store.Version{TS: store.MaxTimestamp, Node: "mallory"}},
		{Key: "forged/century", Value: []byte("x"), Version: store.Version{TS: store.MakeTimestamp(now.AddDate(100, 0, 0).UnixMilli(), 0), Node: "mallory"}},
	}
	var buckets []int
	for _, e := range forged {
		buckets = append(buckets, store.BucketOf(e.Key))
	}
	mallory := peerFunc(func(kind string, body []byte) ([]byte, error) {
		switch kind {
		case kindDigest:
			return store.DigestReply{Buckets: buckets}.Encode(), nil
		case kindSync:
			return store.SyncReply{Entries: forged}.Encode(), nil
		case kindPush:
			return nil, nil
		}
		return nil, fmt.Errorf("unexpected %s", kind)
	})
	r := newReplicator(st, mallory, newCounters(), slog.New(slog.DiscardHandler), time.Millisecond, time.Second)
	defer r.cancel()
	if _, err := r.syncWith(&peer{name: "mallory", addr: "127.0.0.1:1"}); err != nil {
		t.Fatalf("sync round with the forged reply: %v", err)
	}
	if _, err := st.Get("good"); err != nil {
		t.Errorf("the good entry in the reply: %v; want it applied", err)
	}
	for _, k := range []string{"forged/max", "forged/century"} {
		if e, err := st.Get(k); err == nil {
			t.Errorf("forged %s stored at %v", k, e.Version)
		}
	}
	if got := r.drops[dropRefused].Load(); got == 0 {
		t.Error("the forged entries were not counted as refused")
	}
	e, err := st.Put("after", []byte("w"))
	if err != nil {
		t.Fatal(err)
	}
	if ahead := time.Until(e.Version.TS.Time()); ahead > time.Minute {
		t.Errorf("write after the forged reply stamped %v, %v ahead of the wall clock", e.Version, ahead)
	}
}
