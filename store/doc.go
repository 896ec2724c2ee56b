// Package store is peerctl's domain: the versioned key-value store every
// node holds and the replication core that keeps the copies equal.
//
// It holds the types (Entry, Version, Timestamp, Summary, Digest), the
// hybrid logical clock, last-writer-wins merge, the XOR-bucket digest, the
// anti-entropy exchange as pure functions over typed messages (sync.go) and
// the binary encoding of all of them (codec.go). Local writes return the
// entries to replicate; Merge takes peers' entries and returns what changed;
// the exchange says what to send and what to take. The daemon sends and
// receives; this package decides.
//
// What it may not do: import net, net/http or badger, read the clock except
// through Config.Now, start goroutines, draw random numbers (callers pass
// them in), or log. Persistence goes through the Backend interface:
// MemBackend beside it for tests, store/badger for real, both checked by
// store/storetest.
package store
