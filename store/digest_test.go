package store

import (
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"testing"
	"time"
)

// bucketsOf returns the sorted, distinct buckets of keys.
func bucketsOf(keys []string) []int {
	set := map[int]bool{}
	for _, k := range keys {
		set[BucketOf(k)] = true
	}
	var out []int
	for b := range set {
		out = append(out, b)
	}
	sort.Ints(out)
	return out
}

func sorted(ss []string) []string {
	out := append([]string(nil), ss...)
	sort.Strings(out)
	return out
}

func mustMerge(tb testing.TB, s *Store, es []Entry) {
	tb.Helper()
	if _, err := s.Merge(es); err != nil {
		tb.Fatalf("Merge: %v", err)
	}
}

func mustEntries(tb testing.TB, s *Store, keys []string) []Entry {
	tb.Helper()
	es, err := s.Entries(keys)
	if err != nil {
		tb.Fatalf("Entries: %v", err)
	}
	return es
}

// TestDigestDiffCompare builds two stores that agree on a base and then
// differ in known keys, in every way they can: a key only one side has,
// a newer value on either side, a tombstone against a value, and a
// tombstone only one side has.
func TestDigestDiffCompare(t *testing.T) {
	ft := newFakeTime()
	a := openMem(t, "a", ft.Now, 0)
	b := openMem(t, "b", ft.Now, 0)
	for i := 0; i < 300; i++ {
		e, _ := a.Put(fmt.Sprintf("base/%03d", i), []byte(fmt.Sprint(i)))
		mustMerge(t, b, []Entry{e})
	}
	if a.Digest() != b.Digest() {
		t.Fatal("stores with the same entries have different digests")
	}
	da, db := a.Digest(), b.Digest()
	if d := da.Diff(&db); d != nil || da.Sum() != db.Sum() {
		t.Fatalf("Diff of equal digests = %v; want none", d)
	}

	ft.Add(time.Second)
	var give, take []string // from a's point of view
	put := func(s *Store, k string) {
		if _, err := s.Put(k, []byte(s.Node())); err != nil {
			t.Fatal(err)
		}
	}
	put(a, "only-a")
	give = append(give, "only-a")
	put(b, "only-b")
	take = append(take, "only-b")
	a.Delete("only-a-tomb")
	give = append(give, "only-a-tomb")
	put(a, "base/001") // a newer on a
	give = append(give, "base/001")
	put(b, "base/002") // newer on b
	take = append(take, "base/002")
	a.Delete("base/003")
	give = append(give, "base/003")
	b.Delete("base/004")
	take = append(take, "base/004")
	ft.Add(time.Second)
	put(a, "base/005") // both wrote; b's write came later and wins
	ft.Add(time.Second)
	put(b, "base/005")
	take = append(take, "base/005")

	differ := append(append([]string(nil), give...), take...)
	da, db = a.Digest(), b.Digest()
	buckets := da.Diff(&db)
	if want := bucketsOf(differ); !reflect.DeepEqual(buckets, want) {
		t.Fatalf("Diff = %v; want the buckets of %v: %v", buckets, differ, want)
	}
	if !reflect.DeepEqual(db.Diff(&da), buckets) {
		t.Fatal("Diff is not symmetric")
	}

	gotGive, gotTake := a.Compare(buckets, b.Summaries(buckets))
	if !reflect.DeepEqual(gotGive, sorted(give)) || !reflect.DeepEqual(gotTake, sorted(take)) {
		t.Fatalf("a.Compare = give %v, take %v; want give %v, take %v", gotGive, gotTake, sorted(give), sorted(take))
	}
	bGive, bTake := b.Compare(buckets, a.Summaries(buckets))
	if !reflect.DeepEqual(bGive, gotTake) || !reflect.DeepEqual(bTake, gotGive) {
		t.Fatalf("b.Compare = give %v, take %v; want the mirror of a's", bGive, bTake)
	}

	mustMerge(t, b, mustEntries(t, a, gotGive))
	mustMerge(t, a, mustEntries(t, b, gotTake))
	if a.Digest() != b.Digest() {
		da, db = a.Digest(), b.Digest()
		t.Fatalf("digests differ after the exchange in buckets %v", da.Diff(&db))
	}
	if g, tk := a.Compare(buckets, b.Summaries(buckets)); len(g)+len(tk) != 0 {
		t.Fatalf("Compare after the exchange = %v, %v; want nothing", g, tk)
	}
	if e, _ := a.Get("base/005"); string(e.Value) != "b" {
		t.Fatalf("base/005 = %q; want b's later write", e.Value)
	}
}

