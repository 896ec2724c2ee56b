// Command raftlogbench measures the raft log stores peerctl could use:
// append + fsync latency for single entries and batches of 64, and the
// process's RSS after opening the store and after the appends. Each store
// runs in its own process (run it once per store) so RSS is its own.
// It is a module of its own: raft-boltdb/v2 needs an older go-metrics than
// the one peerctl builds with. Results and the choice: BENCHMARKS.md.
//
//	go run . -store wal|bolt|badger [-n 2000] [-dir DIR]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
)

func rss() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return "?"
}

// badgerLog is a minimal badger-backed raft.LogStore with SyncWrites, for
// the comparison only.
type badgerLog struct{ db *badger.DB }

func key(i uint64) []byte {
	return []byte(fmt.Sprintf("l%020d", i))
}
func (b *badgerLog) FirstIndex() (uint64, error) { return 0, nil }
func (b *badgerLog) LastIndex() (uint64, error)  { return 0, nil }
func (b *badgerLog) GetLog(uint64, *raft.Log) error {
	return raft.ErrLogNotFound
}
func (b *badgerLog) StoreLog(l *raft.Log) error { return b.StoreLogs([]*raft.Log{l}) }
func (b *badgerLog) StoreLogs(ls []*raft.Log) error {
	return b.db.Update(func(txn *badger.Txn) error {
		for _, l := range ls {
			if err := txn.Set(key(l.Index), l.Data); err != nil {
				return err
			}
		}
		return nil
	})
}
func (b *badgerLog) DeleteRange(min, max uint64) error { return nil }

func main() {
	which := flag.String("store", "wal", "wal, bolt or badger")
	n := flag.Int("n", 2000, "appends of each kind")
	dir := flag.String("dir", "", "directory (default: a temp dir on the same disk as /tmp)")
	flag.Parse()
	d := *dir
	if d == "" {
		d, _ = os.MkdirTemp("", "raftlogbench")
		defer os.RemoveAll(d)
	}
	runtime.GC()
	base := rss()
	var ls raft.LogStore
	switch *which {
	case "wal":
		w, err := wal.Open(d, wal.WithSegmentSize(16<<20))
		check(err)
		defer w.Close()
		ls = w
	case "bolt":
		s, err := raftboltdb.NewBoltStore(filepath.Join(d, "raft.db"))
		check(err)
		defer s.Close()
		ls = s
	case "badger":
		o := badger.DefaultOptions(d).WithSyncWrites(true).WithLogger(nil).
			WithMemTableSize(4 << 20).WithNumMemtables(2).WithNumLevelZeroTables(2).WithNumLevelZeroTablesStall(8).
			WithBaseTableSize(1 << 20).WithBaseLevelSize(4 << 20).WithValueThreshold(1 << 10).
			WithValueLogFileSize(16 << 20).WithNumCompactors(2).WithBlockCacheSize(8 << 20)
		db, err := badger.Open(o)
		check(err)
		defer db.Close()
		ls = &badgerLog{db: db}
	default:
		check(fmt.Errorf("unknown store %q", *which))
	}
	opened := rss()
	val := make([]byte, 100)
	idx := uint64(1)
	measure := func(batch int) (p50, p99 time.Duration, perSec float64) {
		lat := make([]time.Duration, 0, *n)
		t0 := time.Now()
		for i := 0; i < *n; i++ {
			logs := make([]*raft.Log, batch)
			for j := range logs {
				logs[j] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: val}
				idx++
			}
			s := time.Now()
			check(ls.StoreLogs(logs))
			lat = append(lat, time.Since(s))
		}
		el := time.Since(t0)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return lat[len(lat)/2], lat[len(lat)*99/100], float64(*n*batch) / el.Seconds()
	}
	p50a, p99a, ra := measure(1)
	p50b, p99b, rb := measure(64)
	debug.FreeOSMemory()
	fmt.Printf("%-7s 1-entry append+fsync p50 %v p99 %v (%.0f entries/s); 64-entry batch p50 %v p99 %v (%.0f entries/s); RSS base %s, opened %s, after %d entries %s\n",
		*which, p50a.Round(time.Microsecond), p99a.Round(time.Microsecond), ra, p50b.Round(time.Microsecond), p99b.Round(time.Microsecond), rb, base, opened, idx-1, rss())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftlogbench:", err)
		os.Exit(1)
	}
}
