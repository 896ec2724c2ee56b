package store

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// Backend persists entries. Implementations: MemBackend (tests) and
// store/badger; store/storetest checks both against one suite. A Backend
// need not be safe for concurrent writers: Store serialises Put and Delete.
// Get may run concurrently with them. A Backend does not retain the slices
// it is given, and the entries it returns belong to the caller. It does not
// validate entries: Store does that before writing.
type Backend interface {
	// Load calls fn once for every stored entry, in any order, and stops
	// at the first error fn returns, returning it.
	Load(fn func(Entry) error) error
	// Get returns the entry for key, tombstones included, or ErrNotFound.
	Get(key string) (Entry, error)
	// Put stores the entries, replacing earlier ones with the same key.
	// It is atomic unless the batch is too big for one transaction (see
	// the implementation); the entries are independent, so any subset of
	// them that lands is a valid state.
	Put(entries []Entry) error
	// Delete removes the keys (purged tombstones); missing keys are not an
	// error. Like Put it may split a very large batch.
	Delete(keys []string) error
	// Size returns the bytes the backend uses on disk (0 if in memory).
	Size() int64
	// Close releases the backend. A second Close returns nil.
	Close() error
}

// Quarantiner is implemented by a Backend that can set a damaged record aside.
type Quarantiner interface {
	// Quarantine moves key's stored record out of the live keyspace, keeping its bytes for inspection.
	Quarantine(key string, reason error) error
}

// QuarantinedRecord is a stored record the Store set aside instead of
// serving it: it failed validation or was too far in the future when
// loaded, or its bytes no longer matched the index when read.
type QuarantinedRecord struct {
	Key    string
	Reason error // why it was set aside; wraps ErrCorrupt or ErrClockSkew
	// Err is non-nil if the record could not be moved out of the live
	// keyspace (the backend is no Quarantiner, or Quarantine failed). It
	// stays where it is, unindexed, until a good copy overwrites it.
	Err error
}

// DefaultMaxClockSkew is Config.MaxClockSkew when it is zero.
const DefaultMaxClockSkew = time.Minute

// maxQuarantineList bounds the records Quarantined returns; Stats counts all.
const maxQuarantineList = 1000

// Config configures a Store.
type Config struct {
	// Node names this node in the versions it writes. Required.
	Node string
	// Now reads the wall clock. Defaults to time.Now.
	Now func() time.Time
	// TombstoneTTL is how long a tombstone is kept before Purge removes it.
	// A node that is away for longer than this and still holds the deleted
	// key brings it back to life, so it must exceed the longest outage after
	// which a node rejoins with its old data. Zero keeps tombstones forever.
	TombstoneTTL time.Duration
	// MaxClockSkew is how far ahead of this node's wall clock (Now) a
	// version may be. Merge refuses entries further ahead, so that a
	// forged or badly skewed timestamp cannot drag this node's clock, and
	// every later write, into the future. A node whose clock is more than
	// this behind its peers refuses their writes until it catches up, so
	// it must exceed the clock error expected between nodes (CockroachDB's
	// max-offset plays the same role). Zero means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
}

// Store is a node's versioned key-value store: an in-memory index of every
// key's version and the digest over them, backed by a Backend for values.
// It is the replication core: local writes return the entries to send, Merge
// takes entries from peers, and Digest, Summaries and Compare drive
// anti-entropy. It is safe for concurrent use; it starts no goroutines and
// reads time only through Config.Now.
type Store struct {
	node  string
	ttl   time.Duration
	skew  time.Duration
	now   func() time.Time
	clock *Clock

	mu          sync.RWMutex // guards idx, nodes, closed, corrupt, quarantine and ordering of backend writes
	idx         *index
	nodes       map[string]string // interned node names
	b           Backend
	closed      bool
	corrupt     uint64              // merges that replaced the same version with other bytes
	quarantined int                 // records set aside since Open
	qlist       []QuarantinedRecord // the first maxQuarantineList of them

	qmu   sync.Mutex  // guards queue
	queue []*writeReq // local writes waiting; queue[0]'s goroutine is committing
}

