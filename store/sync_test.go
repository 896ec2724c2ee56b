package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"testing"
	"testing/quick"
	"time"
)

// memPeer is the answering side of the exchange over another Store, with
// every message passing through the codec as the daemon sends it. It counts
// the bytes and entries that cross.
type memPeer struct {
	tb      testing.TB
	s       *Store
	busy    bool // answers digests as a node in its own round does
	limit   int  // sync reply limit; SyncChunk if 0
	bytes   int  // encoded bytes both ways
	entries int  // entries moved both ways
	maxGive int  // largest sync reply's entries, by EntrySize
	maxPush int  // largest push, by EntrySize
	maxSums int  // largest sync request's summaries, by SummarySize
}

var _ SyncPeer = (*memPeer)(nil)

func (p *memPeer) Digest(req DigestReq) (DigestReply, error) {
	in := req.Encode()
	got, err := DecodeDigestReq(in)
	if err != nil {
		return DigestReply{}, err
	}
	out := p.s.ServeDigest(got, p.busy).Encode()
	p.bytes += len(in) + len(out)
	return DecodeDigestReply(out)
}

func (p *memPeer) Sync(req SyncReq) (SyncReply, error) {
	in := req.Encode()
	got, err := DecodeSyncReq(in)
	if err != nil {
		return SyncReply{}, err
	}
	sums := 0
	for _, s := range got.Summaries {
		sums += SummarySize(s)
	}
	p.maxSums = max(p.maxSums, sums)
	limit := p.limit
	if limit == 0 {
		limit = SyncChunk
	}
	reply, err := p.s.ServeSync(got, limit)
	if err != nil {
		return SyncReply{}, err
	}
	out := reply.Encode()
	p.bytes += len(in) + len(out)
	p.entries += len(reply.Entries)
	p.maxGive = max(p.maxGive, entriesSize(reply.Entries))
	return DecodeSyncReply(out)
}

func (p *memPeer) Push(es []Entry) error {
	in := EncodeBatch(es)
	got, err := DecodeBatch(in)
	if err != nil {
		return err
	}
	p.bytes += len(in)
	p.entries += len(got)
	p.maxPush = max(p.maxPush, entriesSize(got))
	_, err = p.s.Merge(got)
	return err
}

func entriesSize(es []Entry) int {
	n := 0
	for _, e := range es {
		n += EntrySize(e)
	}
	return n
}

// exchange runs rounds of a with p while p says more, as the daemon's sync
// loop does, and returns how many ran.
func exchange(tb testing.TB, a *Store, p *memPeer, seed int) int {
	tb.Helper()
	for i := 0; i < 256; i++ {
		more, _, err := a.SyncRound(p, seed+i, func(es []Entry) error {
			_, err := a.Merge(es)
			return err
		})
		if err != nil {
			tb.Fatalf("SyncRound: %v", err)
		}
		if !more {
			return i + 1
		}
	}
	tb.Fatal("SyncRound still says more after 256 rounds")
	return 0
}

