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
//
// Integrity: Badger verifies the checksum of every table block it reads
// from disk and of every value-log entry it reads; a mismatch is returned
// as store.ErrCorrupt, never as a value. Open checks the directory before
// Badger opens it (see verifyDir) and refuses damaged files with
// ErrDamaged. Load sets aside records that fail to decode or to verify
// under the prefix prefixQuarantine (see Quarantine), so one bad record
// never stops a node from starting and anti-entropy refills it.
package badger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

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
	// Logger receives Badger's warnings and errors, its informational
	// messages at debug level, and a warning for every record Load
	// quarantines. Nil silences them.
	Logger *slog.Logger
	// BeforeWrite, if set, is called before every Put and Quarantine with
	// the bytes about to be written (keys and encoded values); an error
	// fails the write before Badger sees it. The daemon refuses writes
	// there while the disk is nearly full (store.ErrNoSpace).
	BeforeWrite func(n int) error
	// ReadOnly opens the store without writing anything: no compaction,
	// no new logs. Put, Delete and Quarantine fail with store.ErrNoSpace.
	// For a start on a full disk.
	ReadOnly bool
}

// Backend is a store.Backend on a Badger database. It is safe for
// concurrent use.
type Backend struct {
	db       *badger.DB
	dir      string // "" in memory
	inMemory bool
	unlock   func() error
	log      *slog.Logger      // never nil
	before   func(n int) error // nil: no check
	readOnly bool

	quarantined atomic.Int64 // records under prefixQuarantine

	mu     sync.Mutex // guards closed
	closed bool
}

var _ store.Backend = (*Backend)(nil)

// Open opens or creates the Badger database in dir. It fails with an error
// wrapping ErrLocked if the directory is already open, ErrDamaged if its
// files are damaged (including a panic inside Badger's open), and
// store.ErrCorrupt if the directory holds a layout it does not know.
func Open(dir string, opts Options) (*Backend, error) {
	b := &Backend{dir: dir, inMemory: opts.InMemory, unlock: func() error { return nil },
		log: opts.Logger, before: opts.BeforeWrite, readOnly: opts.ReadOnly && !opts.InMemory}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if opts.InMemory {
		b.dir = ""
	}
	bopts := tunedOptions(b.dir, opts)
	if !opts.InMemory {
		if dir == "" {
			return nil, errors.New("badger: open: no directory given")
		}
		unlock, err := lockDir(dir)
		if err != nil {
			return nil, fmt.Errorf("badger: open %s: %w", dir, err)
		}
		b.unlock = unlock
		if err := verifyDir(dir, bopts); err != nil && !noVerify {
			b.unlock()
			return nil, fmt.Errorf("badger: open %s: %w", dir, err)
		}
	}
	db, err := openDB(bopts)
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
	b.quarantined.Store(int64(b.countPrefix(prefixQuarantine)))
	return b, nil
}

// openDB calls badger.Open and turns a panic in the calling goroutine
// into an error wrapping ErrDamaged. (verifyDir has already caught the
// panics Badger raises in its own goroutines.)
func openDB(o badger.Options) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: badger panicked while opening: %s", ErrDamaged, firstLine(fmt.Sprint(r)))
		}
	}()
	return badger.Open(o)
}

// countPrefix counts the keys under prefix (keys only, no values read).
func (b *Backend) countPrefix(prefix byte) int {
	n := 0
	b.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n
}

// noVerify turns checksum verification and verifyDir off; only the
// benchmarks that measure their cost set it.
var noVerify bool

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
		WithLogger(slogger{opts.Logger}).
		// Verify a table block's checksum whenever it is read from disk
		// (cached blocks are not re-checked), and every value read from
		// the value log. Open verifies whole tables itself (verifyDir).
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true).
		WithReadOnly(opts.ReadOnly && !opts.InMemory)
	if noVerify {
		o = o.WithChecksumVerificationMode(options.NoVerification).WithVerifyValueChecksum(false)
	}
	if opts.InMemory {
		// In memory Badger keeps every value in the LSM tree but still
		// rejects values above ValueThreshold (v4.9.6 reads the threshold
		// before overriding it): raise it past store.MaxValueLen.
		o = o.WithValueThreshold(2 * store.MaxValueLen)
	}
	return o
}

