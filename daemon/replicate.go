package daemon

// Replication follows both halves of Demers et al. (1987), "Epidemic
// algorithms for replicated database maintenance":
//
// Dissemination (direct mail). A write accepted at a node is queued for every
// alive peer and pushed to it at once; a per-peer worker sends one message at
// a time, so writes that arrive while a push is in flight travel together in
// the next one (batching under load costs no latency when idle). A push that
// fails is dropped: anti-entropy repairs it, and the peer is synced soon.
//
// Anti-entropy. Every SyncInterval a node picks a random alive peer and
// reconciles with it in at most three messages:
//
//	A -> B  digest   A's 1024 bucket hashes          B replies: differing buckets
//	A -> B  sync     the buckets + A's summaries     B replies: entries A lacks
//	                 of every key in them                       + keys B lacks (capped; more=1 if cut)
//	A -> B  push     the entries B lacks (if any)
//
// Both sides end with the newer version of every key in those buckets, so a
// node that was down, partitioned or missed a push converges, and a new empty
// node receives everything (in rounds of at most syncChunk bytes). Merges are
// last-writer-wins (store.Merge), so the order in which pushes and syncs
// arrive does not matter.
//
// All traffic goes through the Transport; handle is the single entry point
// for what arrives.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerctl/peerctl/store"
)

const (
	syncChunk        = 4 << 20       // max bytes of entries in one sync reply
	maxSyncSummaries = syncChunk / 2 // max bytes of summaries in one sync request
	pushChunk        = 1 << 20       // max bytes of entries in one push message
	maxPending       = 32 << 20      // a peer's queue beyond this is dropped; sync repairs
	maxSyncRepeats   = 256           // rounds in a row while a peer says more
)

// A batch from a peer is merged in chunks of at most mergeChunkEntries
// entries or mergeChunkBytes bytes: each Store.Merge holds the store's lock,
// and a local write waits for at most one chunk, not for the whole batch.
const (
	mergeChunkEntries = 256
	mergeChunkBytes   = 256 << 10
)

// Reasons a message or frame from a peer is dropped, the label of
// malformed_dropped in /metrics.
const (
	dropFrame     = "frame"     // a stream frame of unknown kind or bad length
	dropOversize  = "oversize"  // a frame or call body over its limit
	dropTruncated = "truncated" // a frame or body that ended early
	dropDecode    = "decode"    // a message that does not decode
	dropRefused   = "refused"   // entries the store refused (invalid, corrupt, clock skew)
)

var dropReasons = []string{dropFrame, dropOversize, dropTruncated, dropDecode, dropRefused}

// replicator owns dissemination and anti-entropy for one node.
type replicator struct {
	st       *store.Store
	tr       Transport
	log      *slog.Logger
	window   time.Duration
	interval time.Duration
	now      func() time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex // guards peers
	peers map[string]*peer

	syncNow chan string // names of peers to sync with soon

	c            *counters
	pushesSent   atomic.Uint64
	pushesFailed atomic.Uint64
	entriesPush  atomic.Uint64
	applied      atomic.Uint64
	syncRounds   atomic.Uint64
	repaired     atomic.Uint64
	malformed    atomic.Uint64             // messages and frames dropped, all reasons
	drops        map[string]*atomic.Uint64 // by reason; fixed at creation
	warns        *logLimiter               // warnings about what peers send, per address
	lastLag      atomic.Int64              // ms
	avgLag       atomic.Int64              // ms, EWMA
	lagSamples   atomic.Uint64
	inflight     atomic.Int64 // batches taken from a queue, not yet sent
	syncing      atomic.Bool  // in our own rounds: answer digests with "no difference"
	lastSync     atomic.Int64 // unix ms
	rtt          atomic.Int64 // ns, recent minimum of digest round trips

	rttMu   sync.Mutex // guards rttRing, rttNext
	rttRing [rttSamples]time.Duration
	rttNext int

	arrivals *arrivals // nil unless Config.TraceArrivals
}

// peer is an alive member we replicate to.
type peer struct {
	name, addr string
	signal     chan struct{} // buffered 1: pending is non-empty
	done       chan struct{}

	mu           sync.Mutex // guards pending, pendingBytes
	pending      []store.Entry
	pendingBytes int
}

