package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// Binary encoding of entries and anti-entropy messages. It is used both on
// disk and on the wire, so it is compact and versioned by a leading byte.
// Every decoder checks bounds and limits and returns an error wrapping
// ErrCorrupt for malformed input; it never panics and never allocates more
// than the input's size.
//
//	entry   = key:string ts:u64le node:string flags:u8 value:bytes
//	record  = ts:u64le node:string flags:u8 value:bytes [vhash:u64le]
//	string  = len:uvarint data
//	batch   = 0x01 count:uvarint entry*
//	sums    = 0x02 count:uvarint (key:string ts:u64le node:string flags:u8 vhash:u64le)*
//	digest  = 0x03 u64le * NumBuckets
//	dreply  = 0x04 buckets                                  (DigestReply)
//	sreq    = 0x06 buckets sums-body                        (SyncReq)
//	sreply  = 0x07 more:u8 count:uvarint entry* count:uvarint string*  (SyncReply)
//	buckets = count:uvarint bucket:uvarint*
//	sums-body = count:uvarint (key:string ts:u64le node:string flags:u8 vhash:u64le)*
//
// A DigestReq is a digest. The messages of the exchange are explained in
// sync.go.
//
// A record is the form stored on disk. AppendRecord sets flagHashed and
// appends the xxhash64 of the value, the hash the digest uses, so that
// damaged value bytes that still decode are found when read (records
// written before the hash was added have no flag and no hash). On the wire
// an entry carries no hash and flagHashed is refused.

const (
	tagBatch       = 0x01
	tagSums        = 0x02
	tagDigest      = 0x03
	tagDigestReply = 0x04
	tagSyncReq     = 0x06
	tagSyncReply   = 0x07

	flagDeleted = 1
	flagHashed  = 2 // records only: a value hash follows the value
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendVersion(b []byte, v Version, flags byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(v.TS))
	b = appendString(b, v.Node)
	return append(b, flags)
}

func deletedFlag(deleted bool) byte {
	if deleted {
		return flagDeleted
	}
	return 0
}

// AppendEntry appends the wire encoding of e to b.
func AppendEntry(b []byte, e Entry) []byte {
	b = appendString(b, e.Key)
	b = appendVersion(b, e.Version, deletedFlag(e.Deleted))
	b = binary.AppendUvarint(b, uint64(len(e.Value)))
	return append(b, e.Value...)
}

// AppendRecord appends the encoding of e without its key, and with the
// hash of its value, to b: the form a Backend that keeps the key elsewhere
// (store/badger) stores as the value. DecodeRecord reverses it and checks
// the hash.
func AppendRecord(b []byte, e Entry) []byte {
	b = appendVersion(b, e.Version, deletedFlag(e.Deleted)|flagHashed)
	b = binary.AppendUvarint(b, uint64(len(e.Value)))
	b = append(b, e.Value...)
	return binary.LittleEndian.AppendUint64(b, xxhash.Sum64(e.Value))
}

// EncodeBatch encodes entries as one message.
func EncodeBatch(es []Entry) []byte {
	n := 8
	for _, e := range es {
		n += len(e.Key) + len(e.Value) + len(e.Version.Node) + 16
	}
	b := make([]byte, 0, n)
	b = append(b, tagBatch)
	b = binary.AppendUvarint(b, uint64(len(es)))
	for _, e := range es {
		b = AppendEntry(b, e)
	}
	return b
}

// EncodeSummaries encodes summaries as one message.
func EncodeSummaries(ss []Summary) []byte {
	return appendSummaries([]byte{tagSums}, ss)
}

func appendSummaries(b []byte, ss []Summary) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s.Key)
		b = appendVersion(b, s.Version, deletedFlag(s.Deleted))
		b = binary.LittleEndian.AppendUint64(b, s.ValueHash)
	}
	return b
}