// TestSyncConvergesQuick is the protocol's main property: from any
// divergent state of 2 to 4 stores (random puts, deletes, and the same
// version with different bytes on two nodes), rounds of the real exchange
// between random pairs make every digest equal within a bounded number of
// rounds, and every store then holds what the last-writer-wins merge of all
// writes says (for keys written with one version twice, the one whose value
// hash wins).
func TestSyncConvergesQuick(t *testing.T) {
	prop := func(seed int64) bool {
		r := rand.New(rand.NewSource(seed))
		ft := newFakeTime()
		n := &network{t: t, cut: map[[2]int]bool{}}
		for i := 0; i < 2+r.Intn(3); i++ {
			n.stores = append(n.stores, openMem(t, fmt.Sprintf("n%d", i), ft.Now, 0))
		}
		var all []Entry
		for i := 0; i < 1+r.Intn(200); i++ {
			s := n.stores[r.Intn(len(n.stores))]
			k := fmt.Sprintf("k%03d", r.Intn(80))
			var e Entry
			var err error
			switch r.Intn(6) {
			case 0:
				e, _, err = s.Delete(k)
			case 1:
				// Same version, different bytes, on another store.
				e, err = s.Put(k, []byte(fmt.Sprint(r.Int())))
				if err == nil {
					twin := e
					twin.Value = []byte(fmt.Sprint("twin", r.Int()))
					o := n.stores[r.Intn(len(n.stores))]
					if _, err = o.Merge([]Entry{twin}); err == nil {
						all = append(all, twin)
					}
				}
			default:
				e, err = s.Put(k, bytes.Repeat([]byte{byte('a' + r.Intn(26))}, r.Intn(300)))
			}
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, e)
			if r.Intn(3) == 0 {
				ft.Add(time.Duration(r.Intn(3)) * time.Millisecond)
			}
		}
		bound := 10 * len(n.stores) * len(n.stores)
		rounds := 0
		for !n.converged() {
			if rounds++; rounds > bound {
				t.Logf("seed %d: no convergence after %d exchanges", seed, bound)
				return false
			}
			i, j := r.Intn(len(n.stores)), r.Intn(len(n.stores))
			n.sync(i, j)
		}
		want := refMerge(all)
		for i, s := range n.stores {
			got := contents(t, s)
			if len(got) != len(want) {
				t.Logf("seed %d: store %d holds %d keys; want %d", seed, i, len(got), len(want))
				return false
			}
			for k, w := range want {
				if !entryEqual(got[k], w) {
					t.Logf("seed %d: store %d: %q = %+v; want %+v", seed, i, k, got[k], w)
					return false
				}
			}
		}
		return true
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 60, Rand: rand.New(rand.NewSource(9))}); err != nil {
		t.Fatal(err)
	}
}

// TestSyncChunks: a new empty node pulls a store larger than several
// chunks; no reply, push or request exceeds its limit, the round says more
// until everything has arrived, and it then converges.
func TestSyncChunks(t *testing.T) {
	ft := newFakeTime()
	a := openMem(t, "a", ft.Now, 0)
	b := openMem(t, "b", ft.Now, 0)
	const limit = 64 << 10
	v := bytes.Repeat([]byte("v"), 1000)
	for i := 0; i < 400; i++ { // ~400 KB each way: several chunks of 64 KiB
		if _, err := b.Put(fmt.Sprintf("b%04d", i), v); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Put(fmt.Sprintf("a%04d", i), v); err != nil {
			t.Fatal(err)
		}
	}
	p := &memPeer{tb: t, s: b, limit: limit}
	more, _, err := a.SyncRound(p, 0, func(es []Entry) error { _, err := a.Merge(es); return err })
	if err != nil || !more {
		t.Fatalf("first round = more %v, %v; want more", more, err)
	}
	rounds := 1 + exchange(t, a, p, 1)
	if a.Digest() != b.Digest() {
		t.Fatal("digests differ after the rounds")
	}
	if p.maxGive > limit {
		t.Errorf("largest sync reply held %d bytes of entries; limit %d", p.maxGive, limit)
	}
	if p.maxPush > SyncChunk {
		t.Errorf("largest push held %d bytes; limit %d", p.maxPush, SyncChunk)
	}
	if p.maxSums > MaxSyncSummaries {
		t.Errorf("largest sync request held %d bytes of summaries; limit %d", p.maxSums, MaxSyncSummaries)
	}
	if min := 400 * 1032 / limit; rounds < min {
		t.Errorf("%d rounds; want at least %d for %d-byte chunks", rounds, min, limit)
	}
	t.Logf("%d rounds, largest reply %d bytes", rounds, p.maxGive)
}