func (b *Backend) checkFormat() error {
	run := b.db.Update
	if b.readOnly {
		run = b.db.View
	}
	return run(func(txn *badger.Txn) error {
		item, err := txn.Get(metaFormat)
		if errors.Is(err, badger.ErrKeyNotFound) {
			if b.readOnly {
				return nil
			}
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
	if len(v) == 0 {
		// Badger's Item.Value logs a failed value-log read (a checksum
		// mismatch included) and yields no bytes instead of an error
		// (iterator.go yieldItemValue); every record has a format byte.
		return store.Entry{}, fmt.Errorf("%w: stored entry %q is unreadable: its value failed badger's checksum or read", store.ErrCorrupt, key)
	}
	if v[0] != formatV1 {
		return store.Entry{}, fmt.Errorf("%w: stored entry %q has unknown format", store.ErrCorrupt, key)
	}
	e, err := store.DecodeRecord(key, v[1:])
	if err != nil {
		return store.Entry{}, fmt.Errorf("stored entry %q: %w", key, err)
	}
	return e, nil
}

// maxDamagedPerLoad bounds how many damaged records one Load sets aside;
// more means the store as a whole is damaged (resync it).
const maxDamagedPerLoad = 10000

// Load calls fn for every entry in key order, inside one read transaction
// (a consistent snapshot). It stops at fn's first error and returns it.
//
// A record that fails its checksum or does not decode is not passed to
// fn: after the scan, Load logs it with its key and quarantines it (see
// Quarantine), so the node starts without it and anti-entropy fetches it
// from a peer. If quarantining fails (a full disk, a read-only store) the
// record stays and is skipped again at the next Load. More than
// maxDamagedPerLoad damaged records fail Load with ErrDamaged.
func (b *Backend) Load(fn func(store.Entry) error) error {
	type damaged struct {
		key string
		err error
	}
	var bad []damaged
	err := b.db.View(func(txn *badger.Txn) error {
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
				err = b.mapErr(err)
				if !errors.Is(err, store.ErrCorrupt) {
					return fmt.Errorf("badger: load %q: %w", key, err)
				}
				if len(bad) == maxDamagedPerLoad {
					return fmt.Errorf("badger: load: more than %d damaged records: %w", maxDamagedPerLoad, ErrDamaged)
				}
				bad = append(bad, damaged{key, err})
				continue
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range bad {
		if qerr := b.Quarantine(d.key, d.err); qerr != nil {
			b.log.Error("damaged record skipped but not quarantined; it is skipped again at the next start",
				"key", d.key, "damage", d.err, "err", qerr)
			continue
		}
		b.log.Warn("damaged record quarantined; anti-entropy fetches a good copy from a peer",
			"key", d.key, "damage", d.err)
	}
	return nil
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

// Put stores the entries in one transaction. It first calls
// Options.BeforeWrite and fails with its error. A batch larger than one
// transaction (about 600 KiB of small entries with this tuning) is split
// into several, committed in order; if a later one fails, the earlier ones
// stay stored, which is a valid state because entries are independent.
func (b *Backend) Put(entries []store.Entry) error {
	n := 0
	for _, e := range entries {
		n += 2*len(e.Key) + len(e.Version.Node) + len(e.Value) + 16
	}
	if err := b.canWrite(n); err != nil {
		return fmt.Errorf("badger: put %d entries: %w", len(entries), err)
	}
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
	if b.readOnly && len(keys) > 0 {
		return fmt.Errorf("badger: delete %d keys: %w", len(keys), errReadOnly)
	}
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

// errReadOnly fails writes to a store opened with Options.ReadOnly.
var errReadOnly = fmt.Errorf("%w: the store was opened read-only because the disk was full at start; restart the agent once space is freed", store.ErrNoSpace)

// canWrite fails when the store is read-only or BeforeWrite refuses n
// bytes.
func (b *Backend) canWrite(n int) error {
	if b.readOnly {
		return errReadOnly
	}
	if b.before != nil {
		return b.before(n)
	}
	return nil
}

// mapErr reports use after Close as store.ErrClosed, and damage that
// Badger detected (a checksum mismatch, a block that does not decode) as
// store.ErrCorrupt. Badger formats its errors with %v, not %w, so damage
// is recognised by its messages (badger v4.9.6 value.go Read, table.go
// block and verifyCheckSum).
func (b *Backend) mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, store.ErrCorrupt) {
		return err
	}
	if isDamage(err) {
		return fmt.Errorf("%w: %s", store.ErrCorrupt, badgerMsg(err))
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
	if b.inMemory || b.readOnly {
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