func TestSummariesIgnoresBadBuckets(t *testing.T) {
	s := openMem(t, "n1", newFakeTime().Now, 0)
	s.Put("k", nil)
	b := BucketOf("k")
	if got := s.Summaries([]int{-1, NumBuckets, b, b}); len(got) != 1 || got[0].Key != "k" {
		t.Fatalf("Summaries(-1, %d, %d, %d) = %v; want [k] once", NumBuckets, b, b, got)
	}
}

// network runs anti-entropy among stores in one goroutine, with every
// message passing through the codec, as daemon/ will send them.
type network struct {
	t      *testing.T
	stores []*Store
	cut    map[[2]int]bool // pairs that cannot talk
}

func (n *network) isolate(i int, on bool) {
	for j := range n.stores {
		if j != i {
			n.cut[[2]int{i, j}] = on
			n.cut[[2]int{j, i}] = on
		}
	}
}

// sync runs the real anti-entropy exchange (SyncRound, through the codec)
// initiated by i with j, rounds until neither side has more, and returns
// the number of entries moved.
func (n *network) sync(i, j int) int {
	if n.cut[[2]int{i, j}] || i == j {
		return 0
	}
	p := &memPeer{tb: n.t, s: n.stores[j]}
	exchange(n.t, n.stores[i], p, 0)
	return p.entries
}

func (n *network) converged() bool {
	d := n.stores[0].Digest()
	for _, s := range n.stores[1:] {
		if s.Digest() != d {
			return false
		}
	}
	return true
}

// TestAntiEntropyConverges: five stores write concurrently-versioned puts
// and deletes to overlapping keys while one is isolated; then random
// pairwise exchanges run until all digests agree, and every store holds
// exactly the last-writer-wins merge of all writes.
func TestAntiEntropyConverges(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	ft := newFakeTime()
	n := &network{t: t, cut: map[[2]int]bool{}}
	for i := 0; i < 5; i++ {
		n.stores = append(n.stores, openMem(t, fmt.Sprintf("node%d", i), ft.Now, 0))
	}
	var all []Entry
	write := func() {
		s := n.stores[r.Intn(len(n.stores))]
		k := fmt.Sprintf("key/%02d", r.Intn(60))
		var e Entry
		var err error
		if r.Intn(4) == 0 {
			e, _, err = s.Delete(k)
		} else {
			e, err = s.Put(k, []byte(fmt.Sprint(r.Int())))
		}
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
		if r.Intn(3) == 0 {
			ft.Add(time.Duration(r.Intn(3)) * time.Millisecond)
		}
	}
	n.isolate(4, true)
	for i := 0; i < 300; i++ {
		write()
		if i%10 == 0 {
			n.sync(r.Intn(5), r.Intn(5))
		}
	}
	n.isolate(4, false)

	rounds := 0
	for !n.converged() {
		if rounds++; rounds > 100 {
			t.Fatal("no convergence after 100 exchanges")
		}
		i, j := r.Intn(5), r.Intn(5)
		n.sync(i, j)
	}
	t.Logf("converged after %d exchanges", rounds)
	want := refMerge(all)
	for i, s := range n.stores {
		got := contents(t, s)
		if len(got) != len(want) {
			t.Fatalf("store %d holds %d keys; want %d", i, len(got), len(want))
		}
		for k, w := range want {
			if !entryEqual(got[k], w) {
				t.Fatalf("store %d: %q = %+v; want %+v", i, k, got[k], w)
			}
		}
	}
	for i := range n.stores {
		for j := range n.stores {
			if moved := n.sync(i, j); moved != 0 {
				t.Fatalf("sync(%d, %d) after convergence moved %d entries", i, j, moved)
			}
		}
	}
}
