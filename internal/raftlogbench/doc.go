// Package raftlogbench holds the measurement behind peerctl's choice of raft
// log store (BENCHMARKS.md, "Which raft log store"): append + fsync latency
// of raft-wal, a bbolt store and a badger store. It has no code of its own;
// the measurement is a test that runs only when asked:
//
//	PEERCTL_RAFT_LOGBENCH=1 go test -run TestRaftLogBench -v ./internal/raftlogbench
//
// It lives in peerctl's one module. raft-boltdb/v2 (v2.3.1) cannot: it
// imports github.com/hashicorp/go-metrics/compat, which go-metrics v0.7.0
// (the version peerctl builds with) no longer has. The bolt candidate is
// therefore a log store written here directly on go.etcd.io/bbolt, laid
// out and synced as raft-boltdb's is: one bucket, big-endian index keys,
// msgpack-encoded entries, one fsynced transaction per StoreLogs.
package raftlogbench
