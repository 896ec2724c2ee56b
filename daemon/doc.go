// Package daemon is the I/O shell around package store: one Agent per
// process runs serf and memberlist for membership, the replicator that
// pushes writes and runs anti-entropy, the HTTP API that peerctl's commands
// call, the fault layer, the fault table, and the logs.
//
// Every byte a node sends or receives for replication passes one seam, the
// Transport (transport.go): httpTransport owns both directions of the
// replication protocol (its /v1/internal/* endpoints included) and hands
// what arrives to the replicator through Handler. The fault layer
// (faultnet.go) wraps that seam and memberlist's transport, and applies
// every send and receive rule in that one file. The HTTP API itself stays
// outside the fault layer, so a faulted node can always be asked and healed.
//
// What it may not do: hold replication rules of its own (they are store's),
// or be imported by peerctl's client commands (they speak internal/api).
// Only daemon logs, through the injected *slog.Logger.
package daemon