// TestSyncRequestCut: summaries over the limit are cut at whole buckets,
// starting from the bucket the caller picks, and the round reports more.
func TestSyncRequestCut(t *testing.T) {
	s := openMem(t, "a", newFakeTime().Now, 0)
	var buckets []int
	for i := 0; i < 2000; i++ {
		k := fmt.Sprintf("key%05d", i)
		if _, err := s.Put(k, nil); err != nil {
			t.Fatal(err)
		}
	}
	for b := 0; b < NumBuckets; b++ {
		buckets = append(buckets, b)
	}
	const limit = 4 << 10
	seen := map[int]bool{}
	for start := 0; start < 3*NumBuckets; start += 7 {
		req, cut := s.SyncRequest(buckets, limit, start)
		if !cut {
			t.Fatal("SyncRequest over the limit did not report a cut")
		}
		if req.Buckets[0] != buckets[start%len(buckets)] {
			t.Fatalf("start %d: first bucket %d; want %d", start, req.Buckets[0], buckets[start%len(buckets)])
		}
		in := map[int]bool{}
		for _, b := range req.Buckets {
			in[b] = true
			seen[b] = true
		}
		size := 0
		for _, sm := range req.Summaries {
			size += SummarySize(sm)
			if !in[BucketOf(sm.Key)] {
				t.Fatalf("summary of %q outside the request's buckets", sm.Key)
			}
		}
		if size > limit {
			t.Fatalf("request holds %d bytes of summaries; limit %d", size, limit)
		}
		if want := len(s.Summaries(req.Buckets)); want != len(req.Summaries) {
			t.Fatalf("request holds %d summaries of its buckets; they hold %d (a bucket was split)", len(req.Summaries), want)
		}
	}
	if len(seen) != NumBuckets {
		t.Errorf("cut requests from varied starts reached %d of %d buckets", len(seen), NumBuckets)
	}
	if _, cut := s.SyncRequest(buckets, 1<<30, 5); cut {
		t.Error("SyncRequest under the limit reported a cut")
	}
}

// TestSyncBusyPeer: a peer in its own round answers "no difference", and
// the round moves nothing; once free it answers.
func TestSyncBusyPeer(t *testing.T) {
	ft := newFakeTime()
	a := openMem(t, "a", ft.Now, 0)
	b := openMem(t, "b", ft.Now, 0)
	if _, err := b.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	p := &memPeer{tb: t, s: b, busy: true}
	more, _, err := a.SyncRound(p, 0, func(es []Entry) error { t.Fatal("busy peer sent entries"); return nil })
	if err != nil || more || p.entries != 0 {
		t.Fatalf("round with a busy peer = more %v, %v, %d entries; want nothing", more, err, p.entries)
	}
	if a.Digest() == b.Digest() {
		t.Fatal("digests equal before any exchange")
	}
	p.busy = false
	exchange(t, a, p, 0)
	if a.Digest() != b.Digest() {
		t.Fatal("digests differ after the peer was free")
	}
}

// TestSyncApplyErrorEndsRound: an error from apply ends the round with it.
func TestSyncApplyErrorEndsRound(t *testing.T) {
	ft := newFakeTime()
	a := openMem(t, "a", ft.Now, 0)
	b := openMem(t, "b", ft.Now, 0)
	b.Put("k", []byte("v"))
	a.Put("j", []byte("v"))
	boom := errors.New("boom")
	p := &memPeer{tb: t, s: b}
	if _, _, err := a.SyncRound(p, 0, func([]Entry) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("SyncRound = %v; want %v", err, boom)
	}
	if p.entries != 1 {
		t.Fatalf("%d entries crossed; want only the reply's 1 (no push after a failed apply)", p.entries)
	}
}

