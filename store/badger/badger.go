// Package badger is a store.Backend on Badger v4, tuned for running many
// small agents on one machine.
//
// Layout: every entry is one Badger key, prefixEntry followed by the user
// key; its value is formatV1 followed by store.AppendRecord (the entry
// without its key, which the Badger key already holds). The key
// metaFormat records the layout version, so a later layout can refuse or
// migrate an old directory instead of misreading it. Badger keeps a single
// version of each key (NumVersionsToKeep 1) and conflict detection is off:
// store.Store serialises writes.
//
// Durability: with Options.SyncWrites false (the default) a committed Put
// survives the process being killed, because Badger writes its log through
// mmap, but not a power loss or kernel crash. Set SyncWrites for that, at
// the cost of one fsync per commit.
package badger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/peerctl/peerctl/store"
)

const (
	prefixEntry = 0x01
	formatV1    = 0x01
)

// metaFormat holds the layout version: one byte, formatV1.
var metaFormat = []byte{0x00, 'f', 'o', 'r', 'm', 'a', 't'}

// ErrLocked is returned (wrapped) by Open when another process, or another
// Backend in this process, has the directory open.
var ErrLocked = errors.New("data dir is in use by another running agent: stop it or choose another --data-dir")

// Options configures a Backend. The zero value is a tuned on-disk store
// without fsync and with Badger's logging silenced.
type Options struct {
	// SyncWrites fsyncs every commit, so that writes survive power loss
	// and not only a process crash.
	SyncWrites bool
	// InMemory keeps everything in memory and ignores dir: for tests.
	InMemory bool
	// Logger receives Badger's warnings and errors, and its informational
	// messages at debug level. Nil silences Badger.
	Logger *slog.Logger
}

// Backend is a store.Backend on a Badger database. It is safe for
// concurrent use.
type Backend struct {
	db       *badger.DB
	dir      string // "" in memory
	inMemory bool
	unlock   func() error

	mu     sync.Mutex // guards closed
	closed bool
}

var _ store.Backend = (*Backend)(nil)

// Open opens or creates the Badger database in dir. It fails with an error
// wrapping ErrLocked if the directory is already open, and with
// store.ErrCorrupt if the directory holds a layout it does not know.
func Open(dir string, opts Options) (*Backend, error) {
	b := &Backend{dir: dir, inMemory: opts.InMemory, unlock: func() error { return nil }}
	if opts.InMemory {
		b.dir = ""
	} else {
		if dir == "" {
			return nil, errors.New("badger: open: no directory given")
		}
		unlock, err := lockDir(dir)
		if err != nil {
			return nil, fmt.Errorf("badger: open %s: %w", dir, err)
		}
		b.unlock = unlock
	}
	db, err := badger.Open(tunedOptions(b.dir, opts))
	if err != nil {
		b.unlock()
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			// Platforms without lockDir rely on Badger's own lock.
			err = ErrLocked
		}
		return nil, fmt.Errorf("badger: open %s: %w", dir, err)
	}
	b.db = db
	if err := b.checkFormat(); err != nil {
		db.Close()
		b.unlock()
		return nil, fmt.Errorf("badger: open %s: %w", dir, err)
	}
	return b, nil
}

// tunedOptions is the low-memory configuration: a few MiB of memtables
// and cache per instance instead of Badger's ~600 MiB defaults, so that
// dozens of agents fit on one laptop (see shared/FACTS.md for measurements).
func tunedOptions(dir string, opts Options) badger.Options {
	o := badger.DefaultOptions(dir).
		WithInMemory(opts.InMemory).
		WithSyncWrites(opts.SyncWrites).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(1 << 20).
		WithBaseLevelSize(4 << 20).
		WithValueThreshold(1 << 10). // must stay <= 15% of MemTableSize
		WithValueLogFileSize(16 << 20).
		WithNumCompactors(2). // 1 is rejected; 0 disables compaction
		WithCompression(options.Snappy).
		WithBlockCacheSize(8 << 20). // required with compression
		WithIndexCacheSize(0).
		WithNumGoroutines(2).
		WithLogger(slogger{opts.Logger})
	if opts.InMemory {
		// In memory Badger keeps every value in the LSM tree but still
		// rejects values above ValueThreshold (v4.9.6 reads the threshold
		// before overriding it): raise it past store.MaxValueLen.
		o = o.WithValueThreshold(2 * store.MaxValueLen)
	}
	return o
}

func (b *Backend) checkFormat() error {
	return b.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(metaFormat)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set(metaFormat, []byte{formatV1})
		}
		if err != nil {
			return fmt.Errorf("read format: %w", err)
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("read format: %w", err)
		}
		if len(v) != 1 || v[0] != formatV1 {
			return fmt.Errorf("%w: unknown data format %x", store.ErrCorrupt, v)
		}
		return nil
	})
}

func entryKey(key string) []byte {
	k := make([]byte, 0, 1+len(key))
	k = append(k, prefixEntry)
	return append(k, key...)
}

func encodeValue(e store.Entry) []byte {
	v := make([]byte, 0, 1+8+1+len(e.Version.Node)+1+3+len(e.Value))
	v = append(v, formatV1)
	return store.AppendRecord(v, e)
}

