package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand"
	"reflect"
	"strings"
	"testing"
)

func sampleEntries() []Entry {
	return []Entry{
		{Key: "a", Value: []byte("1"), Version: Version{TS: 1, Node: "n1"}},
		{Key: "empty", Value: []byte{}, Version: Version{TS: MakeTimestamp(1700000000000, 3), Node: "n2"}},
		{Key: "gone", Deleted: true, Version: Version{TS: 99, Node: "n3"}},
		{Key: strings.Repeat("k", MaxKeyLen), Value: bytes.Repeat([]byte{0xff}, MaxValueLen), Version: Version{TS: MaxTimestamp, Node: strings.Repeat("n", MaxNodeLen)}},
		{Key: "ключ", Value: []byte{0, 1, 2}, Version: Version{TS: 7, Node: "узел"}},
	}
}

// encodings returns one valid message of every type, with its decoder.
func encodings() map[string]struct {
	msg []byte
	dec func([]byte) (any, error)
} {
	var dg Digest
	r := rand.New(rand.NewSource(1))
	for i := range dg {
		dg[i] = r.Uint64()
	}
	type codec = struct {
		msg []byte
		dec func([]byte) (any, error)
	}
	wrap := func(f func([]byte) (any, error)) func([]byte) (any, error) { return f }
	es := sampleEntries()
	return map[string]codec{
		"entry":     {AppendEntry(nil, es[0]), wrap(func(b []byte) (any, error) { return DecodeEntry(b) })},
		"record":    {AppendRecord(nil, es[2]), wrap(func(b []byte) (any, error) { return DecodeRecord("gone", b) })},
		"batch":     {EncodeBatch(es), wrap(func(b []byte) (any, error) { return DecodeBatch(b) })},
		"summaries": {EncodeSummaries([]Summary{es[0].Summary(), es[2].Summary()}), wrap(func(b []byte) (any, error) { return DecodeSummaries(b) })},
		"digest":    {EncodeDigest(&dg), wrap(func(b []byte) (any, error) { return DecodeDigest(b) })},
		"dreply":    {DigestReply{Buckets: []int{0, 1, 1023, 300}}.Encode(), wrap(func(b []byte) (any, error) { return DecodeDigestReply(b) })},
		"sreq":      {SyncReq{Buckets: []int{3, 7}, Summaries: []Summary{es[0].Summary()}}.Encode(), wrap(func(b []byte) (any, error) { return DecodeSyncReq(b) })},
		"sreply":    {SyncReply{Entries: es, Want: []string{"a", "", "ключ"}, More: true}.Encode(), wrap(func(b []byte) (any, error) { return DecodeSyncReply(b) })},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	es := sampleEntries()
	for _, e := range es {
		got, err := DecodeEntry(AppendEntry(nil, e))
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Errorf("DecodeEntry(AppendEntry(%q)) = %+v, %v", e.Key, got, err)
		}
		got, err = DecodeRecord(e.Key, AppendRecord(nil, e))
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Errorf("DecodeRecord(AppendRecord(%q)) = %+v, %v", e.Key, got, err)
		}
	}
	for _, batch := range [][]Entry{nil, es[:1], es} {
		got, err := DecodeBatch(EncodeBatch(batch))
		if err != nil || len(got) != len(batch) || (len(batch) > 0 && !reflect.DeepEqual(got, batch)) {
			t.Errorf("DecodeBatch(EncodeBatch(%d entries)) = %d entries, %v", len(batch), len(got), err)
		}
	}
	var sums []Summary
	for _, e := range es {
		sums = append(sums, e.Summary())
	}
	if got, err := DecodeSummaries(EncodeSummaries(sums)); err != nil || !reflect.DeepEqual(got, sums) {
		t.Errorf("DecodeSummaries round trip = %v, %v", got, err)
	}
	var dg Digest
	for i := range dg {
		dg[i] = uint64(i) * 0x9e3779b97f4a7c15
	}
	if got, err := DecodeDigest(EncodeDigest(&dg)); err != nil || *got != dg {
		t.Errorf("DecodeDigest round trip failed: %v", err)
	}
	dr := DigestReply{Buckets: []int{0, 5, NumBuckets - 1}}
	if got, err := DecodeDigestReply(dr.Encode()); err != nil || !reflect.DeepEqual(got, dr) {
		t.Errorf("DecodeDigestReply round trip = %v, %v", got, err)
	}
	if got, err := DecodeDigestReq(DigestReq{Digest: dg}.Encode()); err != nil || got.Digest != dg {
		t.Errorf("DecodeDigestReq round trip failed: %v", err)
	}
	sq := SyncReq{Buckets: []int{0, 9}, Summaries: sums}
	if got, err := DecodeSyncReq(sq.Encode()); err != nil || !reflect.DeepEqual(got, sq) {
		t.Errorf("DecodeSyncReq round trip = %v, %v", got, err)
	}
	strs := []string{"", "a", strings.Repeat("s", MaxKeyLen)}
	for _, sr := range []SyncReply{{Entries: []Entry{}, Want: []string{}}, {Entries: es, Want: strs, More: true}} {
		if got, err := DecodeSyncReply(sr.Encode()); err != nil || !reflect.DeepEqual(got, sr) {
			t.Errorf("DecodeSyncReply round trip = %+v, %v; want %+v", got, err, sr)
		}
	}
}