func newReplicator(st *store.Store, tr Transport, c *counters, log *slog.Logger, window, interval time.Duration) *replicator {
	ctx, cancel := context.WithCancel(context.Background())
	return &replicator{
		st: st, tr: tr, c: c, log: log,
		window: window, interval: interval, now: time.Now,
		ctx: ctx, cancel: cancel,
		peers:   make(map[string]*peer),
		syncNow: make(chan string, 64),
		drops:   newDrops(),
		warns:   newLogLimiter(10 * time.Second),
	}
}

func newDrops() map[string]*atomic.Uint64 {
	m := make(map[string]*atomic.Uint64, len(dropReasons))
	for _, k := range dropReasons {
		m[k] = new(atomic.Uint64)
	}
	return m
}

// dropped counts a message or frame from a peer dropped for reason.
func (r *replicator) dropped(reason string) {
	r.malformed.Add(1)
	if c := r.drops[reason]; c != nil {
		c.Add(1)
	}
}

// start runs the anti-entropy loop.
func (r *replicator) start() {
	r.wg.Add(1)
	go r.syncLoop()
}

// stop ends every goroutine and waits for them.
func (r *replicator) stop() {
	r.cancel()
	r.wg.Wait()
}

// setPeer adds or updates an alive peer and starts its push worker.
func (r *replicator) setPeer(name, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.peers[name]; ok {
		if p.addr == addr {
			return
		}
		close(p.done)
	}
	p := &peer{name: name, addr: addr, signal: make(chan struct{}, 1), done: make(chan struct{})}
	r.peers[name] = p
	r.wg.Add(1)
	go r.pushLoop(p)
	if len(r.peers) == 1 {
		// Our first peer: we just started, or were cut off from everyone.
		// Pull what we missed now rather than at the next tick. The node
		// that was away starts the round, so it receives only the entries
		// it lacks, not the other side's summaries.
		r.requestSync(name)
	}
}

// removePeer stops replicating to a peer that failed or left. What was
// queued for it is dropped: anti-entropy brings it up to date when it is back.
func (r *replicator) removePeer(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.peers[name]; ok {
		close(p.done)
		delete(r.peers, name)
	}
}

func (r *replicator) peerList() []*peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*peer, 0, len(r.peers))
	for _, p := range r.peers {
		out = append(out, p)
	}
	return out
}

// broadcast queues locally written entries for every alive peer.
func (r *replicator) broadcast(es ...store.Entry) {
	size := 0
	for _, e := range es {
		size += len(e.Key) + len(e.Value) + 32
	}
	for _, p := range r.peerList() {
		p.mu.Lock()
		if p.pendingBytes+size > maxPending {
			// The peer is not keeping up: drop its queue and let
			// anti-entropy catch it up instead.
			p.pending, p.pendingBytes = nil, 0
			p.mu.Unlock()
			r.requestSync(p.name)
			continue
		}
		p.pending = append(p.pending, es...)
		p.pendingBytes += size
		p.mu.Unlock()
		select {
		case p.signal <- struct{}{}:
		default:
		}
	}
}

