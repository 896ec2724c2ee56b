package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/peerctl/peerctl/store"
	"github.com/peerctl/peerctl/store/badger"
)

// Disk checks: free space before writes, the clean-stop record, and
// --resync.
//
// Free space. Badger writes through mmapped, sparsely preallocated files:
// a memtable log is mapped at 2 × MemTableSize (8 MiB here) and a value
// log at 2 × ValueLogFileSize (32 MiB), and a flush or compaction writes
// whole tables (1–4 MiB each). When the disk fills, a store into such a
// mapping cannot be backed by a block and the kernel sends SIGBUS: the
// process dies at once, and again at every start while the disk stays
// full. So the agent stops writing well before that: diskGuard refuses
// every write (local and merged from peers) with store.ErrNoSpace while
// the data dir's file system has less than Config.MinFreeSpace available
// (default 64 MiB: the two memtable logs, one value log and room for a
// flush). Reads keep working; writes resume by themselves once space is
// freed, and anti-entropy then fetches what peers wrote meanwhile. Below
// openFloor at start, the store is opened read-only (see openStore).

// DefaultMinFreeSpace is the default Config.MinFreeSpace.
const DefaultMinFreeSpace = 64 << 20

// openFloor: with less free space than this at start, the store is opened
// read-only, because opening for writes creates a value log and memtable
// log and may flush the replayed memtables (up to ~16 MiB).
const openFloor = 16 << 20

// diskRecheck is how long a free-space reading is reused: one statfs per
// second, not one per write. Between readings the guard subtracts what it
// let through (twice the bytes, for Badger's log plus value log), and
// reads again early once that reaches a quarter of the minimum, so a fast
// writer cannot outrun a stale reading.
const diskRecheck = time.Second

// diskGuard refuses writes while the data dir's disk is nearly full. Its
// check is safe for concurrent use.
type diskGuard struct {
	dir  string
	min  uint64
	now  func() time.Time
	stat func(dir string) (free uint64, ok bool, err error)
	log  *slog.Logger

	mu      sync.Mutex // guards the fields below
	checked time.Time
	free    uint64
	known   bool
	since   uint64 // bytes let through since the reading (estimated)
	low     bool   // last reading was below min
}

func newDiskGuard(dir string, min uint64, log *slog.Logger) *diskGuard {
	return &diskGuard{dir: dir, min: min, now: time.Now, stat: freeSpace, log: log}
}

// read returns the available bytes, from a reading at most diskRecheck
// old, and whether they are known (not on every OS, not on a statfs
// error). It logs when the disk becomes low and when it recovers.
func (g *diskGuard) read() (uint64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.readLocked()
}

func (g *diskGuard) readLocked() (uint64, bool) {
	now := g.now()
	if !g.checked.IsZero() && now.Sub(g.checked) < diskRecheck && g.since < g.min/4 {
		if g.since >= g.free {
			return 0, g.known
		}
		return g.free - g.since, g.known
	}
	g.checked, g.since = now, 0
	free, ok, err := g.stat(g.dir)
	if err != nil {
		g.log.Warn("cannot read free disk space; writes are not checked", "dir", g.dir, "err", err)
		ok = false
	}
	g.free, g.known = free, ok
	low := ok && free < g.min
	switch {
	case low && !g.low:
		g.log.Error("disk nearly full: refusing writes until space is freed", "dir", g.dir, "free", mib(free), "min_free_space", mib(g.min))
	case !low && g.low:
		g.log.Info("disk space back: accepting writes", "dir", g.dir, "free", mib(free))
	}
	g.low = low
	return free, ok
}

// check returns an error wrapping store.ErrNoSpace if writing n more
// bytes would leave less than the minimum free. It is Badger's
// Options.BeforeWrite.
func (g *diskGuard) check(n int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	free, ok := g.readLocked()
	cost := 2 * uint64(max(n, 0))
	if ok && (free < cost || free-cost < g.min) {
		return fmt.Errorf("%w: %s free on the disk of %s, the minimum is %s (--min-free-mib): free some space, writes resume by themselves",
			store.ErrNoSpace, mib(free), g.dir, mib(g.min))
	}
	g.since += cost
	return nil
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// cleanStopFile, in the data dir, records the number of entries at the
// last clean stop. It is removed at start, so it describes only a stop
// immediately followed by this start.
const cleanStopFile = "clean-stop.json"

// maxCleanStopSize bounds what is read of cleanStopFile.
const maxCleanStopSize = 4 << 10

// cleanStop is the content of cleanStopFile.
type cleanStop struct {
	Keys       int       `json:"keys"`
	Tombstones int       `json:"tombstones"`
	StoppedAt  time.Time `json:"stopped_at"`
}

// decodeCleanStop parses a clean-stop record, refusing anything that is
// not one (unknown fields, negative counts, trailing data).
func decodeCleanStop(b []byte) (cleanStop, error) {
	var cs cleanStop
	if len(b) > maxCleanStopSize {
		return cs, fmt.Errorf("%s is %d bytes, more than %d", cleanStopFile, len(b), maxCleanStopSize)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&cs); err != nil {
		return cleanStop{}, fmt.Errorf("%s: %w", cleanStopFile, err)
	}
	if d.More() {
		return cleanStop{}, fmt.Errorf("%s: trailing data", cleanStopFile)
	}
	if cs.Keys < 0 || cs.Tombstones < 0 {
		return cleanStop{}, fmt.Errorf("%s: negative count", cleanStopFile)
	}
	return cs, nil
}

// readCleanStop reads and removes the clean-stop record. It returns
// ok=false if there is none (the last stop was not clean, or this is the
// first start).
func readCleanStop(dataDir string) (cs cleanStop, ok bool, err error) {
	p := filepath.Join(dataDir, cleanStopFile)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return cs, false, nil
	}
	if err != nil {
		return cs, false, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCleanStopSize+1))
	f.Close()
	if err != nil {
		return cs, false, err
	}
	if err := os.Remove(p); err != nil {
		return cs, false, fmt.Errorf("remove %s: %w", p, err)
	}
	cs, err = decodeCleanStop(b)
	return cs, err == nil, err
}

// writeCleanStop writes the record atomically (temporary file, fsync,
// rename).
func writeCleanStop(dataDir string, cs cleanStop) error {
	b, err := json.Marshal(cs)
	if err != nil {
		return err
	}
	p := filepath.Join(dataDir, cleanStopFile)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// moveAside moves the store directory dir to dir.damaged-TIMESTAMP and
// returns the new path ("" if there was nothing to move). It never
// deletes anything, and refuses while an agent has the store open.
func moveAside(dir string, now time.Time) (string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(ents) == 0) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	to := dir + ".damaged-" + now.UTC().Format("20060102T150405.000Z")
	if err := badger.MoveAside(dir, to); err != nil {
		return "", err
	}
	return to, nil
}
