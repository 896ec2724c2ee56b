package api

// The coordination half of the API: a Raft group across the agents
// (daemon/raft*.go, daemon/coord*.go), beside the gossip store.
//
//	GET    /v1/leader                          Leader: the group as this node sees it
//	GET    /v1/kv/KEY?consistent=1             KV, linearizable (404 code key_not_found)
//	PUT    /v1/kv/KEY?consistent=1             body: the raw value; WriteResult
//	PUT    /v1/kv/KEY?consistent=1&if_version=N  compare-and-set: N is the key's
//	                                           current Version, 0 = must be absent;
//	                                           409 code version_mismatch otherwise
//	PUT    /v1/kv/KEY?consistent=1&if_absent=1 same as if_version=0
//	DELETE /v1/kv/KEY?consistent=1[&if_version=N]  WriteResult (Existed says if it was there)
//	GET    /v1/kv?consistent=1&prefix=P        []KeyInfo, live keys sorted
//	POST   /v1/locks/NAME?ttl=10s&wait=30s     LockGrant once acquired; 409 code lock_held
//	                                           if still held by another when wait elapses
//	POST   /v1/locks/NAME/renew?session=S      LockGrant; 409 code lock_lost if S no longer holds it
//	DELETE /v1/locks/NAME?session=S            204; 409 code lock_lost if S did not hold it
//
// Any node serves these: a follower forwards the operation to the leader
// over the replication transport (so through the fault layer). Reads are
// linearizable (ReadIndex: the leader confirms it still leads a quorum,
// then reads once it has applied everything committed before the read).
// Keys and values have the gossip store's limits (512-byte keys, 64 KiB
// values); the whole namespace holds at most 6 MiB of keys, values and lock
// names (for coordination data: a snapshot must fit one message), past
// which a put or lock fails with 507, code namespace_full. In the consistent namespace, KV.Version and WriteResult.Version
// are the decimal Raft index of the key's last change; TS is 0 and Origin
// is the leader that committed it.
//
// Without a quorum (this node on the minority side of a partition, or too
// many voters down), an operation fails within 5 s with 503, code
// no_quorum, and a message that says how many voters this node reaches. A
// write refused that way may still have been committed (the leader lost
// its quorum after appending it): its outcome is unknown, as with a
// timeout.

import "errors"

// Leader describes the Raft group as one node sees it.
type Leader struct {
	Leader      string       `json:"leader"`     // name, "" when none is known
	LeaderAPI   string       `json:"leader_api"` // the leader's HTTP API address, "" when unknown
	Term        uint64       `json:"term"`
	CommitIndex uint64       `json:"commit_index"`
	LastIndex   uint64       `json:"last_index"`
	Servers     []RaftServer `json:"servers"` // the latest configuration, sorted by name
	// Node is the node that answered; State its raft state (Leader,
	// Follower, Candidate, Shutdown; "" before the group has formed).
	Node  string `json:"node"`
	State string `json:"state"`
}

// RaftServer is one server of the Raft configuration.
type RaftServer struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// Role is RoleLeader, RoleVoter or RoleNonvoter.
	Role string `json:"role"`
	// LastContactMs is how long ago the leader last heard from the server
	// (0 for the leader itself, -1 when unknown, e.g. when the answering
	// node is not the leader).
	LastContactMs int64 `json:"last_contact_ms"`
	// Alive is serf's view from the answering node: the member is alive.
	Alive bool `json:"alive"`
}

// Raft roles.
const (
	RoleLeader   = "leader"
	RoleVoter    = "voter"
	RoleNonvoter = "nonvoter"
)

// LockGrant is a held lock.
type LockGrant struct {
	Name    string `json:"name"`
	Session string `json:"session"` // pass it to renew and release
	// Fence is the Raft index of the acquire: strictly increasing over the
	// lock's successive holders, for fencing writes elsewhere.
	Fence     uint64 `json:"fence"`
	TTLMillis int64  `json:"ttl_ms"`
}

// Error codes of the consistent namespace and locks.
const (
	CodeNoQuorum        = "no_quorum"
	CodeVersionMismatch = "version_mismatch"
	CodeLockHeld        = "lock_held"
	CodeLockLost        = "lock_lost"
	CodeNamespaceFull   = "namespace_full"
)

// Sentinel errors the Client returns, usable with errors.Is; the
// *StatusError with the daemon's message wraps them.
var (
	// ErrNoQuorum: the node could not reach a quorum of voters in time.
	ErrNoQuorum = errors.New("no quorum")
	// ErrVersionMismatch: a compare-and-set found another version.
	ErrVersionMismatch = errors.New("version mismatch")
	// ErrLockHeld: another session held the lock until the wait elapsed.
	ErrLockHeld = errors.New("lock held by another session")
	// ErrLockLost: the session no longer holds the lock (expired or
	// released).
	ErrLockLost = errors.New("lock lost")
)
