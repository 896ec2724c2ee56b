package daemon

// The HTTP API. Every daemon serves it on --api (loopback by default). All
// paths are versioned under /v1; bodies are JSON unless noted; errors are
// {"error": "..."} with a 4xx or 5xx status. Any request may carry
// ?node=NAME: the daemon then forwards it to that member's API address (from
// its serf tags), so a client that reaches one node reaches all of them.
//
//	GET    /v1/members             []Member
//	GET    /v1/info                Info
//	GET    /v1/kv/KEY              KV (404 if missing or deleted)
//	GET    /v1/kv/KEY?all=1        []NodeKV, the key as each alive node holds it
//	PUT    /v1/kv/KEY              body: the raw value; WriteResult
//	DELETE /v1/kv/KEY              WriteResult
//	GET    /v1/kv?prefix=P         []KeyInfo, live keys sorted
//	POST   /v1/kill                202; the process then dies as with kill -9
//	POST   /v1/leave               202; the node leaves gracefully and exits
//	GET    /v1/check[?timeout=D]   CheckResult: do all alive nodes hold the same data? (fan-out bounded by D, default 5s)
//	GET    /v1/digest              the node's digest (binary, store/codec.go)
//	GET    /v1/summaries?b=1,2     summaries of those digest buckets (binary)
//	GET    /v1/events[?kinds=K,..&cluster=1]  Server-Sent Events: see events.go
//	POST   /v1/faults ...          fault injection: see faultsapi.go
//
// KEY is path-escaped (url.PathEscape), so it may contain '/'. A query
// string that does not parse is refused (400).
//
// Every POST, PUT and DELETE must carry Content-Type application/json or
// application/octet-stream, or the header X-Peerctl-Client (Client sends
// it); a request with a foreign Origin, or on a loopback API a Host that is
// not loopback, is refused (403). See guard.go. GET /debug/pprof/ is served
// only with Config.Pprof (--pprof).
//
// Replication between daemons uses POST /v1/internal/{push,digest,sync} with
// the binary encoding of store/codec.go; see replicate.go. Those paths go
// through the node's Transport and are not for clients.

import "github.com/peerctl/peerctl/internal/api"

// The API's types and its client live in internal/api, so that peerctl's
// commands need not import the daemon. These aliases keep the daemon's code
// (and its tests) speaking of them by their short names.
type (
	Member           = api.Member
	KV               = api.KV
	NodeKV           = api.NodeKV
	WriteResult      = api.WriteResult
	KeyInfo          = api.KeyInfo
	Info             = api.Info
	StoreStats       = api.StoreStats
	ReplicationStats = api.ReplicationStats
	CheckResult      = api.CheckResult
	Divergence       = api.Divergence
	FaultRequest     = api.FaultRequest
	NodeFaults       = api.NodeFaults
	FaultResult      = api.FaultResult
	HealResult       = api.HealResult
	FaultStatus      = api.FaultStatus
	FaultsView       = api.FaultsView
	Rule             = api.Rule
	Endpoint         = api.Endpoint
	FaultRecord      = api.FaultRecord
	Client           = api.Client
	StatusError      = api.StatusError
	apiError         = api.Error
)

// Fault request kinds and rule kinds (api).
const (
	ReqPartition = api.ReqPartition
	ReqIsolate   = api.ReqIsolate
	ReqPause     = api.ReqPause
	ReqDelay     = api.ReqDelay
	ReqLoss      = api.ReqLoss

	FaultDrop  = api.FaultDrop
	FaultDelay = api.FaultDelay
	FaultLoss  = api.FaultLoss
	FaultPause = api.FaultPause
)

const codeKeyNotFound = api.CodeKeyNotFound

var (
	NewClient      = api.NewClient
	NewClientWith  = api.NewClientWith
	ErrKeyNotFound = api.ErrKeyNotFound
)

// codeKeySetAside marks a 503 for a key this node does not hold because
// its record was damaged on disk and set aside (quarantined): the key is
// not known to be gone, and anti-entropy restores it from a peer.
const codeKeySetAside = "key_set_aside"

// Coordination error codes (api).
const (
	codeNoQuorum        = api.CodeNoQuorum
	codeVersionMismatch = api.CodeVersionMismatch
	codeLockHeld        = api.CodeLockHeld
	codeLockLost        = api.CodeLockLost
)

// Coordination types (api).
type (
	LeaderInfo = api.Leader
	RaftServer = api.RaftServer
	LockGrant  = api.LockGrant
)

// Raft roles (api).
const (
	RoleLeader   = api.RoleLeader
	RoleVoter    = api.RoleVoter
	RoleNonvoter = api.RoleNonvoter
)
