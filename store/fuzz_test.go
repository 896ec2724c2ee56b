package store

import (
	"encoding/binary"
	"errors"
	"flag"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Fuzz targets for every decoder of bytes that arrive from the network or
// disk (issue 7, item 6), and a property target for the clock. `go test`
// runs the seeds (and any crasher kept in testdata/fuzz); explore with
//
//	go test -run='^$' -fuzz='^FuzzDecodeSummaries$' -fuzztime=60s ./store
//
// Each target checks that the decoder never panics, fails only with
// ErrCorrupt, allocates in proportion to its input (never from a count or
// length the input merely claims), and that whatever it accepts survives
// re-encoding unchanged. FuzzDecodeBatch is in codec_test.go.

// allocSlack and allocPerByte bound what a decoder may allocate for an
// input: the decoded form of one byte is at most a slice element (an Entry
// is 72 bytes for at least 12 input bytes, an int 8 for 1, a string header
// 16 for 1) plus a copy of the byte itself.
const (
	allocPerByte = 24
	allocSlack   = 64 << 10
)

// allocated returns the bytes allocated on the heap while fn ran.
// ReadMemStats flushes every P's allocation cache, so the count is exact
// (runtime/metrics counts a cache's allocations only when it is refilled,
// a span at a time, which made the bound flaky). Other goroutines of the
// fuzzing engine may add a little; allocSlack covers them. ReadMemStats
// stops the world, so while fuzzing only one input in allocSample is
// measured; the seeds always are.
func allocated(fn func()) uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	before := m.TotalAlloc
	fn()
	runtime.ReadMemStats(&m)
	return m.TotalAlloc - before
}

// checkDecode runs dec on in and checks the error kind and the allocation
// bound; it returns the decoded value and whether dec accepted in.
func checkDecode[T any](t *testing.T, name string, in []byte, dec func([]byte) (T, error)) (T, bool) {
	t.Helper()
	var v T
	var err error
	var n uint64
	if fuzzing() && allocCount.Add(1)%allocSample != 0 {
		v, err = dec(in)
	} else {
		n = allocated(func() { v, err = dec(in) })
	}
	if limit := uint64(allocPerByte*len(in) + allocSlack); n > limit {
		t.Fatalf("%s allocated %d bytes for %d bytes of input; the bound is %d", name, n, len(in), limit)
	}
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s error %v does not wrap ErrCorrupt", name, err)
		}
		return v, false
	}
	return v, true
}

const allocSample = 64

var allocCount atomic.Uint64

// fuzzing reports whether the test binary is generating inputs (-fuzz)
// rather than replaying the corpus.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

// hugeCount is a message header claiming more elements than could fit.
func hugeCount(tag byte) []byte {
	return binary.AppendUvarint([]byte{tag}, 1<<62)
}

func FuzzDecodeEntry(f *testing.F) {
	for _, e := range sampleEntries() {
		f.Add(AppendEntry(nil, e))
	}
	f.Add(AppendEntry(nil, Entry{Key: "k", Value: []byte{}, Version: Version{TS: MaxTimestamp + 1, Node: "n"}}))
	f.Add([]byte{0x01, 'k', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'n', 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		e, ok := checkDecode(t, "DecodeEntry", in, DecodeEntry)
		if !ok {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("DecodeEntry accepted an invalid entry: %v", err)
		}
		again, err := DecodeEntry(AppendEntry(nil, e))
		if err != nil || !reflect.DeepEqual(again, e) {
			t.Fatalf("entry changed across re-encoding: %+v, %v; want %+v", again, err, e)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	for _, e := range sampleEntries() {
		f.Add(e.Key, AppendRecord(nil, e))
	}
	f.Add("", AppendRecord(nil, sampleEntries()[0]))
	f.Add("a", AppendEntry(nil, sampleEntries()[0])[2:]) // a record from before the value hash
	f.Add("k\x00", []byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 'n', 0, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, key string, in []byte) {
		e, ok := checkDecode(t, "DecodeRecord", in, func(b []byte) (Entry, error) { return DecodeRecord(key, b) })
		if !ok {
			return
		}
		if err := e.Validate(); err != nil || e.Key != key {
			t.Fatalf("DecodeRecord(%q) accepted %+v: %v", key, e, err)
		}
		again, err := DecodeRecord(key, AppendRecord(nil, e))
		if err != nil || !reflect.DeepEqual(again, e) {
			t.Fatalf("record changed across re-encoding: %+v, %v; want %+v", again, err, e)
		}
	})
}

func FuzzDecodeSummaries(f *testing.F) {
	var sums []Summary
	for _, e := range sampleEntries() {
		sums = append(sums, e.Summary())
	}
	f.Add(EncodeSummaries(nil))
	f.Add(EncodeSummaries(sums[:1]))
	f.Add(EncodeSummaries(sums))
	f.Add(hugeCount(tagSums))
	f.Add([]byte{tagBatch})
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := checkDecode(t, "DecodeSummaries", in, DecodeSummaries)
		if !ok {
			return
		}
		if len(got) > len(in)/19 {
			t.Fatalf("DecodeSummaries returned %d summaries from %d bytes", len(got), len(in))
		}
		for _, s := range got {
			if len(s.Key) > MaxKeyLen || len(s.Version.Node) > MaxNodeLen {
				t.Fatalf("DecodeSummaries accepted an oversized summary: %d-byte key, %d-byte node", len(s.Key), len(s.Version.Node))
			}
		}
		again, err := DecodeSummaries(EncodeSummaries(got))
		if err != nil || len(again) != len(got) || (len(got) > 0 && !reflect.DeepEqual(again, got)) {
			t.Fatalf("summaries changed across re-encoding: %v, %v; want %v", again, err, got)
		}
	})
}