// TestSyncBytesNearFloor: two stores that share a base and each missed a
// few writes exchange little more than those writes' keys and values (the
// floor): the digest (8 KiB each way) plus the summaries of the differing
// buckets and the entries' versions.
func TestSyncBytesNearFloor(t *testing.T) {
	ft := newFakeTime()
	a := openMem(t, "a", ft.Now, 0)
	b := openMem(t, "b", ft.Now, 0)
	v := bytes.Repeat([]byte("x"), 200)
	for i := 0; i < 5000; i++ {
		e, err := a.Put(fmt.Sprintf("base/%05d", i), v)
		if err != nil {
			t.Fatal(err)
		}
		mustMerge(t, b, []Entry{e})
	}
	floor := 0
	for i := 0; i < 50; i++ {
		s := a
		if i%2 == 1 {
			s = b
		}
		e, err := s.Put(fmt.Sprintf("new/%03d", i), bytes.Repeat([]byte("n"), 1000))
		if err != nil {
			t.Fatal(err)
		}
		floor += len(e.Key) + len(e.Value)
	}
	p := &memPeer{tb: t, s: b}
	exchange(t, a, p, 0)
	if a.Digest() != b.Digest() {
		t.Fatal("digests differ after the exchange")
	}
	ratio := float64(p.bytes) / float64(floor)
	t.Logf("exchange of 50 missed writes (of 5050 keys): %d bytes on the wire; floor (keys+values) %d; ratio %.2f", p.bytes, floor, ratio)
	// The digest costs 2x8 KiB; the summaries of ~50 buckets of ~5 keys
	// ~7 KiB; the rest is versions. Three times the floor bounds it with room.
	if ratio > 3 {
		t.Errorf("exchange cost %d bytes, %.2f times the floor of %d", p.bytes, ratio, floor)
	}
}

// badReplyPeer answers the digest with a difference and the sync request
// with an error wrapping ErrCorrupt, as a reply that does not decode is.
type badReplyPeer struct{}

func (badReplyPeer) Digest(DigestReq) (DigestReply, error) {
	return DigestReply{Buckets: []int{1}}, nil
}
func (badReplyPeer) Sync(SyncReq) (SyncReply, error) {
	_, err := DecodeSyncReply([]byte{tagSyncReply, 9})
	return SyncReply{}, err
}
func (badReplyPeer) Push([]Entry) error { return nil }

// TestSyncMalformedReplyIsAnError: a peer's reply that does not decode ends
// the round with an error; it is not reported as our own damaged records.
func TestSyncMalformedReplyIsAnError(t *testing.T) {
	a := openMem(t, "a", newFakeTime().Now, 0)
	more, damaged, err := a.SyncRound(badReplyPeer{}, 0, func([]Entry) error { return nil })
	if more || damaged != nil || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("SyncRound with a malformed reply = %v, damaged %v, %v; want an ErrCorrupt error only", more, damaged, err)
	}
}

// TestSyncDamagedRecordLeftOut: a stored record whose bytes no longer match
// the index is left out of a sync reply, reported as damaged
// (ErrCorrupt), and the good entries still cross.
func TestSyncDamagedRecordLeftOut(t *testing.T) {
	ft := newFakeTime()
	be := NewMemBackend()
	a, err := Open(be, Config{Node: "a", Now: ft.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b := openMem(t, "b", ft.Now, 0)
	for _, k := range []string{"bad", "good1", "good2"} {
		if _, err := a.Put(k, []byte("value of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	be.mu.Lock()
	e := be.m["bad"]
	e.Value = []byte("rotted bytes")
	be.m["bad"] = e
	be.mu.Unlock()

	// b asks a: a's reply leaves "bad" out and says so.
	req, _ := b.SyncRequest(func() []int { d, da := b.Digest(), a.Digest(); return d.Diff(&da) }(), MaxSyncSummaries, 0)
	reply, err := a.ServeSync(req, SyncChunk)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ServeSync over a damaged record: %v; want ErrCorrupt", err)
	}
	if len(reply.Entries) != 2 {
		t.Fatalf("reply holds %d entries; want the 2 good ones", len(reply.Entries))
	}
	// The damaged record was set aside: a no longer offers it, and a round
	// after b took the good ones finds the two stores equal.
	mustMerge(t, b, reply.Entries)
	more, damaged, err := a.SyncRound(&memPeer{tb: t, s: b}, 0, func(es []Entry) error { _, err := a.Merge(es); return err })
	if err != nil || more || damaged != nil {
		t.Fatalf("SyncRound = more %v, damaged %v, %v; want done", more, damaged, err)
	}
	if a.Digest() != b.Digest() {
		t.Fatal("digests differ after the damaged record was set aside")
	}
	if _, err := b.Get("bad"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("b.Get(bad) = %v; want not found (never sent)", err)
	}
	if _, err := b.Get("good2"); err != nil {
		t.Fatalf("b.Get(good2) = %v", err)
	}
}