// flush waits until every queued push has been handed to its stream, for
// at most timeout, and reports whether it got there. A node that leaves
// calls it first, so writes it acknowledged reach the others even if it
// never comes back.
func (r *replicator) flush(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for r.pending() > 0 || r.inflight.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// pending returns the number of entries queued for all peers.
func (r *replicator) pending() int {
	n := 0
	for _, p := range r.peerList() {
		p.mu.Lock()
		n += len(p.pending)
		p.mu.Unlock()
	}
	return n
}

func (r *replicator) pushLoop(p *peer) {
	defer r.wg.Done()
	for {
		select {
		case <-p.signal:
		case <-p.done:
			return
		case <-r.ctx.Done():
			return
		}
		if w := r.pushWindow(); w > 0 {
			t := time.NewTimer(w)
			select {
			case <-t.C:
			case <-p.done:
				t.Stop()
				return
			case <-r.ctx.Done():
				t.Stop()
				return
			}
		}
		p.mu.Lock()
		batch := p.pending
		p.pending, p.pendingBytes = nil, 0
		r.inflight.Add(1) // before unlocking, so flush never sees neither
		p.mu.Unlock()
		r.sendBatch(p, batch)
		r.inflight.Add(-1)
	}
}

// sendBatch pushes entries to p in messages of at most pushChunk bytes.
func (r *replicator) sendBatch(p *peer, batch []store.Entry) {
	for len(batch) > 0 {
		n, size := 0, 0
		for n < len(batch) && (n == 0 || size < pushChunk) {
			size += len(batch[n].Key) + len(batch[n].Value) + 32
			n++
		}
		if err := r.push(p, batch[:n]); err != nil {
			r.pushesFailed.Add(1)
			r.log.Debug("push failed; anti-entropy will repair", "peer", p.name, "entries", n, "err", err)
			r.requestSync(p.name)
			return
		}
		batch = batch[n:]
	}
}

func (r *replicator) push(p *peer, es []store.Entry) error {
	err := r.tr.Send(p.name, p.addr, kindPush, store.EncodeBatch(es))
	if err == nil {
		r.pushesSent.Add(1)
		r.entriesPush.Add(uint64(len(es)))
	}
	return err
}

// maxPushWindow caps how long a push waits to batch more writes.
const maxPushWindow = 250 * time.Millisecond

// pushWindow is how long a push waits to gather more writes: about one
// round trip to the peers (the smallest of the last rttSamples anti-entropy
// digest calls, so one slow call does not hold pushes back), at least the
// configured window and at most maxPushWindow. A push cannot reach a peer
// faster than the link allows anyway, so waiting about that long costs a
// bounded share of latency and, on a slow link, saves most messages: with
// writes arriving at rate λ, a window W cuts messages per write by 1+λW.
func (r *replicator) pushWindow() time.Duration {
	w := time.Duration(r.rtt.Load())
	return min(max(w, r.window), maxPushWindow)
}

// rttSamples is how many recent round trips pushWindow takes the minimum of:
// few enough that the window follows a change of link within a few
// anti-entropy rounds.
const rttSamples = 4

// noteRTT records one measured round trip. The minimum over recent calls
// estimates the link's delay; larger samples are queueing or a busy peer.
func (r *replicator) noteRTT(d time.Duration) {
	r.rttMu.Lock()
	defer r.rttMu.Unlock()
	r.rttRing[r.rttNext%rttSamples] = d
	r.rttNext++
	lo := d
	for _, x := range r.rttRing[:min(r.rttNext, rttSamples)] {
		lo = min(lo, x)
	}
	r.rtt.Store(int64(lo))
}

// requestSync asks the sync loop to reconcile with the peer soon.
func (r *replicator) requestSync(name string) {
	select {
	case r.syncNow <- name:
	default:
	}
}

func (r *replicator) syncLoop() {
	defer r.wg.Done()
	for {
		// Jitter the period so nodes started together do not sync in step.
		d := r.interval/2 + rand.N(r.interval)
		t := time.NewTimer(d)
		var target *peer
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case name := <-r.syncNow:
			t.Stop()
			r.mu.Lock()
			target = r.peers[name]
			r.mu.Unlock()
		case <-t.C:
			ps := r.peerList()
			if len(ps) > 0 {
				target = ps[rand.N(len(ps))]
			}
		}
		if target == nil {
			continue
		}
		// While our own rounds run, turn away other nodes' rounds with
		// us: during a catch-up each would send us the summaries of every
		// key we lack and then push them all, repeating what we pull.
		r.syncing.Store(true)
		for i := 0; i < maxSyncRepeats; i++ {
			more, err := r.syncWith(target)
			if err != nil {
				r.log.Debug("anti-entropy round failed", "peer", target.name, "err", err)
				break
			}
			if !more {
				break
			}
		}
		r.syncing.Store(false)
	}
}