func TestDecodedEntriesDoNotAliasInput(t *testing.T) {
	msg := EncodeBatch(sampleEntries()[:1])
	got, _ := DecodeBatch(msg)
	for i := range msg {
		msg[i] = 0
	}
	if string(got[0].Value) != "1" {
		t.Fatalf("decoded value changed with the input buffer: %q", got[0].Value)
	}
}

func wantCorrupt(t *testing.T, what string, v any, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s = %v, %v; want ErrCorrupt", what, v, err)
	}
}

// Every strict prefix of a message is truncated, and a trailing byte is
// garbage: both must be rejected.
func TestCodecTruncatedAndTrailing(t *testing.T) {
	for name, c := range encodings() {
		for n := 0; n < len(c.msg); n++ {
			v, err := c.dec(c.msg[:n])
			wantCorrupt(t, name+" truncated", v, err)
		}
		v, err := c.dec(append(append([]byte(nil), c.msg...), 0))
		wantCorrupt(t, name+" with a trailing byte", v, err)
	}
}

// Random mutations and random bytes never panic, and any error is
// ErrCorrupt.
func TestCodecGarbage(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for name, c := range encodings() {
		for i := 0; i < 2000; i++ {
			var in []byte
			if i%2 == 0 {
				in = append([]byte(nil), c.msg...)
				for k := 0; k < 1+r.Intn(4); k++ {
					in[r.Intn(len(in))] = byte(r.Intn(256))
				}
			} else {
				in = make([]byte, r.Intn(64))
				r.Read(in)
				if len(in) > 0 {
					in[0] = byte(1 + r.Intn(5)) // a plausible tag
				}
			}
			if v, err := c.dec(in); err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s on garbage %x = %v, %v; want nil or ErrCorrupt", name, in, v, err)
			}
		}
	}
}

func TestCodecRejects(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		dec  func([]byte) (any, error)
		also error // a second sentinel that must match too
	}{
		{"batch with invalid key", EncodeBatch([]Entry{{Key: "a\nb", Value: []byte{}, Version: Version{TS: 1, Node: "n"}}}),
			func(b []byte) (any, error) { return DecodeBatch(b) }, ErrInvalidKey},
		{"batch with zero version", EncodeBatch([]Entry{{Key: "a", Value: []byte{}}}),
			func(b []byte) (any, error) { return DecodeBatch(b) }, nil},
		{"tombstone with value", EncodeBatch([]Entry{{Key: "a", Value: []byte("v"), Deleted: true, Version: Version{TS: 1, Node: "n"}}}),
			func(b []byte) (any, error) { return DecodeBatch(b) }, nil},
		{"entry with invalid key", AppendEntry(nil, Entry{Key: "\x7f", Value: []byte{}, Version: Version{TS: 1, Node: "n"}}),
			func(b []byte) (any, error) { return DecodeEntry(b) }, ErrInvalidKey},
		{"record with empty key", AppendRecord(nil, Entry{Value: []byte{}, Version: Version{TS: 1, Node: "n"}}),
			func(b []byte) (any, error) { return DecodeRecord("", b) }, ErrInvalidKey},
		{"value too large", EncodeBatch([]Entry{{Key: "a", Value: make([]byte, MaxValueLen+1), Version: Version{TS: 1, Node: "n"}}}),
			func(b []byte) (any, error) { return DecodeBatch(b) }, nil},
		{"key too long", SyncReply{Want: []string{strings.Repeat("k", MaxKeyLen+1)}}.Encode(),
			func(b []byte) (any, error) { return DecodeSyncReply(b) }, nil},
		{"bad more flag", []byte{tagSyncReply, 2, 0, 0},
			func(b []byte) (any, error) { return DecodeSyncReply(b) }, nil},
		{"bucket out of range", DigestReply{Buckets: []int{NumBuckets}}.Encode(),
			func(b []byte) (any, error) { return DecodeDigestReply(b) }, nil},
		{"unknown flag", func() []byte {
			m := EncodeBatch(sampleEntries()[:1])
			m[len(m)-3] = 0x80 // the flags byte, before value length and value
			return m
		}(), func(b []byte) (any, error) { return DecodeBatch(b) }, nil},
		{"wrong tag", DigestReply{Buckets: []int{1}}.Encode(), func(b []byte) (any, error) { return DecodeSyncReq(b) }, nil},
		{"empty", nil, func(b []byte) (any, error) { return DecodeBatch(b) }, nil},
		{"huge count", binary.AppendUvarint([]byte{tagBatch}, 1<<60), func(b []byte) (any, error) { return DecodeBatch(b) }, nil},
		{"huge int", binary.AppendUvarint([]byte{tagDigestReply, 1}, 1<<40), func(b []byte) (any, error) { return DecodeDigestReply(b) }, nil},
		{"overlong varint", append([]byte{tagDigestReply}, bytes.Repeat([]byte{0xff}, 11)...), func(b []byte) (any, error) { return DecodeDigestReply(b) }, nil},
	}
	for _, tt := range tests {
		v, err := tt.dec(tt.msg)
		wantCorrupt(t, tt.name, v, err)
		if tt.also != nil && !errors.Is(err, tt.also) {
			t.Errorf("%s = %v; want it to match %v too", tt.name, err, tt.also)
		}
	}
}