// Open builds the index from the backend's entries and returns a Store.
// A stored record that fails validation, or whose version is more than
// twice MaxClockSkew ahead of Now, is set aside rather than failing the start:
// it is moved out of the live keyspace if the backend is a Quarantiner,
// never indexed or witnessed, and listed by Quarantined. The key is then
// missing from this node's digest, so anti-entropy fetches a good copy
// from a peer.
//
// Why a version too far ahead is set aside on load, not only refused by
// Merge: such a record comes from a store written before versions were
// bounded (the "+100 years" poisoning), or from damaged bytes that still
// decode. Witnessing it would drag the clock, and every later local write,
// past what peers accept. A record this node legitimately accepted can
// only be that far ahead if the wall clock stepped back by more than
// MaxClockSkew since, the case the skew bound already trades away: its
// bytes are kept, and peers deliver it again once it is no longer ahead.
// The bound on load is twice the one Merge applies: this node's own writes
// may run a little past MaxClockSkew (after witnessing an entry at the
// limit, the logical counter carries into later milliseconds), and a
// restart just after a small step back of the wall clock must not set
// aside writes this node acknowledged.
func Open(b Backend, cfg Config) (*Store, error) {
	if cfg.Node == "" || len(cfg.Node) > MaxNodeLen {
		return nil, fmt.Errorf("store: node name must be 1..%d bytes", MaxNodeLen)
	}
	if cfg.MaxClockSkew < 0 {
		return nil, fmt.Errorf("store: max clock skew %v is negative", cfg.MaxClockSkew)
	}
	if cfg.MaxClockSkew == 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{
		node:  cfg.Node,
		ttl:   cfg.TombstoneTTL,
		skew:  cfg.MaxClockSkew,
		now:   cfg.Now,
		clock: NewClock(cfg.Now),
		idx:   newIndex(),
		nodes: make(map[string]string),
		b:     b,
	}
	nowMs := s.now().UnixMilli()
	loadLimit := time.Duration(math.MaxInt64)
	if s.skew <= loadLimit/2 {
		loadLimit = 2 * s.skew
	}
	var bad []QuarantinedRecord
	err := b.Load(func(e Entry) error {
		if err := e.Validate(); err != nil {
			bad = append(bad, QuarantinedRecord{Key: e.Key, Reason: fmt.Errorf("stored entry %q: %w", e.Key, corrupt(err))})
			return nil
		}
		if ahead, ok := tooFarAhead(e.Version.TS, nowMs, loadLimit); ok {
			bad = append(bad, QuarantinedRecord{Key: e.Key, Reason: &SkewError{
				Count: 1, Key: e.Key, Version: e.Version, Ahead: ahead, Limit: loadLimit}})
			return nil
		}
		s.idx.set(s.intern(e.Summary()))
		s.clock.Witness(e.Version.TS)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: load: %w", err)
	}
	// After Load, not inside it: a backend need not allow writes while
	// it iterates.
	for _, r := range bad {
		s.quarantine(r.Key, r.Reason)
	}
	return s, nil
}

// SkewError reports entries refused because their versions were more than
// Limit ahead of this node's wall clock. It matches ErrClockSkew.
type SkewError struct {
	Count   int           // entries refused
	Key     string        // the first of them
	Version Version       // its version
	Ahead   time.Duration // how far its version was ahead of the wall clock (at most ~292 years)
	Limit   time.Duration // MaxClockSkew
}

func (e *SkewError) Error() string {
	what := "entry"
	if e.Count > 1 {
		what = fmt.Sprintf("%d entries, the first", e.Count)
	}
	return fmt.Sprintf("%v: %s %q at version %v is %s ahead (limit %v)", ErrClockSkew, what, e.Key, e.Version, aheadString(e.Ahead), e.Limit)
}

// aheadString prints a skew readably: long ones in days or years.
func aheadString(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == time.Duration(math.MaxInt64):
		return "more than 292 years"
	case d >= 2*365*day:
		return fmt.Sprintf("%d years", d/(365*day))
	case d >= 2*day:
		return fmt.Sprintf("%d days", d/day)
	}
	return d.Round(time.Millisecond).String()
}

// Unwrap makes errors.Is(err, ErrClockSkew) true.
func (e *SkewError) Unwrap() error { return ErrClockSkew }

