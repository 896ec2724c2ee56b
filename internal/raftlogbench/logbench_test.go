package raftlogbench

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	bolt "go.etcd.io/bbolt"
)

const (
	envRun   = "PEERCTL_RAFT_LOGBENCH"       // 1: run the measurement
	envStore = "PEERCTL_RAFT_LOGBENCH_STORE" // set in the child: which store
	envN     = "PEERCTL_RAFT_LOGBENCH_N"     // appends of each kind (default 1000)
	envRound = "PEERCTL_RAFT_LOGBENCH_ROUNDS"
)

// TestRaftLogBench measures append + fsync of 100-byte entries (n
// single-entry appends, then n batches of 64) in raft-wal, bbolt and
// badger, each store in a child process of its own so that its RSS is its
// own, rounds alternated (wal, bolt, badger, wal, ...). It prints one line
// per store and round. Off unless PEERCTL_RAFT_LOGBENCH=1.
func TestRaftLogBench(t *testing.T) {
	if s := os.Getenv(envStore); s != "" {
		child(t, s)
		return
	}
	if os.Getenv(envRun) != "1" {
		t.Skip("raft log store measurement: set " + envRun + "=1 to run it (prints figures, takes ~1 min)")
	}
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv(envRound)); err == nil && v > 0 && v <= 20 {
		rounds = v
	}
	for r := 0; r < rounds; r++ {
		for _, s := range []string{"wal", "bolt", "badger"} {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRaftLogBench$", "-test.v")
			cmd.Env = append(os.Environ(), envStore+"="+s)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", s, err, out)
			}
			for _, l := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(l, "RESULT ") {
					t.Logf("round %d %s", r+1, strings.TrimPrefix(l, "RESULT "))
				}
			}
		}
	}
}

func child(t *testing.T, which string) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv(envN)); err == nil && v > 0 && v <= 100000 {
		n = v
	}
	d := t.TempDir()
	runtime.GC()
	var ls raft.LogStore
	switch which {
	case "wal":
		// As daemon/raft.go opens it.
		w, err := wal.Open(d, wal.WithSegmentSize(16<<20))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		ls = w
	case "bolt":
		s, err := openBoltLog(filepath.Join(d, "raft.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.db.Close() })
		ls = s
	case "badger":
		o := badger.DefaultOptions(d).WithSyncWrites(true).WithLogger(nil).
			WithMemTableSize(4 << 20).WithNumMemtables(2).WithNumLevelZeroTables(2).WithNumLevelZeroTablesStall(8).
			WithBaseTableSize(1 << 20).WithBaseLevelSize(4 << 20).WithValueThreshold(1 << 10).
			WithValueLogFileSize(16 << 20).WithNumCompactors(2).WithBlockCacheSize(8 << 20)
		db, err := badger.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		ls = &badgerLog{db: db}
	default:
		t.Fatalf("unknown store %q", which)
	}
	opened := rss(t)
	val := make([]byte, 100)
	idx := uint64(1)
	measure := func(batch int) (p50, p99 time.Duration, perSec float64) {
		lat := make([]time.Duration, 0, n)
		t0 := time.Now()
		for i := 0; i < n; i++ {
			logs := make([]*raft.Log, batch)
			for j := range logs {
				logs[j] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: val}
				idx++
			}
			s := time.Now()
			if err := ls.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(s))
		}
		el := time.Since(t0)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return lat[len(lat)/2], lat[len(lat)*99/100], float64(n*batch) / el.Seconds()
	}
	p50a, p99a, ra := measure(1)
	p50b, p99b, rb := measure(64)
	// Read back the last entry: each store must hold what it acknowledged.
	var last raft.Log
	if err := ls.GetLog(idx-1, &last); err != nil || last.Index != idx-1 || len(last.Data) != len(val) {
		t.Fatalf("%s: GetLog(%d) = %+v, %v", which, idx-1, last, err)
	}
	debug.FreeOSMemory()
	fmt.Printf("RESULT %-6s 1 entry p50 %v p99 %v (%.0f entries/s); 64-entry batch p50 %v p99 %v (%.0f entries/s); RSS growth %.1f MB over %d entries\n",
		which, p50a.Round(time.Microsecond), p99a.Round(time.Microsecond), ra, p50b.Round(time.Microsecond), p99b.Round(time.Microsecond), rb,
		float64(rss(t)-opened)/1024, idx-1)
}

