package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"dir/sub key.ü-😀", true},
		{strings.Repeat("k", MaxKeyLen), true},
		{strings.Repeat("é", MaxKeyLen/2), true}, // 512 bytes of 2-byte runes
		{"", false},
		{strings.Repeat("k", MaxKeyLen+1), false},
		{strings.Repeat("é", MaxKeyLen/2) + "k", false},
		{"bad\xffutf8", false},
		{"\xc3", false}, // truncated rune
		{"line\nbreak", false},
		{"nul\x00", false},
		{"tab\t", false},
		{"del\x7f", false},
		{"nel\u0085", false}, // C1 control
		{"\u009f", false},
		{"\u00a0nbsp", true}, // first non-control after C1
	}
	for _, tt := range tests {
		err := ValidateKey(tt.key)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateKey(%q) = %v; want ok=%v", tt.key, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v; want ErrInvalidKey", tt.key, err)
		}
	}
}

func TestValidateValue(t *testing.T) {
	for _, n := range []int{0, 1, MaxValueLen} {
		if err := ValidateValue(make([]byte, n)); err != nil {
			t.Errorf("ValidateValue(%d bytes) = %v; want nil", n, err)
		}
	}
	if err := ValidateValue(make([]byte, MaxValueLen+1)); !errors.Is(err, ErrValueTooLarge) {
		t.Errorf("ValidateValue(%d bytes) = %v; want ErrValueTooLarge", MaxValueLen+1, err)
	}
}

func TestStoreEnforcesLimits(t *testing.T) {
	s := openMem(t, "n1", newFakeTime().Now, 0)
	if _, err := s.Put(strings.Repeat("k", MaxKeyLen), make([]byte, MaxValueLen)); err != nil {
		t.Fatalf("Put(512-byte key, 64 KiB value) = %v; want nil", err)
	}
	if _, err := s.Put("k", make([]byte, MaxValueLen+1)); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("Put(64 KiB + 1) = %v; want ErrValueTooLarge", err)
	}
	for _, k := range []string{"", strings.Repeat("k", MaxKeyLen+1), "a\nb", "\xff"} {
		if _, err := s.Put(k, nil); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put(%q) = %v; want ErrInvalidKey", k, err)
		}
		if _, _, err := s.Delete(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v; want ErrInvalidKey", k, err)
		}
		if _, err := s.Get(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Get(%q) = %v; want ErrInvalidKey", k, err)
		}
	}
	// Merge skips invalid entries, applies the rest and reports the first.
	good := Entry{Key: "ok", Value: []byte("v"), Version: Version{TS: 5, Node: "n2"}}
	bad := []Entry{
		{Key: "a\x00", Value: []byte("v"), Version: Version{TS: 5, Node: "n2"}},
		{Key: "big", Value: make([]byte, MaxValueLen+1), Version: Version{TS: 5, Node: "n2"}},
		{Key: "nots", Value: []byte("v"), Version: Version{Node: "n2"}},
		{Key: "nonode", Value: []byte("v"), Version: Version{TS: 5}},
		{Key: "future", Value: []byte("v"), Version: Version{TS: MaxTimestamp + 1, Node: "n2"}},
		{Key: "tomb", Value: []byte("v"), Deleted: true, Version: Version{TS: 5, Node: "n2"}},
	}
	changed, err := s.Merge(append(bad, good))
	if !errors.Is(err, ErrInvalidKey) || len(changed) != 1 || changed[0].Key != "ok" {
		t.Fatalf("Merge(invalid..., valid) = %v, %v; want [ok], ErrInvalidKey", changed, err)
	}
	for _, e := range bad {
		if err := e.Validate(); err == nil {
			t.Errorf("Validate(%q) = nil; want an error", e.Key)
		}
	}
}

// Merge laws, checked with testing/quick against a deliberately dumb
// reference (etcd quorum/quick_test.go does the same for its quorum code).

// randEntry makes an entry for one of a few keys, with versions drawn from
// a small range so that ties of timestamp, node and even whole version
// (corrupt input) are common.
func randEntry(r *rand.Rand, keys int) Entry {
	e := Entry{
		Key:     string(rune('a' + r.Intn(keys))),
		Version: Version{TS: Timestamp(1 + r.Intn(4)), Node: []string{"n1", "n2", "n3"}[r.Intn(3)]},
	}
	if r.Intn(4) == 0 {
		e.Deleted = true
	} else {
		e.Value = []byte([]string{"", "x", "y"}[r.Intn(3)])
	}
	return e
}

type qEntry Entry

func (qEntry) Generate(r *rand.Rand, _ int) reflect.Value {
	return reflect.ValueOf(qEntry(randEntry(r, 1)))
}

type qEntries []Entry

func (qEntries) Generate(r *rand.Rand, size int) reflect.Value {
	es := make([]Entry, r.Intn(size+1)*2)
	for i := range es {
		es[i] = randEntry(r, 6)
	}
	return reflect.ValueOf(qEntries(es))
}

// refLess is the total order written out longhand: timestamp, then node,
// then live before deleted, then value bytes.
func refLess(a, b Entry) bool {
	if a.Version.TS != b.Version.TS {
		return a.Version.TS < b.Version.TS
	}
	if a.Version.Node != b.Version.Node {
		return a.Version.Node < b.Version.Node
	}
	if a.Deleted != b.Deleted {
		return !a.Deleted
	}
	return bytes.Compare(a.Value, b.Value) < 0
}