// tooFarAhead reports whether ts is more than limit ahead of the wall clock
// reading nowMs, and by how much it is ahead.
func tooFarAhead(ts Timestamp, nowMs int64, limit time.Duration) (time.Duration, bool) {
	ms := ts.WallMillis() - nowMs // both well within ±2^62: no overflow
	if ms <= limit.Milliseconds() {
		return 0, false
	}
	if ms > math.MaxInt64/int64(time.Millisecond) {
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(ms) * time.Millisecond, true
}

// quarantine sets key's stored record aside and records why. The key must
// already be out of the index. s.mu must be held (or s not yet shared).
func (s *Store) quarantine(key string, reason error) {
	r := QuarantinedRecord{Key: key, Reason: reason}
	if q, ok := s.b.(Quarantiner); ok {
		if err := q.Quarantine(key, reason); err != nil {
			r.Err = fmt.Errorf("store: quarantine %q: %w", key, err)
		}
	} else {
		r.Err = errors.New("store: backend cannot quarantine: record left in place, unindexed")
	}
	s.quarantined++
	if len(s.qlist) < maxQuarantineList {
		s.qlist = append(s.qlist, r)
	}
}

// setAside drops key from the index and quarantines its record, after a
// read found the record does not match seen, its summary in the index. If
// the key was rewritten meanwhile it does nothing.
func (s *Store) setAside(key string, seen Summary, reason error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if cur, ok := s.idx.get(key); !ok || cur != seen {
		return
	}
	s.idx.remove(key)
	s.quarantine(key, reason)
}

// Quarantined returns the records set aside since Open (at most the first
// 1000; Stats counts them all), in the order they were found. The slice
// belongs to the caller.
func (s *Store) Quarantined() []QuarantinedRecord {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]QuarantinedRecord(nil), s.qlist...)
}

// verify checks an entry read from the backend against its summary in the
// index, so that damaged bytes are never served as a value.
func verify(sum Summary, e Entry, err error) error {
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: stored entry %q is missing from the backend", ErrCorrupt, sum.Key)
		}
		return err
	}
	got := e.Summary()
	switch {
	case got.Key != sum.Key || got.Version != sum.Version || got.Deleted != sum.Deleted:
		return fmt.Errorf("%w: stored entry %q reads as version %v, the index holds %v", ErrCorrupt, sum.Key, got.Version, sum.Version)
	case got.ValueHash != sum.ValueHash:
		return fmt.Errorf("%w: stored value of %q does not match its hash (%016x, want %016x)", ErrCorrupt, sum.Key, got.ValueHash, sum.ValueHash)
	}
	return nil
}

func (s *Store) intern(sum Summary) Summary {
	if n, ok := s.nodes[sum.Version.Node]; ok {
		sum.Version.Node = n
	} else {
		s.nodes[sum.Version.Node] = sum.Version.Node
	}
	return sum
}

// Node returns this node's name.
func (s *Store) Node() string { return s.node }

// Clock returns the store's hybrid logical clock.
func (s *Store) Clock() *Clock { return s.clock }

// Get returns the live entry for key, or ErrNotFound if it is missing or
// deleted.
func (s *Store) Get(key string) (Entry, error) {
	e, err := s.GetEntry(key)
	if err == nil && e.Deleted {
		return Entry{}, ErrNotFound
	}
	return e, err
}

// GetEntry returns the entry for key, tombstone included, or ErrNotFound.
// The entry is checked against the version and value hash in the index; a
// mismatch (damaged storage) returns an error wrapping ErrCorrupt, never
// the bytes, and sets the record aside (see Quarantined) so that
// anti-entropy fetches a good copy from a peer.
func (s *Store) GetEntry(key string) (Entry, error) {
	if err := ValidateKey(key); err != nil {
		return Entry{}, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return Entry{}, ErrClosed
	}
	sum, ok := s.idx.get(key)
	if !ok {
		s.mu.RUnlock()
		return Entry{}, ErrNotFound
	}
	e, err := s.b.Get(key)
	s.mu.RUnlock()
	if err = verify(sum, e, err); err != nil {
		if errors.Is(err, ErrCorrupt) {
			s.setAside(key, sum, err)
		}
		return Entry{}, fmt.Errorf("store: read %q: %w", key, err)
	}
	return e, nil
}

// Put writes value under key with a new version and returns the entry,
// which the caller replicates. It returns once the entry is stored;
// concurrent Puts and Deletes share one backend commit (see commit.go), so
// a call may wait for the commit in progress. value is not retained.
func (s *Store) Put(key string, value []byte) (Entry, error) {
	if err := ValidateKey(key); err != nil {
		return Entry{}, err
	}
	if err := ValidateValue(value); err != nil {
		return Entry{}, err
	}
	if value == nil {
		value = []byte{}
	}
	e, _, err := s.write(Entry{Key: key, Value: value})
	return e, err
}

// Delete writes a tombstone for key and returns it, and whether a live
// value was there just before. It commits like Put. A tombstone is written even if the key is unknown here:
// it may exist on a node this one has not heard from yet.
func (s *Store) Delete(key string) (Entry, bool, error) {
	if err := ValidateKey(key); err != nil {
		return Entry{}, false, err
	}
	return s.write(Entry{Key: key, Deleted: true})
}

