package store

// The anti-entropy exchange, as pure functions over typed messages. The
// asking node (A) reconciles with a peer (B) in at most three messages:
//
//	A -> B  DigestReq  A's digest               B: DigestReply, the differing buckets
//	                                               (none while B runs its own round)
//	A -> B  SyncReq    those buckets and A's    B: SyncReply, the entries A lacks (at most
//	                   summaries of every key      SyncChunk bytes, More if cut) and the
//	                   in them (at most            keys B lacks
//	                   MaxSyncSummaries bytes)
//	A -> B  push       the entries B lacks, in batches of at most SyncChunk bytes
//
// Both sides end with the newer version of every key in those buckets. A
// round is cut short when A's summaries would exceed MaxSyncSummaries (A
// sends as many whole buckets as fit, starting at a bucket the caller picks
// at random so that cut rounds still reach every bucket) or when B has more
// than SyncChunk bytes to give; then the round reports more and the caller
// runs another. Nothing here sends, sleeps or picks at random: the peer is
// injected (SyncPeer) and the starting point is an argument. The wire form
// of each message is in codec.go.

import (
	"errors"
	"fmt"
	"slices"
)

const (
	// SyncChunk is the most bytes of entries (by EntrySize) in one sync
	// reply or one push of wanted entries.
	SyncChunk = 4 << 20
	// MaxSyncSummaries is the most bytes of summaries (by SummarySize) in
	// one sync request.
	MaxSyncSummaries = SyncChunk / 2
)

// DigestReq opens a round: the asker's digest.
type DigestReq struct{ Digest Digest }

// DigestReply lists the buckets in which the two digests differ; empty
// means no difference (or that the peer is busy with its own round).
type DigestReply struct{ Buckets []int }

// SyncReq carries the asker's summaries of every key in Buckets.
type SyncReq struct {
	Buckets   []int
	Summaries []Summary
}

// SyncReply carries the entries the asker lacks, the keys the peer wants
// from the asker, and whether the peer had more to give than fitted.
type SyncReply struct {
	Entries []Entry
	Want    []string
	More    bool
}

// EntrySize is the size estimate of e on the wire used for every byte limit
// on entries: key and value plus a fixed allowance for version and framing.
func EntrySize(e Entry) int { return len(e.Key) + len(e.Value) + 32 }

// SummarySize is the size estimate of s on the wire used for the limit on
// summaries in a sync request.
func SummarySize(s Summary) int { return len(s.Key) + len(s.Version.Node) + 24 }

// ServeDigest answers a round's opening message. A node busy with its own
// rounds answers "no difference": during a catch-up each peer's round would
// send it the summaries of every key it lacks and then push them all,
// repeating what it pulls. The asker tries again at its next tick.
func (s *Store) ServeDigest(req DigestReq, busy bool) DigestReply {
	if busy {
		return DigestReply{}
	}
	d := s.Digest()
	return DigestReply{Buckets: d.Diff(&req.Digest)}
}

// SyncRequest builds the asker's second message for the differing buckets:
// the summaries of as many whole buckets as fit in limit bytes (at least
// one bucket), taken in list order from buckets[start%len(buckets)] on, and
// reports whether buckets were left out. The caller passes a random start.
func (s *Store) SyncRequest(buckets []int, limit, start int) (req SyncReq, cut bool) {
	sums := s.Summaries(buckets)
	size := map[int]int{}
	total := 0
	for _, sm := range sums {
		n := SummarySize(sm)
		size[BucketOf(sm.Key)] += n
		total += n
	}
	if total <= limit || len(buckets) <= 1 {
		return SyncReq{Buckets: buckets, Summaries: sums}, false
	}
	off := start % len(buckets)
	if off < 0 {
		off += len(buckets)
	}
	var keep []int
	in := map[int]bool{}
	used := 0
	for i := range buckets {
		b := buckets[(off+i)%len(buckets)]
		if len(keep) > 0 && used+size[b] > limit {
			continue
		}
		keep = append(keep, b)
		in[b] = true
		used += size[b]
	}
	out := sums[:0:0]
	for _, sm := range sums {
		if in[BucketOf(sm.Key)] {
			out = append(out, sm)
		}
	}
	return SyncReq{Buckets: keep, Summaries: out}, true
}