// FuzzDecodeBatch checks that DecodeBatch never panics, returns only
// ErrCorrupt errors, and that whatever it accepts is valid and survives
// a re-encoding unchanged. `go test` runs the seeds; `go test
// -fuzz=FuzzDecodeBatch ./store/` explores further.
func FuzzDecodeBatch(f *testing.F) {
	es := sampleEntries()
	f.Add(EncodeBatch(nil))
	f.Add(EncodeBatch(es[:1]))
	f.Add(EncodeBatch(es[:3]))
	f.Add(EncodeBatch([]Entry{es[4], es[2]}))
	f.Add(EncodeBatch(es)[:40])
	f.Add([]byte{tagBatch, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{tagDigest})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := DecodeBatch(in)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeBatch error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		for _, e := range got {
			if err := e.Validate(); err != nil {
				t.Fatalf("DecodeBatch accepted an invalid entry: %v", err)
			}
		}
		again, err := DecodeBatch(EncodeBatch(got))
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if len(again) != len(got) {
			t.Fatalf("re-decoded %d entries; want %d", len(again), len(got))
		}
		for i := range got {
			if !reflect.DeepEqual(again[i], got[i]) {
				t.Fatalf("entry %d changed across re-encoding: %+v vs %+v", i, again[i], got[i])
			}
		}
	})
}

// A stored record carries its value's hash: damaged value bytes that still
// decode are caught (issue 7), records written before the hash still load,
// and the wire form neither carries nor accepts it.
func TestRecordValueHash(t *testing.T) {
	e := Entry{Key: "k", Value: []byte("value"), Version: Version{TS: 5, Node: "n"}}
	rec := AppendRecord(nil, e)
	i := bytes.Index(rec, []byte("value"))
	damaged := append([]byte(nil), rec...)
	damaged[i] ^= 0x20
	if got, err := DecodeRecord("k", damaged); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("DecodeRecord(damaged value) = %+v, %v; want ErrCorrupt", got, err)
	}
	// The layout before the hash: flags without flagHashed, no hash.
	old := append([]byte(nil), rec[:len(rec)-8]...)
	old[i-2] &^= flagHashed // the flags byte, before the value length
	if got, err := DecodeRecord("k", old); err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("DecodeRecord(record without hash) = %+v, %v; want %+v", got, err, e)
	}
	if wire := AppendEntry(nil, e); bytes.Contains(wire, rec[len(rec)-8:]) {
		t.Fatal("the wire form carries the value hash")
	}
	hashedWire := append(appendString(nil, "k"), rec...)
	if got, err := DecodeEntry(hashedWire); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("DecodeEntry(entry with flagHashed) = %+v, %v; want ErrCorrupt", got, err)
	}
}