func FuzzDecodeDigest(f *testing.F) {
	var dg Digest
	for i := range dg {
		dg[i] = uint64(i) * 0x9e3779b97f4a7c15
	}
	f.Add(EncodeDigest(&dg))
	f.Add(EncodeDigest(&Digest{}))
	f.Add(EncodeDigest(&dg)[:100])
	f.Add([]byte{tagDigest})
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := checkDecode(t, "DecodeDigest", in, DecodeDigest)
		if !ok {
			return
		}
		if len(in) != 1+8*NumBuckets {
			t.Fatalf("DecodeDigest accepted %d bytes; a digest is %d", len(in), 1+8*NumBuckets)
		}
		again, err := DecodeDigest(EncodeDigest(got))
		if err != nil || *again != *got {
			t.Fatalf("digest changed across re-encoding: %v", err)
		}
	})
}

func FuzzDecodeDigestReply(f *testing.F) {
	f.Add(DigestReply{}.Encode())
	f.Add(DigestReply{Buckets: []int{0, 1, NumBuckets - 1}}.Encode())
	f.Add(hugeCount(tagDigestReply))
	f.Add(binary.AppendUvarint([]byte{tagDigestReply, 1}, NumBuckets))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := checkDecode(t, "DecodeDigestReply", in, DecodeDigestReply)
		if !ok {
			return
		}
		if len(got.Buckets) > len(in) {
			t.Fatalf("DecodeDigestReply returned %d buckets from %d bytes", len(got.Buckets), len(in))
		}
		for _, x := range got.Buckets {
			if x < 0 || x >= NumBuckets {
				t.Fatalf("DecodeDigestReply accepted bucket %d", x)
			}
		}
		again, err := DecodeDigestReply(got.Encode())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("digest reply changed across re-encoding: %v, %v; want %v", again, err, got)
		}
	})
}

func FuzzDecodeSyncReq(f *testing.F) {
	es := sampleEntries()
	f.Add(SyncReq{}.Encode())
	f.Add(SyncReq{Buckets: []int{0, 7, NumBuckets - 1}, Summaries: []Summary{es[0].Summary(), es[2].Summary()}}.Encode())
	f.Add(hugeCount(tagSyncReq))
	f.Add(append(binary.AppendUvarint([]byte{tagSyncReq}, 0), hugeCount(0)[1:]...))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := checkDecode(t, "DecodeSyncReq", in, DecodeSyncReq)
		if !ok {
			return
		}
		for _, x := range got.Buckets {
			if x < 0 || x >= NumBuckets {
				t.Fatalf("DecodeSyncReq accepted bucket %d", x)
			}
		}
		for _, s := range got.Summaries {
			if len(s.Key) > MaxKeyLen || len(s.Version.Node) > MaxNodeLen {
				t.Fatalf("DecodeSyncReq accepted an oversized summary: %d-byte key, %d-byte node", len(s.Key), len(s.Version.Node))
			}
		}
		again, err := DecodeSyncReq(got.Encode())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("sync request changed across re-encoding: %+v, %v; want %+v", again, err, got)
		}
	})
}

func FuzzDecodeSyncReply(f *testing.F) {
	es := sampleEntries()
	f.Add(SyncReply{}.Encode())
	f.Add(SyncReply{Entries: es, Want: []string{"a", "", "ключ", strings.Repeat("s", MaxKeyLen)}, More: true}.Encode())
	f.Add(SyncReply{Want: []string{strings.Repeat("s", MaxKeyLen+1)}}.Encode())
	f.Add([]byte{tagSyncReply, 2, 0, 0})
	f.Add(append([]byte{tagSyncReply, 0}, hugeCount(0)[1:]...))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := checkDecode(t, "DecodeSyncReply", in, DecodeSyncReply)
		if !ok {
			return
		}
		if len(got.Entries)+len(got.Want) > len(in) {
			t.Fatalf("DecodeSyncReply returned %d entries and %d keys from %d bytes", len(got.Entries), len(got.Want), len(in))
		}
		for _, e := range got.Entries {
			if err := e.Validate(); err != nil {
				t.Fatalf("DecodeSyncReply accepted an invalid entry: %v", err)
			}
		}
		for _, k := range got.Want {
			if len(k) > MaxKeyLen {
				t.Fatalf("DecodeSyncReply accepted a %d-byte key", len(k))
			}
		}
		again, err := DecodeSyncReply(got.Encode())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("sync reply changed across re-encoding: %+v, %v; want %+v", again, err, got)
		}
	})
}

