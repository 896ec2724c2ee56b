// Package api holds the request and response types of the daemon's HTTP API
// and a Client for it: what peerctl's commands, the benchmark harness and the
// end-to-end tests need to talk to a daemon, without importing the daemon.
// The daemon (package daemon) serves these types; it defines none of its
// own for the wire. As serf's client/ package beside its agent.
//
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
//	GET    /v1/check               CheckResult: do all alive nodes hold the same data?
//	GET    /v1/digest              the node's digest (binary, store/codec.go)
//	GET    /v1/summaries?b=1,2     summaries of those digest buckets (binary)
//	GET    /v1/events[?kinds=K,..&cluster=1]  Server-Sent Events: see events.go
//	POST   /v1/faults ...          fault injection: see faults.go and daemon/faultsapi.go
//	GET    /  and /ui/             the dashboard, a web page (internal/ui)
//	GET    /v1/leader, /v1/kv/KEY?consistent=1, /v1/locks/NAME: the Raft group (internal/api/raft.go)
//
// KEY is path-escaped (url.PathEscape), so it may contain '/'. A query
// string that does not parse is refused (400).
//
// Every POST, PUT and DELETE must carry Content-Type application/json or
// application/octet-stream, or the header X-Peerctl-Client (Client sends
// it); a request with a foreign Origin, or on a loopback API a Host that is
// not loopback, is refused (403). See daemon/guard.go. GET /debug/pprof/ is served
// only with Config.Pprof (--pprof).
//
// Replication between daemons uses POST /v1/internal/{push,digest,sync} with
// the binary encoding of store/codec.go; see daemon/replicate.go. Those paths go
// through the node's Transport and are not for clients.
package api

import "time"

// Member is one member of the cluster as a node sees it.
type Member struct {
	Name   string            `json:"name"`
	Addr   string            `json:"addr"`   // gossip address host:port
	API    string            `json:"api"`    // HTTP API address host:port
	Status string            `json:"status"` // alive, suspect, leaving, left, failed
	Tags   map[string]string `json:"tags"`
	Fault  string            `json:"fault,omitempty"` // faults this node applies to traffic toward the member
}

// KV is one key's entry as a node holds it.
type KV struct {
	Key     string    `json:"key"`
	Value   []byte    `json:"value"` // base64 in JSON
	Version string    `json:"version"`
	TS      uint64    `json:"ts,string"` // hybrid logical clock timestamp; a JSON string: JavaScript numbers lose precision above 2^53
	Origin  string    `json:"origin"`    // node that wrote it
	Time    time.Time `json:"time"`      // wall-clock part of TS
	Deleted bool      `json:"deleted,omitempty"`
}

// NodeKV is a key as one node holds it, for GET ?all=1.
type NodeKV struct {
	Node   string `json:"node"`
	Status string `json:"status"`
	KV     *KV    `json:"kv,omitempty"`    // nil if the node lacks the key
	Error  string `json:"error,omitempty"` // set if the node could not be asked
}

// WriteResult acknowledges a put or delete.
type WriteResult struct {
	Key     string `json:"key"`
	Version string `json:"version"`
	TS      uint64 `json:"ts,string"` // HLC timestamp, a JSON string (see KV.TS)
	Origin  string `json:"origin"`
	Existed bool   `json:"existed,omitempty"` // for delete: a live value was there
}

// KeyInfo lists one live key.
type KeyInfo struct {
	Key     string `json:"key"`
	Version string `json:"version"`
	TS      uint64 `json:"ts,string"` // HLC timestamp, a JSON string (see KV.TS)
	Origin  string `json:"origin"`
}

// Info describes a node and what it has done.
type Info struct {
	Name        string           `json:"name"`
	Addr        string           `json:"addr"`
	API         string           `json:"api"`
	Version     string           `json:"version"`
	Profile     string           `json:"profile"`
	DataDir     string           `json:"data_dir"`
	PID         int              `json:"pid"`
	Encrypted   bool             `json:"encrypted"`
	StartedAt   time.Time        `json:"started_at"`
	Uptime      string           `json:"uptime"`
	Members     map[string]int   `json:"members"` // count by status
	Store       StoreStats       `json:"store"`
	Replication ReplicationStats `json:"replication"`
	Writes      uint64           `json:"writes"`    // local writes (puts and deletes) acknowledged since start
	RSSBytes    int64            `json:"rss_bytes"` // resident memory of the process; 0 where not known (Linux only)
	Auth        AuthStats        `json:"auth"`
}