// syncWith runs one anti-entropy round with p and reports whether p had
// more to send than fitted in one reply.
func (r *replicator) syncWith(p *peer) (more bool, err error) {
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	r.syncRounds.Add(1)
	d := r.st.Digest()
	start := time.Now()
	reply, err := r.tr.Call(ctx, p.name, p.addr, kindDigest, store.EncodeDigest(&d))
	if err != nil {
		return false, err
	}
	r.noteRTT(time.Since(start))
	buckets, err := store.DecodeInts(reply)
	if err != nil {
		return false, fmt.Errorf("digest reply from %s: %w", p.name, err)
	}
	r.lastSync.Store(r.now().UnixMilli())
	if len(buckets) == 0 {
		return false, nil
	}
	buckets, sums, cut := r.summariesUpTo(buckets, maxSyncSummaries)
	start = time.Now()
	reply, err = r.tr.Call(ctx, p.name, p.addr, kindSync, frame(store.EncodeInts(buckets), store.EncodeSummaries(sums)))
	if err != nil {
		return false, err
	}
	r.noteRTT(time.Since(start))
	parts, err := unframe(reply, 3)
	if err != nil {
		return false, fmt.Errorf("sync reply from %s: %w", p.name, err)
	}
	entries, err := store.DecodeBatch(parts[0])
	if err != nil {
		return false, fmt.Errorf("sync reply from %s: %w", p.name, err)
	}
	want, err := store.DecodeStrings(parts[1])
	if err != nil {
		return false, fmt.Errorf("sync reply from %s: %w", p.name, err)
	}
	more = cut || len(parts[2]) == 1 && parts[2][0] == 1
	if len(entries) > 0 {
		applied, err := r.merge(entries)
		r.repaired.Add(uint64(len(applied)))
		if err != nil {
			if !entriesRefused(err) {
				return false, err
			}
			r.dropped(dropRefused)
			r.warns.warn(r.log, p.addr, "refused entries in a sync reply", "peer", p.name, "err", err)
		}
	}
	for len(want) > 0 {
		es, rest, err := r.entriesUpTo(want, syncChunk)
		if err != nil {
			return false, err
		}
		if len(es) > 0 {
			if _, err := r.tr.Call(ctx, p.name, p.addr, kindPush, store.EncodeBatch(es)); err != nil {
				return false, err
			}
		}
		want = rest
	}
	return more, nil
}

// entriesUpTo reads the stored entries of keys, in order, while they fit
// in limit bytes (at least one entry), and returns them with the keys it
// did not reach. It reads entriesStep keys at a time, so a long list of
// keys with large values costs limit bytes of memory, not the whole list:
// one sync request naming every bucket made a node holding 3000 values of
// 60 KiB read all 180 MB to send 4 MiB. Damaged records are left out
// (Store.Entries sets them aside).
func (r *replicator) entriesUpTo(keys []string, limit int) (es []store.Entry, rest []string, err error) {
	size := 0
	for len(keys) > 0 {
		n := min(len(keys), entriesStep)
		got, err := r.st.Entries(keys[:n])
		if err != nil && !r.damaged(err) {
			return nil, nil, err
		}
		for _, e := range got {
			sz := len(e.Key) + len(e.Value) + 32
			if size+sz > limit && len(es) > 0 {
				// Full: the rest, from this entry's key on, waits.
				return es, keys[slices.Index(keys[:n], e.Key):], nil
			}
			size += sz
			es = append(es, e)
		}
		keys = keys[n:]
	}
	return es, keys, nil
}

// entriesStep is how many keys entriesUpTo reads at a time: it holds at
// most entriesStep values (64 KiB each) past its limit.
const entriesStep = 64

// summariesUpTo returns the summaries of as many of buckets as fit in
// limit bytes (at least one bucket), taken from a random place in the list
// so that rounds cut short still reach every bucket, and reports whether
// buckets were left out.
func (r *replicator) summariesUpTo(buckets []int, limit int) ([]int, []store.Summary, bool) {
	sums := r.st.Summaries(buckets)
	size := map[int]int{}
	total := 0
	for _, s := range sums {
		n := len(s.Key) + len(s.Version.Node) + 24
		size[store.BucketOf(s.Key)] += n
		total += n
	}
	if total <= limit || len(buckets) <= 1 {
		return buckets, sums, false
	}
	off := rand.N(len(buckets))
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
	for _, s := range sums {
		if in[store.BucketOf(s.Key)] {
			out = append(out, s)
		}
	}
	return keep, out, true
}

// merge applies entries from a peer in chunks (mergeChunkEntries), so that
// local writes interleave with a large batch, and returns those that
// changed the store. Entries the store refuses are skipped and reported in
// an error for which entriesRefused holds, after the rest are applied; any
// other error stops the merge.
func (r *replicator) merge(es []store.Entry) ([]store.Entry, error) {
	var applied []store.Entry
	var refused error
	for len(es) > 0 {
		n, size := 0, 0
		for n < len(es) && n < mergeChunkEntries && (n == 0 || size < mergeChunkBytes) {
			size += len(es[n].Key) + len(es[n].Value) + 32
			n++
		}
		got, err := r.st.Merge(es[:n])
		r.noteApplied(got)
		applied = append(applied, got...)
		if err != nil {
			if !entriesRefused(err) {
				return applied, err
			}
			if refused == nil {
				refused = err
			}
		}
		es = es[n:]
	}
	return applied, refused
}

