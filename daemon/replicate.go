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
// reconciles with it in at most three messages (digest, sync, push). The
// exchange itself is pure code in store/sync.go (messages, rules, limits)
// and their wire form is in store/codec.go; here it is only plumbing:
// syncWith runs store.SyncRound over the transport, serve decodes a
// request, asks the store and encodes the reply.
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
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerctl/peerctl/store"
)

const (
	syncChunk      = store.SyncChunk // max bytes of entries in one sync reply
	pushChunk      = 1 << 20         // max bytes of entries in one push message
	maxPending     = 32 << 20        // a peer's queue beyond this is dropped; sync repairs
	maxSyncRepeats = 256             // rounds in a row while a peer says more
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
	drops        map[string]*atomic.Uint64 // messages and frames dropped, by reason; fixed at creation
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
	events   *eventHub // nil in tests that build a replicator alone
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
		size += store.EntrySize(e)
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
			size += store.EntrySize(batch[n])
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

// syncWith runs one anti-entropy round with p (store.SyncRound, over the
// transport) and reports whether p had more to send than fitted in one reply.
func (r *replicator) syncWith(p *peer) (more bool, err error) {
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	r.syncRounds.Add(1)
	rp := &remotePeer{r: r, p: p, ctx: ctx}
	defer func(before uint64) { r.events.syncRound(p.name, rp.pushed, int(r.repaired.Load()-before), err) }(r.repaired.Load())
	more, damaged, err := r.st.SyncRound(rp, rand.Int(), func(es []store.Entry) error {
		applied, err := r.merge(es)
		r.repaired.Add(uint64(len(applied)))
		if err != nil {
			if !store.Refused(err) {
				return err
			}
			r.dropped(dropRefused)
			r.warns.warn(r.log, p.addr, "refused entries in a sync reply", "peer", p.name, "err", err)
		}
		return nil
	})
	if damaged != nil {
		r.damaged(damaged)
	}
	return more, err
}

// remotePeer is the other side of a round, over the transport: it encodes
// each message, calls p and decodes the reply.
type remotePeer struct {
	r      *replicator
	p      *peer
	ctx    context.Context
	pushed int // entries pushed to p in this round (sync events)
}

func (rp *remotePeer) call(kind string, body []byte) ([]byte, error) {
	start := time.Now()
	reply, err := rp.r.tr.Call(rp.ctx, rp.p.name, rp.p.addr, kind, body)
	if err != nil {
		return nil, err
	}
	rp.r.noteRTT(time.Since(start))
	return reply, nil
}

func (rp *remotePeer) Digest(req store.DigestReq) (store.DigestReply, error) {
	reply, err := rp.call(kindDigest, req.Encode())
	if err != nil {
		return store.DigestReply{}, err
	}
	m, err := store.DecodeDigestReply(reply)
	if err != nil {
		return store.DigestReply{}, fmt.Errorf("digest reply from %s: %w", rp.p.name, err)
	}
	rp.r.lastSync.Store(rp.r.now().UnixMilli())
	return m, nil
}

func (rp *remotePeer) Sync(req store.SyncReq) (store.SyncReply, error) {
	reply, err := rp.call(kindSync, req.Encode())
	if err != nil {
		return store.SyncReply{}, err
	}
	m, err := store.DecodeSyncReply(reply)
	if err != nil {
		return store.SyncReply{}, fmt.Errorf("sync reply from %s: %w", rp.p.name, err)
	}
	return m, nil
}

func (rp *remotePeer) Push(es []store.Entry) error {
	_, err := rp.r.tr.Call(rp.ctx, rp.p.name, rp.p.addr, kindPush, store.EncodeBatch(es))
	rp.pushed += len(es)
	return err
}

// merge applies entries from a peer in chunks (mergeChunkEntries), so that
// local writes interleave with a large batch, and returns those that
// changed the store. Entries the store refuses are skipped and reported in
// an error for which store.Refused holds, after the rest are applied; any
// other error stops the merge.
func (r *replicator) merge(es []store.Entry) ([]store.Entry, error) {
	var applied []store.Entry
	var refused error
	for len(es) > 0 {
		n, size := 0, 0
		for n < len(es) && n < mergeChunkEntries && (n == 0 || size < mergeChunkBytes) {
			size += store.EntrySize(es[n])
			n++
		}
		got, err := r.st.Merge(es[:n])
		r.noteApplied(got)
		applied = append(applied, got...)
		if err != nil {
			if !store.Refused(err) {
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

// rejectError marks an error caused by what the peer sent (store.Refused
// holds for it, or it did not decode), with the reason it is counted under:
// serve wraps every such error in one, and the server answers those, and
// only those, as a bad request.
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
			if store.Refused(err) {
				return nil, reject(dropRefused, err)
			}
			return nil, err
		}
		return nil, nil
	case kindDigest:
		req, err := store.DecodeDigestReq(body)
		if err != nil {
			return nil, reject(dropDecode, err)
		}
		// Busy with our own round: the initiator tries a random peer
		// again at its next tick.
		return r.st.ServeDigest(req, r.syncing.Load()).Encode(), nil
	case kindSync:
		req, err := store.DecodeSyncReq(body)
		if err != nil {
			return nil, reject(dropDecode, err)
		}
		reply, err := r.st.ServeSync(req, syncChunk)
		if err != nil && !r.damaged(err) {
			return nil, err
		}
		return reply.Encode(), nil
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
	r.events.applied(es)
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
