package daemon

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func applyCmd(tb testing.TB, f *raftFSM, idx uint64, c fsmCmd) fsmResult {
	tb.Helper()
	b, err := encodeMsgpack(&c)
	if err != nil {
		tb.Fatal(err)
	}
	res, ok := f.Apply(&raft.Log{Index: idx, Data: b}).(fsmResult)
	if !ok {
		tb.Fatalf("Apply(%+v) did not return an fsmResult", c)
	}
	return res
}

// The state machine: versions are raft indexes, CAS compares them (0:
// absent), locks carry the acquire's index as fence and expire only for
// the renew the leader saw lapse, the namespace is bounded, and a snapshot
// restores the same state with the same accounting.
func TestRaftFSM(t *testing.T) {
	f := newRaftFSM(func() string { return "n1" })
	if r := applyCmd(t, f, 5, fsmCmd{Op: opPut, Key: "k", Value: []byte("a")}); r.Code != "" || r.Version != 5 {
		t.Fatalf("put = %+v; want version 5", r)
	}
	if r := applyCmd(t, f, 6, fsmCmd{Op: opPut, Key: "k", Value: []byte("b"), Cond: true, IfVersion: 4}); r.Code != codeVersionMismatch || r.Version != 5 {
		t.Fatalf("CAS with version 4 = %+v; want a mismatch at 5", r)
	}
	if r := applyCmd(t, f, 7, fsmCmd{Op: opPut, Key: "k", Value: []byte("b"), Cond: true, IfVersion: 0}); r.Code != codeVersionMismatch {
		t.Fatalf("if-absent on a present key = %+v; want a mismatch", r)
	}
	if r := applyCmd(t, f, 8, fsmCmd{Op: opPut, Key: "k", Value: []byte("b"), Cond: true, IfVersion: 5}); r.Code != "" || r.Version != 8 {
		t.Fatalf("CAS with version 5 = %+v; want version 8", r)
	}
	g := applyCmd(t, f, 9, fsmCmd{Op: opLock, Key: "L", Session: "s1", TTLMillis: 1000})
	if g.Code != "" || g.Lock.Fence != 9 {
		t.Fatalf("lock = %+v; want fence 9", g)
	}
	if r := applyCmd(t, f, 10, fsmCmd{Op: opLock, Key: "L", Session: "s2", TTLMillis: 1000}); r.Code != codeLockHeld {
		t.Fatalf("lock by another session = %+v; want held", r)
	}
	applyCmd(t, f, 11, fsmCmd{Op: opRenew, Key: "L", Session: "s1"})
	// An expiry for the renew at 9 arrives after the renew at 11: ignored.
	if r := applyCmd(t, f, 12, fsmCmd{Op: opExpire, Key: "L", Session: "s1", Renewed: 9}); r.Code != codeLockLost {
		t.Fatalf("stale expiry = %+v; want refused", r)
	}
	if r := applyCmd(t, f, 13, fsmCmd{Op: opExpire, Key: "L", Session: "s1", Renewed: 11}); r.Code != "" {
		t.Fatalf("expiry = %+v", r)
	}
	if r := applyCmd(t, f, 14, fsmCmd{Op: opLock, Key: "L", Session: "s2", TTLMillis: 1000}); r.Code != "" || r.Lock.Fence != 14 {
		t.Fatalf("lock after expiry = %+v; want fence 14", r)
	}
	// Bounded: fill up, then a put that grows it is refused, one that
	// shrinks it is not.
	big := bytes.Repeat([]byte("x"), 60<<10)
	idx := uint64(100)
	for ; ; idx++ {
		r := applyCmd(t, f, idx, fsmCmd{Op: opPut, Key: "big/" + strings.Repeat("k", int(idx%7)) + string(rune('a'+idx%26)) + string(rune('a'+idx/26%26)), Value: big})
		if r.Code == codeNamespaceFull {
			break
		}
		if idx > 1000 {
			t.Fatal("the namespace never filled")
		}
	}
	if r := applyCmd(t, f, idx+1, fsmCmd{Op: opPut, Key: "k", Value: []byte("c")}); r.Code != "" {
		t.Fatalf("a put that does not grow the namespace = %+v", r)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if sink.Len() > maxSnapshotCall {
		t.Fatalf("a full namespace's snapshot is %d bytes; one call carries %d", sink.Len(), maxSnapshotCall)
	}
	g2 := newRaftFSM(nil)
	if err := g2.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if g2.bytes != f.bytes || len(g2.kv) != len(f.kv) || g2.locks["L"] != f.locks["L"] {
		t.Fatalf("restored %d bytes, %d keys, lock %+v; want %d, %d, %+v", g2.bytes, len(g2.kv), g2.locks["L"], f.bytes, len(f.kv), f.locks["L"])
	}
	if e, _ := g2.get("k"); string(e.Value) != "c" {
		t.Fatalf("restored k = %q", e.Value)
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }
