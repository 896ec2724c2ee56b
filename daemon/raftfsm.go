package daemon

// The consistent namespace's state machine: what every raft server applies
// from the committed log, in log order, the same on each. It holds the
// consistent key-value pairs (each with the raft index of its last change
// as its version) and the locks (holder session, fencing token, TTL, the
// index of the last renew). It reads no clock: a lock expires when the
// leader commits an expiry (raft.go), so every server frees it at the same
// point of the log.

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/peerctl/peerctl/internal/api"
)

// FSM operations (fsmCmd.Op).
const (
	opPut    uint8 = 1
	opDelete uint8 = 2
	opLock   uint8 = 3
	opRenew  uint8 = 4
	opUnlock uint8 = 5
	opExpire uint8 = 6
)

// maxFSMBytes bounds the consistent namespace (keys, values and lock
// names, plus entryOverhead each), so that a snapshot fits in one
// InstallSnapshot call (maxSnapshotCall) with room for its encoding. It is
// for coordination data, not bulk data: a put that would cross it fails
// with codeNamespaceFull, the same on every server.
const (
	maxFSMBytes   = maxSnapshotCall * 3 / 4
	entryOverhead = 64
)

// codeNamespaceFull refuses a put that would take the consistent
// namespace over maxFSMBytes.
const codeNamespaceFull = api.CodeNamespaceFull

// fsmCmd is one command in the raft log, encoded with msgpack.
type fsmCmd struct {
	Op        uint8
	Key       string // key, or lock name
	Value     []byte
	Cond      bool   // compare IfVersion
	IfVersion uint64 // 0: must be absent
	Session   string
	TTLMillis int64
	Renewed   uint64 // opExpire: the renew index the leader saw lapse
}

// fsmResult is what applying a command returns (raft's ApplyFuture.Response).
type fsmResult struct {
	Code    string // "" ok, or api.CodeVersionMismatch, CodeLockHeld, CodeLockLost
	Version uint64 // index of the change; for a mismatch, the key's current version
	Existed bool
	Lock    lockState
}

// kvEntry is one key of the consistent namespace.
type kvEntry struct {
	Value   []byte
	Version uint64
	Leader  string // the server that was leader when it was committed
}

// lockState is a held lock.
type lockState struct {
	Session   string
	Fence     uint64 // index of the acquire
	TTLMillis int64
	Renewed   uint64 // index of the acquire or the last renew
}

// fsmSnapshotData is the state as a snapshot holds it. Values are strings:
// go-msgpack decodes the byte slices of a map's struct values into one
// reused buffer (they would all alias the last), strings it allocates.
type fsmSnapshotData struct {
	KV    map[string]snapKV
	Locks map[string]lockState
}

type snapKV struct {
	Value   string
	Version uint64
	Leader  string
}

// raftFSM implements raft.FSM. Its methods are safe for concurrent use:
// raft applies from one goroutine while the API reads.
type raftFSM struct {
	mu      sync.RWMutex // guards kv, locks, changed, leader, bytes
	bytes   int          // the state's size as maxFSMBytes counts it
	kv      map[string]kvEntry
	locks   map[string]lockState
	changed chan struct{} // closed and replaced when a lock changes
	leader  func() string // the current leader's name, for kvEntry.Leader
}

var _ raft.FSM = (*raftFSM)(nil)

func newRaftFSM(leader func() string) *raftFSM {
	return &raftFSM{kv: map[string]kvEntry{}, locks: map[string]lockState{}, changed: make(chan struct{}), leader: leader}
}

// Apply applies one committed log entry. A command that does not decode
// (it cannot come from this version) changes nothing.
func (f *raftFSM) Apply(l *raft.Log) any {
	var c fsmCmd
	if err := decodeMsgpack(l.Data, &c); err != nil {
		return fmt.Errorf("undecodable command at index %d: %w", l.Index, err)
	}
	return f.apply(l.Index, &c)
}

func (f *raftFSM) apply(idx uint64, c *fsmCmd) fsmResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c.Op {
	case opPut, opDelete:
		cur, ok := f.kv[c.Key]
		if c.Cond && ((c.IfVersion == 0 && ok) || (c.IfVersion != 0 && (!ok || cur.Version != c.IfVersion))) {
			return fsmResult{Code: codeVersionMismatch, Version: cur.Version, Existed: ok}
		}
		if c.Op == opDelete {
			if ok {
				f.bytes -= len(c.Key) + len(cur.Value) + entryOverhead
			}
			delete(f.kv, c.Key)
			return fsmResult{Version: idx, Existed: ok}
		}
		grow := len(c.Value) + len(c.Key) + entryOverhead
		if ok {
			grow -= len(c.Key) + len(cur.Value) + entryOverhead
		}
		if grow > 0 && f.bytes+grow > maxFSMBytes {
			return fsmResult{Code: codeNamespaceFull, Version: cur.Version, Existed: ok}
		}
		f.bytes += grow
		leader := ""
		if f.leader != nil {
			leader = f.leader()
		}
		// A copy: the command's bytes may be the log store's buffer.
		f.kv[c.Key] = kvEntry{Value: append([]byte{}, c.Value...), Version: idx, Leader: leader}
		return fsmResult{Version: idx, Existed: ok}
	case opLock:
		cur, ok := f.locks[c.Key]
		if ok && cur.Session != c.Session {
			return fsmResult{Code: codeLockHeld, Lock: cur}
		}
		if ok { // the holder asks again: a renew
			cur.Renewed, cur.TTLMillis = idx, c.TTLMillis
			f.locks[c.Key] = cur
			f.notify()
			return fsmResult{Lock: cur, Version: idx}
		}
		if f.bytes+len(c.Key)+entryOverhead > maxFSMBytes {
			return fsmResult{Code: codeNamespaceFull}
		}
		f.bytes += len(c.Key) + entryOverhead
		l := lockState{Session: c.Session, Fence: idx, TTLMillis: c.TTLMillis, Renewed: idx}
		f.locks[c.Key] = l
		f.notify()
		return fsmResult{Lock: l, Version: idx}
	case opRenew:
		cur, ok := f.locks[c.Key]
		if !ok || cur.Session != c.Session {
			return fsmResult{Code: codeLockLost}
		}
		cur.Renewed = idx
		f.locks[c.Key] = cur
		f.notify()
		return fsmResult{Lock: cur, Version: idx}
	case opUnlock, opExpire:
		cur, ok := f.locks[c.Key]
		if !ok || cur.Session != c.Session || (c.Op == opExpire && cur.Renewed != c.Renewed) {
			return fsmResult{Code: codeLockLost}
		}
		delete(f.locks, c.Key)
		f.bytes -= len(c.Key) + entryOverhead
		f.notify()
		return fsmResult{Lock: cur, Version: idx}
	}
	return fsmResult{Code: "bad_op"}
}

// notify wakes the lock waiters. f.mu must be held.
func (f *raftFSM) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// lockChanged returns a channel closed at the next lock change.
func (f *raftFSM) lockChanged() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// get returns the key's entry.
func (f *raftFSM) get(key string) (kvEntry, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e, ok := f.kv[key]
	return e, ok
}

// list returns the keys with the prefix, sorted, at most max of them.
func (f *raftFSM) list(prefix string, max int) []KeyInfo {
	f.mu.RLock()
	out := []KeyInfo{}
	for k, e := range f.kv {
		if strings.HasPrefix(k, prefix) {
			out = append(out, KeyInfo{Key: k, Version: fmt.Sprint(e.Version), Origin: e.Leader})
		}
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	if len(out) > max {
		out = out[:max]
	}
	return out
}

// heldLocks returns a copy of the held locks.
func (f *raftFSM) heldLocks() map[string]lockState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m := make(map[string]lockState, len(f.locks))
	for k, v := range f.locks {
		m[k] = v
	}
	return m
}

// Snapshot copies the state; Persist encodes it off raft's apply loop.
func (f *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	d := fsmSnapshotData{KV: make(map[string]snapKV, len(f.kv)), Locks: make(map[string]lockState, len(f.locks))}
	for k, v := range f.kv {
		d.KV[k] = snapKV{Value: string(v.Value), Version: v.Version, Leader: v.Leader}
	}
	for k, v := range f.locks {
		d.Locks[k] = v
	}
	return &fsmSnapshot{d: d}, nil
}

// Restore replaces the state with a snapshot's.
func (f *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	var d fsmSnapshotData
	if err := decodeMsgpack(b, &d); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	kv := make(map[string]kvEntry, len(d.KV))
	n := 0
	for k, e := range d.KV {
		kv[k] = kvEntry{Value: []byte(e.Value), Version: e.Version, Leader: e.Leader}
		n += len(k) + len(e.Value) + entryOverhead
	}
	if d.Locks == nil {
		d.Locks = map[string]lockState{}
	}
	for k := range d.Locks {
		n += len(k) + entryOverhead
	}
	f.mu.Lock()
	f.kv, f.locks, f.bytes = kv, d.Locks, n
	f.notify()
	f.mu.Unlock()
	return nil
}

type fsmSnapshot struct{ d fsmSnapshotData }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := encodeMsgpack(&s.d)
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
