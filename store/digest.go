package store

import (
	"encoding/binary"
	"sort"

	"github.com/cespare/xxhash/v2"
)

// Anti-entropy compares what two nodes hold without sending it. Keys are
// spread over NumBuckets buckets by a hash of the key; a bucket's hash is the
// XOR of the hashes of its entries' (key, version, deleted, value hash)
// summaries. XOR
// makes the digest cheap to keep current: replacing an entry XORs the old
// summary out and the new one in. Two nodes exchange the NumBuckets hashes
// (8 KiB), and only the buckets whose hashes differ are listed key by key.
// The hash is fixed (xxhash64), so every node, of any build, buckets and
// hashes alike.
//
// The value hash makes two copies of one version with different bytes (a
// damaged disk, a forged push) differ in the digest. Summaries cannot say
// which bytes win, so compare lists such a key both ways: each side sends
// its copy, and Merge keeps the Entry.Newer winner on both.

// NumBuckets is the number of digest buckets. Changing it is a protocol change.
const NumBuckets = 1024

// Digest summarises a node's entries: one hash per bucket. Two nodes whose
// digests are equal hold the same versions of the same keys, tombstones
// included (up to hash collisions, 2^-64 per bucket).
type Digest [NumBuckets]uint64

// Diff returns, in increasing order, the buckets in which d and o differ.
func (d *Digest) Diff(o *Digest) []int {
	var out []int
	for i := range d {
		if d[i] != o[i] {
			out = append(out, i)
		}
	}
	return out
}

// Sum folds the digest into one hash, for a quick "are we equal" check.
func (d *Digest) Sum() uint64 {
	h := xxhash.New()
	var b [8]byte
	for _, v := range d {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	return h.Sum64()
}

// BucketOf returns the digest bucket that holds key.
func BucketOf(key string) int {
	return int(xxhash.Sum64String(key) % NumBuckets)
}

// Summary is what anti-entropy compares: an entry with its value replaced
// by the value's hash.
type Summary struct {
	Key       string
	Version   Version
	Deleted   bool
	ValueHash uint64 // xxhash64 of the value bytes (of nothing for a tombstone)
}

// Summary returns e with its value replaced by its hash.
func (e Entry) Summary() Summary {
	return Summary{Key: e.Key, Version: e.Version, Deleted: e.Deleted, ValueHash: xxhash.Sum64(e.Value)}
}

func (s Summary) hash() uint64 {
	h := xxhash.New()
	var b [17]byte
	h.WriteString(s.Key)
	h.Write([]byte{0})
	binary.LittleEndian.PutUint64(b[:8], uint64(s.Version.TS))
	if s.Deleted {
		b[8] = 1
	}
	binary.LittleEndian.PutUint64(b[9:], s.ValueHash)
	h.Write(b[:])
	h.WriteString(s.Version.Node)
	return h.Sum64()
}

// newer reports whether s supersedes t (same rule as Entry.Newer, without
// the value tie-break, which summaries cannot see).
func (s Summary) newer(t Summary) bool {
	if c := s.Version.Compare(t.Version); c != 0 {
		return c > 0
	}
	return s.Deleted && !t.Deleted
}

// index holds the summary of every entry, grouped by bucket, and the
// running digest. It is not safe for concurrent use; Store guards it.
type index struct {
	buckets    [NumBuckets]map[string]Summary
	digest     Digest
	keys       int // live keys
	tombstones int
}

func newIndex() *index {
	x := &index{}
	for i := range x.buckets {
		x.buckets[i] = make(map[string]Summary)
	}
	return x
}

func (x *index) get(key string) (Summary, bool) {
	s, ok := x.buckets[BucketOf(key)][key]
	return s, ok
}

// set records s, replacing any previous summary of the same key.
func (x *index) set(s Summary) {
	b := BucketOf(s.Key)
	if old, ok := x.buckets[b][s.Key]; ok {
		x.digest[b] ^= old.hash()
		x.count(old, -1)
	}
	x.buckets[b][s.Key] = s
	x.digest[b] ^= s.hash()
	x.count(s, 1)
}

func (x *index) remove(key string) {
	b := BucketOf(key)
	if old, ok := x.buckets[b][key]; ok {
		x.digest[b] ^= old.hash()
		x.count(old, -1)
		delete(x.buckets[b], key)
	}
}

func (x *index) count(s Summary, d int) {
	if s.Deleted {
		x.tombstones += d
	} else {
		x.keys += d
	}
}

// Compare takes a peer's summaries of the given buckets (all of the peer's
// entries in them) and the local index, and returns the keys the peer should
// receive from us (we are newer, or it lacks them) and the keys we should
// fetch from it. A key whose two copies have the same version and deletion
// but different value hashes is in both lists: only the values can break
// that tie (Entry.Newer), so each side gets the other's and keeps the
// winner. It is pure: the same inputs give the same outputs.
func compare(local *index, buckets []int, remote []Summary) (give, take []string) {
	seen := make(map[string]bool, len(remote))
	for _, r := range remote {
		if seen[r.Key] {
			continue // a repeated key would be listed twice
		}
		seen[r.Key] = true
		l, ok := local.get(r.Key)
		switch {
		case !ok || r.newer(l):
			take = append(take, r.Key)
		case l.newer(r):
			give = append(give, r.Key)
		case l.Version == r.Version && l.ValueHash != r.ValueHash:
			give = append(give, r.Key)
			take = append(take, r.Key)
		}
	}
	var done [NumBuckets]bool
	for _, b := range buckets {
		if b < 0 || b >= NumBuckets || done[b] {
			continue
		}
		done[b] = true
		for k := range local.buckets[b] {
			if !seen[k] {
				give = append(give, k)
			}
		}
	}
	sort.Strings(give)
	sort.Strings(take)
	return give, take
}