func decodeValue(key string, v []byte) (store.Entry, error) {
	if len(v) == 0 || v[0] != formatV1 {
		return store.Entry{}, fmt.Errorf("%w: stored entry %q has unknown format", store.ErrCorrupt, key)
	}
	e, err := store.DecodeRecord(key, v[1:])
	if err != nil {
		return store.Entry{}, fmt.Errorf("stored entry %q: %w", key, err)
	}
	return e, nil
}

// Load calls fn for every entry in key order, inside one read transaction
// (a consistent snapshot). It stops at fn's first error and returns it.
func (b *Backend) Load(fn func(store.Entry) error) error {
	return b.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{
			PrefetchValues: true,
			PrefetchSize:   64,
			Prefix:         []byte{prefixEntry},
		})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			key := string(item.Key()[1:])
			var e store.Entry
			err := item.Value(func(v []byte) error {
				var err error
				e, err = decodeValue(key, v) // DecodeRecord copies the value
				return err
			})
			if err != nil {
				return fmt.Errorf("badger: load: %w", err)
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
}

// Get returns the entry for key, tombstones included, or store.ErrNotFound.
func (b *Backend) Get(key string) (store.Entry, error) {
	var e store.Entry
	err := b.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(entryKey(key))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			var err error
			e, err = decodeValue(key, v)
			return err
		})
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return store.Entry{}, store.ErrNotFound
	case err != nil:
		return store.Entry{}, fmt.Errorf("badger: get %q: %w", key, b.mapErr(err))
	}
	return e, nil
}

// Put stores the entries in one transaction. A batch larger than one
// transaction (about 600 KiB of small entries with this tuning) is split
// into several, committed in order; if a later one fails, the earlier ones
// stay stored, which is a valid state because entries are independent.
func (b *Backend) Put(entries []store.Entry) error {
	err := b.batch(len(entries), func(txn *badger.Txn, i int) error {
		e := entries[i]
		return txn.SetEntry(badger.NewEntry(entryKey(e.Key), encodeValue(e)))
	})
	if err != nil {
		return fmt.Errorf("badger: put %d entries: %w", len(entries), err)
	}
	return nil
}

// Delete removes the keys, splitting a very large batch as Put does.
func (b *Backend) Delete(keys []string) error {
	err := b.batch(len(keys), func(txn *badger.Txn, i int) error {
		return txn.Delete(entryKey(keys[i]))
	})
	if err != nil {
		return fmt.Errorf("badger: delete %d keys: %w", len(keys), err)
	}
	return nil
}

// batch calls op for 0..n-1 in write transactions, committing and starting
// a new one whenever the current one is full.
func (b *Backend) batch(n int, op func(txn *badger.Txn, i int) error) error {
	if n == 0 {
		return nil
	}
	txn := b.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for i := 0; i < n; i++ {
		err := op(txn, i)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return b.mapErr(err)
			}
			txn = b.db.NewTransaction(true)
			err = op(txn, i)
		}
		if err != nil {
			return b.mapErr(err)
		}
	}
	return b.mapErr(txn.Commit())
}

// mapErr reports use after Close as store.ErrClosed.
func (b *Backend) mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, badger.ErrDBClosed) || b.db.IsClosed() {
		return fmt.Errorf("%w: %w", store.ErrClosed, err)
	}
	return err
}

// RunGC rewrites value-log files of which at least half is garbage, until
// none is left or it has rewritten a few; the daemon calls it on a ticker
// (every few minutes). It returns nil when there is nothing to collect,
// when another RunGC is running, and in memory. It may take a while and
// does not block writers.
func (b *Backend) RunGC() error {
	if b.inMemory {
		return nil
	}
	for i := 0; i < 8; i++ {
		err := b.db.RunValueLogGC(0.5)
		switch {
		case err == nil:
			continue // rewrote one file; try the next
		case errors.Is(err, badger.ErrNoRewrite):
			return nil
		case errors.Is(err, badger.ErrRejected):
			if b.db.IsClosed() {
				return fmt.Errorf("badger: gc: %w", store.ErrClosed)
			}
			return nil // another GC is running
		default:
			return fmt.Errorf("badger: gc: %w", b.mapErr(err))
		}
	}
	return nil
}

// Size returns the bytes the database's files occupy on disk (tables,
// value log, memtable logs and manifest), as du counts them: Badger
// preallocates its logs sparsely, so their apparent size overstates it.
// It returns 0 in memory.
func (b *Backend) Size() int64 {
	if b.inMemory {
		return 0
	}
	return dirSize(b.dir)
}

// Close flushes and closes the database and releases the directory. A
// second Close returns nil.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.db.Close()
	if uerr := b.unlock(); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("badger: close: %w", err)
	}
	return nil
}

// slogger routes Badger's log lines to a slog.Logger.
type slogger struct{ l *slog.Logger }

func (s slogger) log(level slog.Level, format string, args []any) {
	if s.l == nil {
		return
	}
	s.l.Log(context.Background(), level, strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}

func (s slogger) Errorf(f string, a ...any)   { s.log(slog.LevelError, f, a) }
func (s slogger) Warningf(f string, a ...any) { s.log(slog.LevelWarn, f, a) }
func (s slogger) Infof(f string, a ...any)    { s.log(slog.LevelDebug, f, a) }
func (s slogger) Debugf(string, ...any)       {}
