package store

import "sync"

// MemBackend is an in-memory Backend for tests. It is safe for concurrent use.
type MemBackend struct {
	mu sync.Mutex // guards m, q
	m  map[string]Entry
	q  map[string]Entry // quarantined records
}

var (
	_ Backend     = (*MemBackend)(nil)
	_ Quarantiner = (*MemBackend)(nil)
)

// NewMemBackend returns an empty MemBackend.
func NewMemBackend() *MemBackend {
	return &MemBackend{m: make(map[string]Entry), q: make(map[string]Entry)}
}

// Load calls fn for a snapshot of the entries, without holding the lock.
func (b *MemBackend) Load(fn func(Entry) error) error {
	b.mu.Lock()
	es := make([]Entry, 0, len(b.m))
	for _, e := range b.m {
		es = append(es, clone(e))
	}
	b.mu.Unlock()
	for _, e := range es {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Get returns a copy of the entry for key, or ErrNotFound.
func (b *MemBackend) Get(key string) (Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[key]
	if !ok {
		return Entry{}, ErrNotFound
	}
	return clone(e), nil
}

// Put stores copies of the entries.
func (b *MemBackend) Put(es []Entry) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range es {
		b.m[e.Key] = clone(e)
	}
	return nil
}

// Delete removes the keys.
func (b *MemBackend) Delete(keys []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		delete(b.m, k)
	}
	return nil
}

// Quarantine moves key's entry to a separate map, where Quarantined still
// shows it. A key that is not stored is not an error.
func (b *MemBackend) Quarantine(key string, reason error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.m[key]; ok {
		b.q[key] = e
		delete(b.m, key)
	}
	return nil
}

// Quarantined returns copies of the entries set aside by Quarantine.
func (b *MemBackend) Quarantined() map[string]Entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]Entry, len(b.q))
	for k, e := range b.q {
		out[k] = clone(e)
	}
	return out
}

// Size returns 0: nothing is on disk.
func (b *MemBackend) Size() int64 { return 0 }

// Close does nothing; the contents stay readable.
func (b *MemBackend) Close() error { return nil }

// clone copies e's value so that neither the caller nor the backend can
// change the other's copy, as with a backend that persists bytes.
func clone(e Entry) Entry {
	if e.Value != nil {
		e.Value = append([]byte{}, e.Value...)
	}
	return e
}