// Merge applies entries from another node under last-writer-wins and
// returns those that changed this store (the caller may pass them on).
// Entries that fail validation, and entries whose version is more than
// MaxClockSkew ahead of the wall clock, are skipped (never witnessed,
// never stored) and reported in the error after the valid ones are
// applied: errors.Is matches ErrCorrupt for the former and ErrClockSkew
// for the latter (a *SkewError says which key and how far ahead).
// Tombstones older than the TTL are dropped: they count as already purged.
//
// An entry with the same version as the stored one but other bytes (only
// damage or a bug makes them) is resolved by Entry.Newer, identically on
// every node, and counted in Stats.Corrupt when it replaces ours.
func (s *Store) Merge(entries []Entry) ([]Entry, error) {
	var bad error
	var skew *SkewError
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	nowMs := s.now().UnixMilli()
	horizon := s.horizon()
	win := make(map[string]int, len(entries)) // key -> index in apply
	var apply []Entry
	var sums []Summary // sums[i] is apply[i].Summary()
	for _, e := range entries {
		if err := e.Validate(); err != nil {
			if bad == nil {
				bad = err
			}
			continue
		}
		if ahead, ok := tooFarAhead(e.Version.TS, nowMs, s.skew); ok {
			if skew == nil {
				skew = &SkewError{Key: e.Key, Version: e.Version, Ahead: ahead, Limit: s.skew}
			}
			skew.Count++
			continue
		}
		s.clock.Witness(e.Version.TS)
		if e.Deleted && e.Version.TS < horizon {
			continue
		}
		sum := e.Summary()
		if i, ok := win[e.Key]; ok {
			if e.Newer(apply[i]) {
				apply[i], sums[i] = e, sum
			}
			continue
		}
		if cur, ok := s.idx.get(e.Key); ok && !sum.newer(cur) {
			if sum.Version != cur.Version || sum.Deleted != cur.Deleted || sum.ValueHash == cur.ValueHash {
				continue // older, or the same entry
			}
			if !e.Newer(s.stored(cur)) {
				continue
			}
		}
		win[e.Key] = len(apply)
		apply = append(apply, e)
		sums = append(sums, sum)
	}
	if skew != nil {
		bad = errors.Join(bad, skew)
	}
	if len(apply) == 0 {
		return nil, bad
	}
	if err := s.b.Put(apply); err != nil {
		return nil, fmt.Errorf("store: merge %d entries: %w", len(apply), err)
	}
	for _, sum := range sums {
		if cur, ok := s.idx.get(sum.Key); ok && cur.Version == sum.Version {
			s.corrupt++
		}
		s.idx.set(s.intern(sum))
	}
	return apply, bad
}

// stored reads the stored entry for a tie of versions, which only damaged
// or forged input produces. An entry that cannot be read, or does not match
// its summary in the index, loses the tie.
func (s *Store) stored(sum Summary) Entry {
	e, err := s.b.Get(sum.Key)
	if verify(sum, e, err) != nil {
		return Entry{Key: sum.Key}
	}
	return e
}

// horizon is the timestamp before which tombstones are purged.
// s.mu must be held.
func (s *Store) horizon() Timestamp {
	if s.ttl <= 0 {
		return 0
	}
	ms := s.now().Add(-s.ttl).UnixMilli()
	if ms <= 0 {
		// Before 1970 no tombstone can be older than the horizon; a
		// negative value would wrap to a horizon in the far future and
		// drop every tombstone.
		return 0
	}
	return MakeTimestamp(ms, 0)
}

// Purge removes tombstones older than the TTL and returns how many.
func (s *Store) Purge() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	h := s.horizon()
	if h == 0 {
		return 0, nil
	}
	var old []string
	for _, m := range s.idx.buckets {
		for k, sum := range m {
			if sum.Deleted && sum.Version.TS < h {
				old = append(old, k)
			}
		}
	}
	if len(old) == 0 {
		return 0, nil
	}
	if err := s.b.Delete(old); err != nil {
		return 0, fmt.Errorf("store: purge: %w", err)
	}
	for _, k := range old {
		s.idx.remove(k)
	}
	return len(old), nil
}

// Digest returns a copy of the current digest.
func (s *Store) Digest() Digest {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.digest
}

