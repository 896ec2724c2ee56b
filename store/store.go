package store

import (
	"fmt"
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
	now   func() time.Time
	clock *Clock

	mu     sync.RWMutex // guards idx, nodes, closed and ordering of backend writes
	idx    *index
	nodes  map[string]string // interned node names
	b      Backend
	closed bool

	qmu   sync.Mutex  // guards queue
	queue []*writeReq // local writes waiting; queue[0]'s goroutine is committing
}

// Open builds the index from the backend's entries and returns a Store.
func Open(b Backend, cfg Config) (*Store, error) {
	if cfg.Node == "" || len(cfg.Node) > MaxNodeLen {
		return nil, fmt.Errorf("store: node name must be 1..%d bytes", MaxNodeLen)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{
		node:  cfg.Node,
		ttl:   cfg.TombstoneTTL,
		now:   cfg.Now,
		clock: NewClock(cfg.Now),
		idx:   newIndex(),
		nodes: make(map[string]string),
		b:     b,
	}
	err := b.Load(func(e Entry) error {
		s.idx.set(s.intern(e.Summary()))
		s.clock.Witness(e.Version.TS)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: load: %w", err)
	}
	return s, nil
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
func (s *Store) GetEntry(key string) (Entry, error) {
	if err := ValidateKey(key); err != nil {
		return Entry{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return Entry{}, ErrClosed
	}
	if _, ok := s.idx.get(key); !ok {
		return Entry{}, ErrNotFound
	}
	return s.b.Get(key)
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
// Entries that fail validation are skipped and reported in the error after
// the valid ones are applied. Tombstones older than the TTL are dropped:
// they count as already purged.
func (s *Store) Merge(entries []Entry) ([]Entry, error) {
	var bad error
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	horizon := s.horizon()
	win := make(map[string]int, len(entries)) // key -> index in apply
	var apply []Entry
	for _, e := range entries {
		if err := e.Validate(); err != nil {
			if bad == nil {
				bad = err
			}
			continue
		}
		s.clock.Witness(e.Version.TS)
		if e.Deleted && e.Version.TS < horizon {
			continue
		}
		if i, ok := win[e.Key]; ok {
			if e.Newer(apply[i]) {
				apply[i] = e
			}
			continue
		}
		if cur, ok := s.idx.get(e.Key); ok {
			if !e.Summary().newer(cur) && !(e.Version == cur.Version && e.Newer(s.mustGet(e.Key))) {
				continue
			}
		}
		win[e.Key] = len(apply)
		apply = append(apply, e)
	}
	if len(apply) == 0 {
		return nil, bad
	}
	if err := s.b.Put(apply); err != nil {
		return nil, fmt.Errorf("store: merge %d entries: %w", len(apply), err)
	}
	for _, e := range apply {
		s.idx.set(s.intern(e.Summary()))
	}
	return apply, bad
}

// mustGet reads the stored entry for a tie of versions, which only corrupt
// input produces; an unreadable entry loses the tie.
func (s *Store) mustGet(key string) Entry {
	e, err := s.b.Get(key)
	if err != nil {
		return Entry{Key: key}
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
func (s *Store) Summaries(buckets []int) []Summary {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.summaries(buckets)
}

// Compare takes a peer's summaries of the given buckets and returns the
// keys the peer should get from us and the keys we should take from it.
func (s *Store) Compare(buckets []int, remote []Summary) (give, take []string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return compare(s.idx, buckets, remote)
}

// Entries returns the stored entries for keys, tombstones included, and
// skips keys it does not hold.
func (s *Store) Entries(keys []string) ([]Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make([]Entry, 0, len(keys))
	for _, k := range keys {
		if _, ok := s.idx.get(k); !ok {
			continue
		}
		e, err := s.b.Get(k)
		if err != nil {
			return nil, fmt.Errorf("store: read %q: %w", k, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// List returns the summaries of live keys that start with prefix, sorted.
func (s *Store) List(prefix string) []Summary {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.live(prefix)
}

// Stats describes what a store holds.
type Stats struct {
	Keys       int   `json:"keys"`
	Tombstones int   `json:"tombstones"`
	DiskBytes  int64 `json:"disk_bytes"`
}

// Stats returns counts of keys and tombstones and the backend's size.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Stats{Keys: s.idx.keys, Tombstones: s.idx.tombstones, DiskBytes: s.b.Size()}
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