// FuzzMergeThenWrite is the property from issue 7: whatever entry a peer
// sends, and whatever the wall clock reads, Merge either refuses it (and
// changes nothing) or applies a valid one no further ahead than the skew
// bound; afterwards the clock still issues valid versions, a fresh write is
// readable with a version greater than anything accepted, or fails cleanly
// with ErrClockExhausted only when the clock truly is at its limit; and the
// store reopens.
func FuzzMergeThenWrite(f *testing.F) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC).UnixMilli()
	maxWall := MaxTimestamp.WallMillis()
	f.Add(now, uint64(MakeTimestamp(now, 3)), "n2", "k", []byte("v"), false)
	f.Add(now, uint64(MaxTimestamp), "evil", "k", []byte("v"), false)
	f.Add(now, uint64(MakeTimestamp(now+100*365*24*3600*1000, 0)), "evil", "k", []byte{}, false)
	f.Add(now, uint64(MakeTimestamp(now+60_000, 0xffff)), "n2", "fresh", []byte(nil), true)
	f.Add(maxWall, uint64(MaxTimestamp), "n2", "k", []byte("v"), false)
	f.Add(maxWall-1, uint64(MaxTimestamp-1), "n2", "k", []byte("v"), true)
	f.Add(maxWall+1, uint64(1), "n2", "k", []byte("v"), false)
	f.Add(int64(-1000), uint64(1), "n2", "k", []byte("v"), false)
	f.Add(now, uint64(0), "", "", []byte(nil), false)
	f.Add(now, uint64(1)<<63, "n2", "k\n", []byte("v"), false)
	f.Fuzz(func(t *testing.T, nowMs int64, ts uint64, node, key string, value []byte, deleted bool) {
		wall := time.UnixMilli(nowMs)
		b := NewMemBackend()
		s, err := Open(b, Config{Node: "self", Now: func() time.Time { return wall }})
		if err != nil {
			t.Fatal(err)
		}
		e := Entry{Key: key, Value: value, Version: Version{TS: Timestamp(ts), Node: node}, Deleted: deleted}
		if !deleted && e.Value == nil {
			e.Value = []byte{}
		}
		changed, err := s.Merge([]Entry{e})
		accepted := len(changed) == 1
		switch {
		case accepted && err != nil:
			t.Fatalf("Merge applied %+v and returned %v", e, err)
		case !accepted && err == nil:
			t.Fatalf("Merge of one entry into an empty store = nothing, nil; want it applied or an error")
		case !accepted:
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrClockSkew) && !errors.Is(err, ErrInvalidKey) && !errors.Is(err, ErrValueTooLarge) {
				t.Fatalf("Merge refused with %v; want a validation error or ErrClockSkew", err)
			}
			if st := s.Stats(); st.Keys+st.Tombstones != 0 || s.Clock().Last() != 0 {
				t.Fatalf("a refused entry changed the store: %+v, clock %v", st, s.Clock().Last())
			}
		default:
			if err := e.Validate(); err != nil {
				t.Fatalf("Merge accepted an invalid entry: %v", err)
			}
			if ahead := e.Version.TS.WallMillis() - nowMs; ahead > DefaultMaxClockSkew.Milliseconds() {
				t.Fatalf("Merge accepted an entry %d ms ahead of the wall clock", ahead)
			}
		}

		fresh, err := s.Put("fresh/write", []byte("fresh"))
		if err != nil {
			atLimit := nowMs > MaxTimestamp.WallMillis() || s.Clock().Last() == MaxTimestamp
			if !errors.Is(err, ErrClockExhausted) || !atLimit {
				t.Fatalf("Put after Merge = %v (clock %v, wall %d); only a clock at its limit may fail", err, s.Clock().Last(), nowMs)
			}
			if key != "fresh/write" || !accepted {
				if _, err := s.Get("fresh/write"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("a failed Put left something readable: %v", err)
				}
			}
		} else {
			if err := fresh.Validate(); err != nil {
				t.Fatalf("Put stamped an invalid version: %v", err)
			}
			if accepted && fresh.Version.TS <= e.Version.TS {
				t.Fatalf("Put stamped %v, not after the accepted %v", fresh.Version, e.Version)
			}
			got, err := s.Get("fresh/write")
			if err != nil || !entryEqual(got, fresh) {
				t.Fatalf("Get(fresh/write) = %+v, %v; want %+v", got, err, fresh)
			}
		}
		s2, err := Open(b, Config{Node: "self", Now: func() time.Time { return wall }})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if q := s2.Quarantined(); len(q) != 0 || s2.Digest() != s.Digest() {
			t.Fatalf("reopen set aside %v or rebuilt another digest", q)
		}
	})
}