// refMerge keeps, for every key, the greatest entry under refLess.
func refMerge(es []Entry) map[string]Entry {
	out := map[string]Entry{}
	for _, e := range es {
		if cur, ok := out[e.Key]; !ok || refLess(cur, e) {
			out[e.Key] = e
		}
	}
	return out
}

func quickCheck(t *testing.T, f any) {
	t.Helper()
	if err := quick.Check(f, &quick.Config{MaxCount: 500}); err != nil {
		t.Fatal(err)
	}
}

func TestMergeCommutative(t *testing.T) {
	quickCheck(t, func(a, b qEntry) bool {
		return reflect.DeepEqual(Merge(Entry(a), Entry(b)), Merge(Entry(b), Entry(a)))
	})
}

func TestMergeAssociative(t *testing.T) {
	quickCheck(t, func(a, b, c qEntry) bool {
		x, y, z := Entry(a), Entry(b), Entry(c)
		return reflect.DeepEqual(Merge(Merge(x, y), z), Merge(x, Merge(y, z)))
	})
}

func TestMergeIdempotent(t *testing.T) {
	quickCheck(t, func(a, b qEntry) bool {
		x, y := Entry(a), Entry(b)
		m := Merge(x, y)
		return reflect.DeepEqual(Merge(x, x), x) && reflect.DeepEqual(Merge(m, y), m)
	})
}

func TestMergeMatchesReference(t *testing.T) {
	quickCheck(t, func(a, b qEntry) bool {
		x, y := Entry(a), Entry(b)
		want := refMerge([]Entry{x, y})[x.Key]
		return entryEqual(Merge(x, y), want)
	})
}

// TestStoreMergeOrderInsensitive applies one multiset of entries to three
// stores, each in its own order and batching, through Store.Merge: the
// stores end with identical digests and contents, equal to the reference.
func TestStoreMergeOrderInsensitive(t *testing.T) {
	quickCheck(t, func(in qEntries, seed int64) bool {
		es := []Entry(in)
		r := rand.New(rand.NewSource(seed))
		want := refMerge(es)
		var digests []Digest
		for i := 0; i < 3; i++ {
			s := openMem(t, "local", newFakeTime().Now, 0)
			perm := r.Perm(len(es))
			for len(perm) > 0 {
				n := 1 + r.Intn(len(perm))
				batch := make([]Entry, n)
				for j, p := range perm[:n] {
					batch[j] = es[p]
				}
				perm = perm[n:]
				if _, err := s.Merge(batch); err != nil {
					t.Errorf("Merge: %v", err)
					return false
				}
			}
			got := contents(t, s)
			if len(got) != len(want) {
				t.Errorf("store %d holds %d keys; want %d", i, len(got), len(want))
				return false
			}
			for k, w := range want {
				if !entryEqual(got[k], w) {
					t.Errorf("store %d: %q = %+v; want %+v", i, k, got[k], w)
					return false
				}
			}
			// Merging everything again changes nothing.
			if changed, _ := s.Merge(es); len(changed) != 0 {
				t.Errorf("re-Merge changed %v", changed)
				return false
			}
			digests = append(digests, s.Digest())
		}
		return digests[0] == digests[1] && digests[1] == digests[2]
	})
}

func TestMergeReturnsChanges(t *testing.T) {
	s := openMem(t, "n1", newFakeTime().Now, 0)
	old := Entry{Key: "k", Value: []byte("old"), Version: Version{TS: 10, Node: "n2"}}
	newer := Entry{Key: "k", Value: []byte("new"), Version: Version{TS: 11, Node: "n2"}}
	dup := Entry{Key: "k", Value: []byte("dup"), Version: Version{TS: 11, Node: "n1"}}
	changed, err := s.Merge([]Entry{old, newer, dup})
	if err != nil || len(changed) != 1 || !entryEqual(changed[0], newer) {
		t.Fatalf("Merge(old, newer, lower-node tie) = %v, %v; want [newer]", changed, err)
	}
	if changed, _ := s.Merge([]Entry{old}); len(changed) != 0 {
		t.Fatalf("Merge(older) = %v; want no change", changed)
	}
	if s.Clock().Last() < 11 {
		t.Fatalf("Merge did not witness the remote clock: Last() = %v", s.Clock().Last())
	}
}

// Refused is the one rule for "the input was at fault": every sentinel for
// refused input matches, wrapped or not; the store's own failures do not.
func TestRefused(t *testing.T) {
	for _, err := range []error{ErrCorrupt, ErrInvalidKey, ErrValueTooLarge, ErrClockSkew,
		fmt.Errorf("batch entry 3: %w", corrupt(ErrInvalidKey)), &SkewError{}} {
		if !Refused(err) {
			t.Errorf("Refused(%v) = false; want true", err)
		}
	}
	for _, err := range []error{nil, ErrClosed, ErrNotFound, ErrNoSpace, ErrClockExhausted, errors.New("disk on fire")} {
		if Refused(err) {
			t.Errorf("Refused(%v) = true; want false", err)
		}
	}
}