// EncodeDigest encodes a digest.
func EncodeDigest(d *Digest) []byte {
	b := make([]byte, 0, 1+8*NumBuckets)
	b = append(b, tagDigest)
	for _, v := range d {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func appendBuckets(b []byte, xs []int) []byte {
	b = binary.AppendUvarint(b, uint64(len(xs)))
	for _, x := range xs {
		b = binary.AppendUvarint(b, uint64(x))
	}
	return b
}

// Encode encodes the message; DecodeDigestReq reverses it.
func (m DigestReq) Encode() []byte { return EncodeDigest(&m.Digest) }

// Encode encodes the message; DecodeDigestReply reverses it.
func (m DigestReply) Encode() []byte { return appendBuckets([]byte{tagDigestReply}, m.Buckets) }

// Encode encodes the message; DecodeSyncReq reverses it.
func (m SyncReq) Encode() []byte {
	b := appendBuckets([]byte{tagSyncReq}, m.Buckets)
	return appendSummaries(b, m.Summaries)
}

// Encode encodes the message; DecodeSyncReply reverses it.
func (m SyncReply) Encode() []byte {
	n := 16
	for _, e := range m.Entries {
		n += EntrySize(e)
	}
	for _, k := range m.Want {
		n += len(k) + binary.MaxVarintLen32
	}
	b := make([]byte, 0, n)
	b = append(b, tagSyncReply, 0)
	if m.More {
		b[1] = 1
	}
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	for _, e := range m.Entries {
		b = AppendEntry(b, e)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Want)))
	for _, k := range m.Want {
		b = appendString(b, k)
	}
	return b
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or invalid %s", ErrCorrupt, what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64(what string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail(what)
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) byte1(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes(what string, max int) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) || n > uint64(max) {
		d.fail(what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(what string, max int) string { return string(d.bytes(what, max)) }

// count reads an element count and checks that the input could hold that
// many elements of at least min bytes each.
func (d *decoder) count(what string, min int) int {
	n := d.uvarint(what)
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.fail(what)
		return 0
	}
	return int(n)
}

func (d *decoder) tag(want byte, what string) {
	if d.byte1(what) != want && d.err == nil {
		d.err = fmt.Errorf("%w: not a %s message", ErrCorrupt, what)
	}
}

func (d *decoder) end(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes after %s", ErrCorrupt, len(d.b), what)
	}
	return d.err
}

// version reads a version and its flags; flags outside allowed fail.
func (d *decoder) version(what string, allowed byte) (Version, byte) {
	ts := d.u64(what)
	node := d.str(what, MaxNodeLen)
	f := d.byte1(what)
	if d.err == nil && f&^allowed != 0 {
		d.fail(what + " flags")
	}
	return Version{TS: Timestamp(ts), Node: node}, f
}

func (d *decoder) entry() Entry {
	key := d.str("entry key", MaxKeyLen)
	return d.record(key, flagDeleted)
}

// record reads a record; with flagHashed allowed and set, it reads and
// checks the value hash after the value.
func (d *decoder) record(key string, allowed byte) Entry {
	e := Entry{Key: key}
	var f byte
	e.Version, f = d.version("entry version", allowed)
	e.Deleted = f&flagDeleted != 0
	v := d.bytes("entry value", MaxValueLen)
	if f&flagHashed != 0 {
		h := d.u64("entry value hash")
		if d.err == nil && h != xxhash.Sum64(v) {
			d.err = fmt.Errorf("%w: value of %q does not match its hash", ErrCorrupt, key)
		}
	}
	if len(v) > 0 {
		e.Value = append([]byte(nil), v...)
	} else if !e.Deleted {
		e.Value = []byte{}
	}
	return e
}

// DecodeEntry decodes one entry encoded by AppendEntry and checks it. An
// entry that decodes but fails Validate is reported as ErrCorrupt wrapping
// the validation error. The entry does not alias b.
func DecodeEntry(b []byte) (Entry, error) {
	d := decoder{b: b}
	e := d.entry()
	if err := d.end("entry"); err != nil {
		return Entry{}, err
	}
	if err := e.Validate(); err != nil {
		return Entry{}, corrupt(err)
	}
	return e, nil
}

// DecodeRecord decodes a record made by AppendRecord, gives it key, and
// checks it as DecodeEntry does. The entry does not alias b.
func DecodeRecord(key string, b []byte) (Entry, error) {
	d := decoder{b: b}
	e := d.record(key, flagDeleted|flagHashed)
	if err := d.end("record"); err != nil {
		return Entry{}, err
	}
	if err := e.Validate(); err != nil {
		return Entry{}, corrupt(err)
	}
	return e, nil
}

// corrupt marks a validation error found while decoding as ErrCorrupt too,
// keeping the original sentinel (ErrInvalidKey, ErrValueTooLarge) visible
// to errors.Is.
func corrupt(err error) error {
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}