// entriesRefused reports whether a Merge error means the sender's entries
// were refused (the sender's fault), rather than that this store failed.
func entriesRefused(err error) bool {
	return errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrInvalidKey) ||
		errors.Is(err, store.ErrValueTooLarge) || errors.Is(err, store.ErrClockSkew)
}

// rejectError marks an error caused by what the peer sent, with the reason
// it is counted under.
type rejectError struct {
	reason string
	err    error
}

func (e *rejectError) Error() string { return e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

func reject(reason string, err error) error { return &rejectError{reason: reason, err: err} }

// handle serves one replication message from a peer and returns the reply.
// Malformed input returns an error wrapping store.ErrCorrupt and changes
// nothing; input the store refuses in part is applied in part.
func (r *replicator) handle(kind string, body []byte) ([]byte, error) {
	reply, err := r.handleOneWay(kind, body)
	if err == nil {
		r.c.sent(kind, len(reply))
	}
	return reply, err
}

// handleOneWay serves a message that gets no reply (from a stream).
func (r *replicator) handleOneWay(kind string, body []byte) ([]byte, error) {
	r.c.received(kind, len(body))
	reply, err := r.serve(kind, body)
	if err != nil {
		var re *rejectError
		if errors.As(err, &re) {
			r.dropped(re.reason)
		}
		return nil, err
	}
	return reply, nil
}

func (r *replicator) serve(kind string, body []byte) ([]byte, error) {
	switch kind {
	case kindPush:
		es, err := store.DecodeBatch(body)
		if err != nil {
			return nil, reject(dropDecode, err)
		}
		if _, err := r.merge(es); err != nil {
			if entriesRefused(err) {
				return nil, reject(dropRefused, err)
			}
			return nil, err
		}
		return nil, nil
	case kindDigest:
		remote, err := store.DecodeDigest(body)
		if err != nil {
			return nil, reject(dropDecode, err)
		}
		if r.syncing.Load() {
			// Busy with our own round; the initiator tries a random
			// peer again at its next tick.
			return store.EncodeInts(nil), nil
		}
		d := r.st.Digest()
		return store.EncodeInts(d.Diff(remote)), nil
	case kindSync:
		parts, err := unframe(body, 2)
		if err != nil {
			return nil, reject(dropDecode, err)
		}
		buckets, err := store.DecodeInts(parts[0])
		if err != nil {
			return nil, reject(dropDecode, err)
		}
		sums, err := store.DecodeSummaries(parts[1])
		if err != nil {
			return nil, reject(dropDecode, err)
		}
		give, take := r.st.Compare(buckets, sums)
		es, rest, err := r.entriesUpTo(give, syncChunk)
		if err != nil {
			return nil, err
		}
		more := len(rest) > 0
		flag := []byte{0}
		if more {
			flag[0] = 1
		}
		return frame(store.EncodeBatch(es), store.EncodeStrings(take), flag), nil
	}
	return nil, reject(dropDecode, fmt.Errorf("%w: unknown message kind %q", store.ErrCorrupt, kind))
}

// damaged reports whether err from Store.Entries is about stored records
// that failed their check: the store left them out and set them aside, so
// the good entries are sent and a peer's copy will repair the rest.
func (r *replicator) damaged(err error) bool {
	if !errors.Is(err, store.ErrCorrupt) {
		return false
	}
	r.log.Warn("damaged stored records set aside; peers' copies will replace them", "err", err)
	return true
}

// noteApplied records how old remote entries were when they arrived.
func (r *replicator) noteApplied(es []store.Entry) {
	if len(es) == 0 {
		return
	}
	r.arrivals.record(es)
	r.applied.Add(uint64(len(es)))
	var newest store.Timestamp
	for _, e := range es {
		newest = max(newest, e.Version.TS)
	}
	lag := max(r.now().UnixMilli()-newest.WallMillis(), 0)
	r.lastLag.Store(lag)
	if old := r.avgLag.Load(); r.lagSamples.Add(1) == 1 {
		r.avgLag.Store(lag)
	} else {
		r.avgLag.Store(old + (lag-old)/8)
	}
}

// frame joins byte strings, each prefixed by its length.
func frame(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

// unframe splits a frame into exactly n parts.
func unframe(b []byte, n int) ([][]byte, error) {
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: bad frame", store.ErrCorrupt)
		}
		out = append(out, b[k:k+int(l)])
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after frame", store.ErrCorrupt)
	}
	return out, nil
}