// Summaries returns the summaries of every entry in the given buckets.
//
// Like Compare, Entries and List, it holds the store's lock one bucket (or
// chunk of keys) at a time and sorts after releasing it, so writes never
// wait behind a scan of a large store: a peer's sync over a million keys
// held the lock for most of a second, stalling every local write.
func (s *Store) Summaries(buckets []int) []Summary {
	var out []Summary
	var done [NumBuckets]bool
	for _, b := range buckets {
		if b < 0 || b >= NumBuckets || done[b] {
			continue
		}
		done[b] = true
		s.mu.RLock()
		for _, sum := range s.idx.buckets[b] {
			out = append(out, sum)
		}
		s.mu.RUnlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Compare takes a peer's summaries of the given buckets and returns the
// keys the peer should get from us and the keys we should take from it.
// It compares one bucket at a time under the lock (a key's copies are
// always in the same bucket, so the answer is the one compare gives for
// all of them at once).
func (s *Store) Compare(buckets []int, remote []Summary) (give, take []string) {
	byBucket := make(map[int][]Summary)
	for _, r := range remote {
		b := BucketOf(r.Key)
		byBucket[b] = append(byBucket[b], r)
	}
	listed := make(map[int]bool, len(buckets))
	for _, b := range buckets {
		if b >= 0 && b < NumBuckets {
			listed[b] = true
		}
	}
	for b := range listed {
		if _, ok := byBucket[b]; !ok {
			byBucket[b] = nil
		}
	}
	for b, rs := range byBucket {
		var only []int
		if listed[b] {
			only = []int{b}
		}
		s.mu.RLock()
		g, t := compare(s.idx, only, rs)
		s.mu.RUnlock()
		give = append(give, g...)
		take = append(take, t...)
	}
	sort.Strings(give)
	sort.Strings(take)
	return give, take
}

// entriesChunk is how many keys Entries reads under one hold of the lock.
const entriesChunk = 256

// Entries returns the stored entries for keys, tombstones included, and
// skips keys it does not hold. Each entry is checked as GetEntry does: one
// that does not match the index is left out and set aside, and the error
// (wrapping ErrCorrupt) names it, beside the entries that were good.
func (s *Store) Entries(keys []string) ([]Entry, error) {
	out := make([]Entry, 0, len(keys))
	type damaged struct {
		sum Summary
		err error
	}
	var bad []damaged
	s.mu.RLock()
	for i, k := range keys {
		if i%entriesChunk == 0 && i > 0 {
			s.mu.RUnlock() // let writes in between chunks
			s.mu.RLock()
		}
		if s.closed {
			s.mu.RUnlock()
			return nil, ErrClosed
		}
		sum, ok := s.idx.get(k)
		if !ok {
			continue
		}
		e, err := s.b.Get(k)
		if err = verify(sum, e, err); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				s.mu.RUnlock()
				return nil, fmt.Errorf("store: read %q: %w", k, err)
			}
			bad = append(bad, damaged{sum, err})
			continue
		}
		out = append(out, e)
	}
	s.mu.RUnlock()
	var errs []error
	for _, d := range bad {
		s.setAside(d.sum.Key, d.sum, d.err)
		errs = append(errs, d.err)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("store: %d of %d entries set aside: %w", len(errs), len(keys), errors.Join(errs...))
	}
	return out, nil
}

// List returns the summaries of live keys that start with prefix, sorted.
func (s *Store) List(prefix string) []Summary {
	var out []Summary
	for b := range NumBuckets {
		s.mu.RLock()
		for k, sum := range s.idx.buckets[b] {
			if !sum.Deleted && strings.HasPrefix(k, prefix) {
				out = append(out, sum)
			}
		}
		s.mu.RUnlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Stats describes what a store holds.
type Stats struct {
	Keys       int   `json:"keys"`
	Tombstones int   `json:"tombstones"`
	DiskBytes  int64 `json:"disk_bytes"`
	// Corrupt counts merges that replaced an entry with another of the
	// same version but different bytes: a copy that was damaged here or
	// at a peer, repaired by anti-entropy.
	Corrupt uint64 `json:"corrupt"`
	// Quarantined counts records set aside since Open (see Quarantined).
	Quarantined int `json:"quarantined"`
}

// Stats returns counts of keys and tombstones and the backend's size.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Stats{Keys: s.idx.keys, Tombstones: s.idx.tombstones, DiskBytes: s.b.Size(),
		Corrupt: s.corrupt, Quarantined: s.quarantined}
}

// Close closes the backend. Later calls return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.b.Close()
}