// AuthStats says how a node guards its API and the channels between nodes,
// and counts what it refused.
type AuthStats struct {
	Keys               int               `json:"gossip_keys"` // gossip keyring keys; 0: no encryption
	Token              bool              `json:"token"`       // the API wants a token
	TLS                bool              `json:"tls"`         // the API serves HTTPS
	TokenRefused       uint64            `json:"token_refused"`
	ReplicationRefused uint64            `json:"replication_refused"` // sealed messages refused, all reasons
	RefusedBy          map[string]uint64 `json:"replication_refused_by,omitempty"`
}

// StoreStats is what the store holds.
type StoreStats struct {
	Keys       int    `json:"keys"`
	Tombstones int    `json:"tombstones"`
	DiskBytes  int64  `json:"disk_bytes"`
	Digest     string `json:"digest"` // hex hash of the whole digest: equal on converged nodes
	// Corrupt counts entries replaced by a peer's copy of the same version
	// with other bytes (store.Stats.Corrupt); Quarantined, stored records
	// set aside as damaged (undecodable, failing a checksum, or too far
	// ahead), kept on disk for inspection and refilled from peers.
	Corrupt     uint64 `json:"corrupt"`
	Quarantined int    `json:"quarantined"`
}

// ReplicationStats counts replication traffic and progress.
type ReplicationStats struct {
	MsgsSent         uint64 `json:"msgs_sent"`
	MsgsReceived     uint64 `json:"msgs_received"`
	BytesSent        uint64 `json:"bytes_sent"`
	BytesReceived    uint64 `json:"bytes_received"`
	PushesSent       uint64 `json:"pushes_sent"`
	PushesFailed     uint64 `json:"pushes_failed"`
	EntriesPushed    uint64 `json:"entries_pushed"`
	EntriesApplied   uint64 `json:"entries_applied"` // remote entries that changed this store
	SyncRounds       uint64 `json:"sync_rounds"`     // anti-entropy rounds this node started
	SyncRepaired     uint64 `json:"sync_repaired"`   // entries fetched by anti-entropy
	Pending          int    `json:"pending"`         // entries queued for peers, not yet sent
	LastSync         string `json:"last_sync,omitempty"`
	LagMillis        int64  `json:"lag_ms"` // age of the newest remote entry when it arrived
	LagAvgMillis     int64  `json:"lag_avg_ms"`
	MalformedDropped uint64 `json:"malformed_dropped"`
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"` // machine-readable: CodeKeyNotFound
}

// CodeKeyNotFound marks a 404 for a missing key, as opposed to an unknown
// node or path.
const CodeKeyNotFound = "key_not_found"

// HeaderClient marks a request from a peerctl client (the CLI, Client, a
// peer's transport). Its value is not checked: a page cannot send it
// cross-origin without a preflight, whatever its value.
const HeaderClient = "X-Peerctl-Client"

// Profiles lists the valid --profile values: memberlist's timing presets
// (daemon/config.go), as Info.Profile reports them.
var Profiles = []string{"local", "lan", "wan"}

// CheckResult is the outcome of a convergence check.
type CheckResult struct {
	Converged bool              `json:"converged"`
	Nodes     []string          `json:"nodes"`             // nodes compared
	Digests   map[string]string `json:"digests"`           // node -> digest hash
	Keys      map[string]int    `json:"keys"`              // node -> live keys
	Errors    map[string]string `json:"errors,omitempty"`  // nodes that could not be asked
	Skipped   map[string]string `json:"skipped,omitempty"` // members not compared -> why ("failed", "unreachable from n1: partitioned?")
	Reasons   []string          `json:"reasons,omitempty"` // why not converged, beyond divergent keys and errors
	Divergent int               `json:"divergent"`         // keys not identical everywhere
	Sample    []Divergence      `json:"sample,omitempty"`  // up to 20 of them
	Buckets   int               `json:"buckets,omitempty"` // digest buckets that differ
}

// Divergence is one key that nodes hold differently.
type Divergence struct {
	Key      string            `json:"key"`
	Versions map[string]string `json:"versions"` // node -> version ("" missing; "deleted@..." tombstone)
}