// rss is the process's VmRSS in KiB.
func rss(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("raft log store measurement needs /proc/self/status for RSS: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	tb.Skip("raft log store measurement: no VmRSS in /proc/self/status")
	return 0
}

func key(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

func encode(l *raft.Log) ([]byte, error) {
	var b []byte
	err := codec.NewEncoderBytes(&b, &codec.MsgpackHandle{}).Encode(l)
	return b, err
}

func decode(b []byte, l *raft.Log) error {
	return codec.NewDecoderBytes(b, &codec.MsgpackHandle{}).Decode(l)
}

// boltLog is a raft.LogStore on bbolt as raft-boltdb/v2 lays it out: one
// bucket, big-endian index keys, msgpack entries, one transaction (fsync
// on commit) per StoreLogs.
type boltLog struct{ db *bolt.DB }

var bucketLogs = []byte("logs")

func openBoltLog(path string) (*boltLog, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketLogs)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	return &boltLog{db: db}, nil
}

func (b *boltLog) FirstIndex() (uint64, error) {
	var i uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().First(); k != nil {
			i = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return i, err
}

func (b *boltLog) LastIndex() (uint64, error) {
	var i uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().Last(); k != nil {
			i = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return i, err
}

func (b *boltLog) GetLog(idx uint64, l *raft.Log) error {
	return b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLogs).Get(key(idx))
		if v == nil {
			return raft.ErrLogNotFound
		}
		return decode(v, l)
	})
}

func (b *boltLog) StoreLog(l *raft.Log) error { return b.StoreLogs([]*raft.Log{l}) }

func (b *boltLog) StoreLogs(ls []*raft.Log) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketLogs)
		for _, l := range ls {
			v, err := encode(l)
			if err != nil {
				return err
			}
			if err := bk.Put(key(l.Index), v); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *boltLog) DeleteRange(lo, hi uint64) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		for k, _ := c.Seek(key(lo)); k != nil && binary.BigEndian.Uint64(k) <= hi; k, _ = c.Next() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// badgerLog is a badger-backed raft.LogStore with SyncWrites (fsync per
// transaction), the same key and entry encoding as boltLog.
type badgerLog struct{ db *badger.DB }

func (b *badgerLog) edge(reverse bool) (uint64, error) {
	var i uint64
	err := b.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues, o.Reverse = false, reverse
		it := txn.NewIterator(o)
		defer it.Close()
		if it.Rewind(); it.Valid() {
			i = binary.BigEndian.Uint64(it.Item().Key())
		}
		return nil
	})
	return i, err
}

func (b *badgerLog) FirstIndex() (uint64, error) { return b.edge(false) }
func (b *badgerLog) LastIndex() (uint64, error)  { return b.edge(true) }

func (b *badgerLog) GetLog(idx uint64, l *raft.Log) error {
	return b.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key(idx))
		if err == badger.ErrKeyNotFound {
			return raft.ErrLogNotFound
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { return decode(v, l) })
	})
}

func (b *badgerLog) StoreLog(l *raft.Log) error { return b.StoreLogs([]*raft.Log{l}) }

func (b *badgerLog) StoreLogs(ls []*raft.Log) error {
	return b.db.Update(func(txn *badger.Txn) error {
		for _, l := range ls {
			v, err := encode(l)
			if err != nil {
				return err
			}
			if err := txn.Set(key(l.Index), v); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *badgerLog) DeleteRange(lo, hi uint64) error {
	return b.db.Update(func(txn *badger.Txn) error {
		for i := lo; i <= hi; i++ {
			if err := txn.Delete(key(i)); err != nil {
				return err
			}
		}
		return nil
	})
}