// DecodeBatch decodes a message made by EncodeBatch and validates every
// entry; an invalid entry fails the whole batch with ErrCorrupt. The
// entries do not alias b.
func DecodeBatch(b []byte) ([]Entry, error) {
	d := decoder{b: b}
	d.tag(tagBatch, "batch")
	n := d.count("batch count", 12)
	out := make([]Entry, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		e := d.entry()
		if d.err == nil {
			if err := e.Validate(); err != nil {
				return nil, fmt.Errorf("batch entry %d: %w", i, corrupt(err))
			}
		}
		out = append(out, e)
	}
	if err := d.end("batch"); err != nil {
		return nil, err
	}
	return out, nil
}

// DecodeSummaries decodes a message made by EncodeSummaries.
func DecodeSummaries(b []byte) ([]Summary, error) {
	d := decoder{b: b}
	d.tag(tagSums, "summaries")
	out := d.summaries()
	if err := d.end("summaries"); err != nil {
		return nil, err
	}
	return out, nil
}

func (d *decoder) summaries() []Summary {
	n := d.count("summaries count", 19)
	out := make([]Summary, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		var s Summary
		s.Key = d.str("summary key", MaxKeyLen)
		var f byte
		s.Version, f = d.version("summary version", flagDeleted)
		s.Deleted = f&flagDeleted != 0
		s.ValueHash = d.u64("summary value hash")
		out = append(out, s)
	}
	return out
}

// DecodeDigest decodes a message made by EncodeDigest.
func DecodeDigest(b []byte) (*Digest, error) {
	d := decoder{b: b}
	d.tag(tagDigest, "digest")
	var dg Digest
	for i := range dg {
		dg[i] = d.u64("digest")
	}
	if err := d.end("digest"); err != nil {
		return nil, err
	}
	return &dg, nil
}

// buckets reads a list of bucket numbers; each must be below NumBuckets.
func (d *decoder) buckets() []int {
	n := d.count("bucket count", 1)
	out := make([]int, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		v := d.uvarint("bucket")
		if d.err == nil && v >= NumBuckets {
			d.err = fmt.Errorf("%w: bucket %d out of range", ErrCorrupt, v)
		}
		out = append(out, int(v))
	}
	return out
}

// DecodeDigestReq decodes a message made by DigestReq.Encode.
func DecodeDigestReq(b []byte) (DigestReq, error) {
	d, err := DecodeDigest(b)
	if err != nil {
		return DigestReq{}, err
	}
	return DigestReq{Digest: *d}, nil
}

// DecodeDigestReply decodes a message made by DigestReply.Encode.
func DecodeDigestReply(b []byte) (DigestReply, error) {
	d := decoder{b: b}
	d.tag(tagDigestReply, "digest reply")
	m := DigestReply{Buckets: d.buckets()}
	if err := d.end("digest reply"); err != nil {
		return DigestReply{}, err
	}
	return m, nil
}

// DecodeSyncReq decodes a message made by SyncReq.Encode.
func DecodeSyncReq(b []byte) (SyncReq, error) {
	d := decoder{b: b}
	d.tag(tagSyncReq, "sync request")
	m := SyncReq{Buckets: d.buckets()}
	m.Summaries = d.summaries()
	if err := d.end("sync request"); err != nil {
		return SyncReq{}, err
	}
	return m, nil
}

// DecodeSyncReply decodes a message made by SyncReply.Encode and validates
// every entry as DecodeBatch does. The entries do not alias b.
func DecodeSyncReply(b []byte) (SyncReply, error) {
	d := decoder{b: b}
	d.tag(tagSyncReply, "sync reply")
	var m SyncReply
	switch d.byte1("sync reply more flag") {
	case 0:
	case 1:
		m.More = true
	default:
		d.fail("sync reply more flag")
	}
	n := d.count("sync reply entry count", 12)
	m.Entries = make([]Entry, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		e := d.entry()
		if d.err == nil {
			if err := e.Validate(); err != nil {
				return SyncReply{}, fmt.Errorf("sync reply entry %d: %w", i, corrupt(err))
			}
		}
		m.Entries = append(m.Entries, e)
	}
	n = d.count("sync reply want count", 1)
	m.Want = make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		m.Want = append(m.Want, d.str("wanted key", MaxKeyLen))
	}
	if err := d.end("sync reply"); err != nil {
		return SyncReply{}, err
	}
	return m, nil
}