// ServeSync answers a sync request: the entries the asker lacks, at most
// limit bytes of them (at least one), More if some were left, and the keys
// the asker should push. An error wrapping ErrCorrupt means damaged stored
// records were left out (and set aside); the reply is still good to send.
func (s *Store) ServeSync(req SyncReq, limit int) (SyncReply, error) {
	give, take := s.Compare(req.Buckets, req.Summaries)
	es, rest, err := s.EntriesUpTo(give, limit)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return SyncReply{}, err
	}
	return SyncReply{Entries: es, Want: take, More: len(rest) > 0}, err
}

// entriesStep is how many keys EntriesUpTo reads at a time: it holds at
// most entriesStep values past its limit.
const entriesStep = 64

// EntriesUpTo reads the stored entries of keys, in order, while they fit in
// limit bytes (at least one entry), and returns them with the keys it did
// not reach. It reads entriesStep keys at a time, so a long list of keys
// with large values costs limit bytes of memory, not the whole list: one
// sync request naming every bucket made a node holding 3000 values of 60 KiB
// read all 180 MB to send 4 MiB. Damaged records are left out (Entries sets
// them aside) and reported in an error wrapping ErrCorrupt, returned with
// the good entries and the rest.
func (s *Store) EntriesUpTo(keys []string, limit int) (es []Entry, rest []string, err error) {
	size := 0
	var damaged error
	for len(keys) > 0 {
		n := min(len(keys), entriesStep)
		got, err := s.Entries(keys[:n])
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return nil, nil, err
			}
			damaged = errors.Join(damaged, err)
		}
		for _, e := range got {
			sz := EntrySize(e)
			if size+sz > limit && len(es) > 0 {
				// Full: the rest, from this entry's key on, waits.
				return es, keys[slices.Index(keys[:n], e.Key):], damaged
			}
			size += sz
			es = append(es, e)
		}
		keys = keys[n:]
	}
	return es, keys, damaged
}

// SyncPeer is the other side of a round as the asker sees it: the daemon
// implements it over its transport, tests over another Store. Push may be
// called several times in one round.
type SyncPeer interface {
	Digest(DigestReq) (DigestReply, error)
	Sync(SyncReq) (SyncReply, error)
	Push([]Entry) error
}

// SyncRound runs one round with p as the asker and reports whether p had
// more to exchange than fitted (the caller runs another round). apply merges
// the entries p sent; an error from it ends the round, as does any error
// from p. start picks where a cut sync request begins (see SyncRequest).
// damaged, when not nil, wraps ErrCorrupt and names our own stored records
// that were damaged and left out of what was pushed (they are set aside);
// the round is complete otherwise.
func (s *Store) SyncRound(p SyncPeer, start int, apply func([]Entry) error) (more bool, damaged, err error) {
	d := s.Digest()
	dr, err := p.Digest(DigestReq{Digest: d})
	if err != nil {
		return false, nil, err
	}
	if len(dr.Buckets) == 0 {
		return false, nil, nil
	}
	req, cut := s.SyncRequest(dr.Buckets, MaxSyncSummaries, start)
	reply, err := p.Sync(req)
	if err != nil {
		return false, nil, err
	}
	if len(reply.Entries) > 0 {
		if err := apply(reply.Entries); err != nil {
			return false, nil, err
		}
	}
	want := reply.Want
	for len(want) > 0 {
		es, rest, err := s.EntriesUpTo(want, SyncChunk)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return false, damaged, err
			}
			damaged = errors.Join(damaged, err)
		}
		if len(es) > 0 {
			if err := p.Push(es); err != nil {
				return false, damaged, fmt.Errorf("push wanted entries: %w", err)
			}
		}
		want = rest
	}
	return cut || reply.More, damaged, nil
}
