package store

import "sync"

// MemBackend is an in-memory Backend for tests. It is safe for concurrent use.
type MemBackend struct {
	mu sync.Mutex
	m  map[string]Entry
}

var _ Backend = (*MemBackend)(nil)

// NewMemBackend returns an empty MemBackend.
func NewMemBackend() *MemBackend { return &MemBackend{m: make(map[string]Entry)} }

func (b *MemBackend) Load(fn func(Entry) error) error {
	b.mu.Lock()
	es := make([]Entry, 0, len(b.m))
	for _, e := range b.m {
		es = append(es, e)
	}
	b.mu.Unlock()
	for _, e := range es {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (b *MemBackend) Get(key string) (Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[key]
	if !ok {
		return Entry{}, ErrNotFound
	}
	return e, nil
}

func (b *MemBackend) Put(es []Entry) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range es {
		b.m[e.Key] = e
	}
	return nil
}

func (b *MemBackend) Delete(keys []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		delete(b.m, k)
	}
	return nil
}

func (b *MemBackend) Size() int64  { return 0 }
func (b *MemBackend) Close() error { return nil }
