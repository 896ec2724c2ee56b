package daemon

// The Raft group across the agents: a consistent namespace and locks beside
// the gossip store (coord.go serves them). Formed from serf membership, as
// Consul forms its servers' group:
//
//   - Bootstrap. A node with no raft state waits until serf shows at least
//     BootstrapExpect alive members running a raft server and membership
//     has settled; then only the lowest-named of them, and only if every
//     alive member answers that it holds no raft state either (a
//     raft-status call), bootstraps the group with the first Voters of them
//     (by name) as voters. Members started with --bootstrap-expect 0 run no
//     raft server and are never added. The others learn of the group from the leader. A node that
//     has raft state (a restart) never bootstraps: it resumes. As with
//     Consul's bootstrap_expect, two disjoint sets of nodes started apart
//     would form two groups; they are one group as soon as they see each
//     other before the first bootstrap.
//   - Autopilot. The leader, every second, adds alive members missing from
//     the configuration as non-voters, promotes healthy non-voters while
//     there are fewer than Voters voters, and removes servers that left or
//     have been failed for longer than deadServerAfter (one per round), so
//     the group survives the loss of any node over time. A removed node that
//     comes back is alive again and is added again.
//   - Locks expire through the log: the leader proposes the expiry of a
//     lock whose last renew it has seen lapse for the lock's TTL (measured
//     on the leader's clock from when it saw the renew), so a holder killed
//     with kill -9 loses its lock within its TTL (plus a failover, if the
//     leader died too).
//
// Server IDs and addresses are node names; raftnet.go resolves a name to
// the member's API address from serf's tags.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/serf/serf"
)

// raftTimings returns the raft timings of a profile. lan and wan keep
// hashicorp/raft's defaults; local is tuned for agents on one machine
// (README: "Raft timings").
func raftTimings(profile string, c *raft.Config) (deadAfter time.Duration) {
	switch profile {
	case "local":
		c.HeartbeatTimeout = 500 * time.Millisecond
		c.ElectionTimeout = 500 * time.Millisecond
		c.LeaderLeaseTimeout = 400 * time.Millisecond
		c.CommitTimeout = 20 * time.Millisecond
		return 10 * time.Second
	case "wan":
		return 2 * time.Minute
	}
	return 30 * time.Second
}

// coord runs this node's raft server. Its methods are safe for concurrent
// use.
type coord struct {
	a      *Agent
	log    *slog.Logger
	fsm    *raftFSM
	nt     *raftTransport
	r      *raft.Raft
	closer func() error // closes the log store

	expect, voters int
	deadAfter      time.Duration

	addrs      sync.Map      // member name -> API address
	changed    atomic.Int64  // unix ns of the last membership change
	ready      atomic.Uint64 // term in which this leader's barrier completed
	rounds     atomic.Int64  // autopilot rounds run as leader (tests)
	barrierMu  sync.Mutex    // held while a barrier runs (barrier)
	leaderMu   sync.Mutex    // guards lastLeader
	lastLeader string

	stop chan struct{}
	wg   sync.WaitGroup
}

// newCoord creates the coordination side's transport and state machine; the
// raft server starts with start, once serf runs.
func newCoord(a *Agent, tr Transport) *coord {
	c := &coord{a: a, log: a.log.With("part", "raft"), expect: a.cfg.BootstrapExpect, voters: a.cfg.Voters, stop: make(chan struct{})}
	c.nt = newRaftTransport(tr, a.cfg.Name, c.addrOf, 3*time.Second)
	c.fsm = newRaftFSM(c.leaderName)
	c.changed.Store(time.Now().UnixNano())
	return c
}

// enabled reports whether this node runs a raft server (BootstrapExpect > 0).
func (c *coord) enabled() bool { return c.expect > 0 }

func (c *coord) addrOf(name string) (string, bool) {
	if name == c.a.cfg.Name {
		return c.a.apiAddr, true
	}
	v, ok := c.addrs.Load(name)
	if !ok {
		return "", false
	}
	return v.(string), true
}

// memberChanged records the member's API address and the time of the change.
func (c *coord) memberChanged(m serf.Member) {
	if api := m.Tags[tagAPI]; api != "" {
		c.addrs.Store(m.Name, api)
	}
	c.changed.Store(time.Now().UnixNano())
}

func (c *coord) leaderName() string {
	if c.r == nil {
		return ""
	}
	_, id := c.r.LeaderWithID()
	return string(id)
}

// start opens the log, stable and snapshot stores and starts the raft server
// and the loops.
func (c *coord) start() error {
	if !c.enabled() {
		return nil
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(c.a.cfg.Name)
	c.deadAfter = raftTimings(c.a.cfg.Profile, cfg)
	cfg.BatchApplyCh = true
	cfg.NoLegacyTelemetry = true
	cfg.SnapshotInterval = 30 * time.Second
	cfg.SnapshotThreshold = 4096
	cfg.TrailingLogs = 4096
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Output: &logWriter{log: c.log}, Level: hclog.Info})
	notify := make(chan bool, 8)
	cfg.NotifyCh = notify

	var logs raft.LogStore
	var stable raft.StableStore
	var snaps raft.SnapshotStore
	if c.a.cfg.InMemory {
		st := raft.NewInmemStore()
		logs, stable, snaps = st, st, raft.NewInmemSnapshotStore()
		c.closer = func() error { return nil }
	} else {
		dir := filepath.Join(c.a.cfg.DataDir, "raft")
		if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
			return fmt.Errorf("raft: %w", err)
		}
		// raft-wal's Close leaves its metadata database (bolt, locked with
		// flock) open: hold it here and close it after the log, or a
		// restart in the same process waits on the lock for ever.
		meta := &metadb.BoltMetaDB{}
		w, err := wal.Open(filepath.Join(dir, "wal"), wal.WithLogger(cfg.Logger.Named("wal")), wal.WithSegmentSize(16<<20), wal.WithMetaStore(meta))
		if err != nil {
			meta.Close()
			return fmt.Errorf("raft: open log in %s: %w", dir, err)
		}
		fs, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, cfg.Logger.Named("snapshot"))
		if err != nil {
			w.Close()
			meta.Close()
			return fmt.Errorf("raft: open snapshots in %s: %w", dir, err)
		}
		// The last raftLogCache entries stay in memory, as Consul keeps
		// them: the leader reads each new entry once per follower to send
		// it, and without the cache every read is a pread of the WAL.
		lc, err := raft.NewLogCache(raftLogCache, w)
		if err != nil {
			w.Close()
			meta.Close()
			return fmt.Errorf("raft: log cache: %w", err)
		}
		logs, stable, snaps = lc, w, fs
		c.closer = func() error { return errors.Join(w.Close(), meta.Close()) }
	}
	r, err := raft.NewRaft(cfg, c.fsm, logs, stable, snaps, c.nt)
	if err != nil {
		c.closer()
		return fmt.Errorf("raft: %w", err)
	}
	c.r = r
	obs := make(chan raft.Observation, 16)
	r.RegisterObserver(raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}))
	c.wg.Add(5)
	go c.watchLeaders(obs)
	go c.watchLeadership(notify)
	go c.bootstrapLoop()
	go c.autopilotLoop()
	go c.lockExpiryLoop()
	return nil
}

// shutdown stops the loops and the raft server and closes the stores.
func (c *coord) shutdown() {
	if c.r == nil {
		return
	}
	close(c.stop)
	c.nt.Close()
	if err := c.r.Shutdown().Error(); err != nil {
		c.log.Warn("raft shutdown", "err", err)
	}
	c.wg.Wait()
	if err := c.closer(); err != nil {
		c.log.Warn("raft: close log store", "err", err)
	}
}

// leave hands leadership to another voter before a graceful leave, so the
// group does not wait out an election timeout.
func (c *coord) leave() {
	if c.r == nil || c.r.State() != raft.Leader {
		return
	}
	f := c.r.LeadershipTransfer()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			c.log.Warn("raft: leadership transfer before leave", "err", err)
		}
	case <-time.After(2 * time.Second):
	}
}

// watchLeadership logs leadership changes and, on gaining leadership, runs
// a barrier: reads are served once it completes (readIndex).
func (c *coord) watchLeadership(notify <-chan bool) {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case isLeader := <-notify:
			if !isLeader {
				continue
			}
			term := c.r.CurrentTerm()
			c.log.Info("raft: this node is the leader", "term", term)
			c.barrier(term)
		}
	}
}

// watchLeaders emits a leader event (events.go) each time this node
// learns of a new leader, or of none.
func (c *coord) watchLeaders(obs <-chan raft.Observation) {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case o := <-obs:
			lo := o.Data.(raft.LeaderObservation)
			c.a.events.leader(string(lo.LeaderID), c.r.CurrentTerm())
		}
	}
}

// barrier runs a barrier in the background, unless one is running, and
// marks reads ready for term once it has applied while this node still
// leads in term.
func (c *coord) barrier(term uint64) {
	if !c.barrierMu.TryLock() {
		return
	}
	go func() {
		defer c.barrierMu.Unlock()
		if err := c.r.Barrier(5 * time.Second).Error(); err != nil {
			return
		}
		if c.r.CurrentTerm() == term && c.r.State() == raft.Leader {
			c.ready.Store(term)
		}
	}()
}

// hasState reports whether this node holds raft state: it has been part of
// a group.
func (c *coord) hasState() bool {
	if c.r.LastIndex() > 0 {
		return true
	}
	f := c.r.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// raftStatus is the reply to a raft-status call.
type raftStatus struct {
	Off           bool // the node runs no raft server (--bootstrap-expect 0)
	HasState      bool
	Leader        string
	Term          uint64
	LastIndex     uint64
	LastContactMs int64 // since this node last heard from the leader; 0 on the leader, -1 never
}

func (c *coord) status() raftStatus {
	if c.r == nil {
		return raftStatus{LastContactMs: -1}
	}
	st := raftStatus{HasState: c.hasState(), Leader: c.leaderName(), Term: c.r.CurrentTerm(), LastIndex: c.r.LastIndex(), LastContactMs: -1}
	if c.r.State() == raft.Leader {
		st.LastContactMs = 0
	} else if lc := c.r.LastContact(); !lc.IsZero() {
		st.LastContactMs = time.Since(lc).Milliseconds()
	}
	return st
}

// askStatus asks a member for its raft status through the transport.
func (c *coord) askStatus(ctx context.Context, name string) (raftStatus, error) {
	var st raftStatus
	addr, ok := c.addrOf(name)
	if !ok {
		return st, fmt.Errorf("no API address for %s", name)
	}
	reply, err := c.a.transport.Call(ctx, name, addr, kindRaftStatus, nil)
	if err != nil {
		return st, err
	}
	return st, decodeMsgpack(reply, &st)
}

// aliveMembers returns the names of the alive members (this node included),
// sorted.
func (c *coord) aliveMembers() []string {
	var out []string
	for _, m := range c.a.serf.Members() {
		if m.Status == serf.StatusAlive {
			out = append(out, m.Name)
		}
	}
	sort.Strings(out)
	return out
}

// bootstrapSettle is how long membership must be still before bootstrap.
const bootstrapSettle = time.Second

// bootstrapLoop bootstraps the group when this node is the one to (see the
// top of the file), then returns.
func (c *coord) bootstrapLoop() {
	defer c.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if c.hasState() || c.leaderName() != "" {
			return
		}
		alive := c.aliveMembers()
		if len(alive) < c.expect {
			continue
		}
		if time.Since(time.Unix(0, c.changed.Load())) < bootstrapSettle {
			continue
		}
		// The candidates: the alive members that run a raft server.
		var cands []string
		ok := true
		for _, n := range alive {
			if n == c.a.cfg.Name {
				cands = append(cands, n)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := c.askStatus(ctx, n)
			cancel()
			if err != nil || st.HasState || st.Leader != "" {
				ok = false // unreachable, or a group exists: wait to be added
				break
			}
			if !st.Off {
				cands = append(cands, n)
			}
		}
		if !ok || len(cands) < c.expect || cands[0] != c.a.cfg.Name {
			continue
		}
		servers := make([]raft.Server, 0, c.voters)
		for _, n := range cands[:min(len(cands), c.voters)] {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(n), Address: raft.ServerAddress(n)})
		}
		if err := c.r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			c.log.Warn("raft: bootstrap", "err", err)
			continue
		}
		c.log.Info("raft: bootstrapped the group", "voters", len(servers), "alive", len(alive))
		return
	}
}

// autopilotLoop keeps the configuration in line with serf membership while
// this node leads.
func (c *coord) autopilotLoop() {
	defer c.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	failedSince := map[string]time.Time{}
	addedAt := map[string]time.Time{}
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		status := map[string]serf.MemberStatus{}
		now := time.Now()
		for _, m := range c.a.serf.Members() {
			status[m.Name] = m.Status
			if m.Status == serf.StatusFailed {
				if _, ok := failedSince[m.Name]; !ok {
					failedSince[m.Name] = now
				}
			} else {
				delete(failedSince, m.Name)
			}
		}
		if c.r.State() != raft.Leader {
			clear(addedAt)
			continue
		}
		f := c.r.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		c.reconcile(f.Configuration(), status, failedSince, addedAt, now)
		c.rounds.Add(1)
	}
}

// reconcile makes at most one removal, the additions and at most one
// promotion the configuration needs.
func (c *coord) reconcile(cfg raft.Configuration, status map[string]serf.MemberStatus, failedSince, addedAt map[string]time.Time, now time.Time) {
	self := c.a.cfg.Name
	in := map[string]raft.ServerSuffrage{}
	voters := 0
	for _, s := range cfg.Servers {
		in[string(s.ID)] = s.Suffrage
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	// Remove one server that left or has been failed too long.
	for _, s := range cfg.Servers {
		n := string(s.ID)
		if n == self {
			continue
		}
		st, known := status[n]
		since, failed := failedSince[n]
		gone := !known || st == serf.StatusLeft || (failed && now.Sub(since) > c.deadAfter)
		if !gone {
			continue
		}
		if err := c.r.RemoveServer(s.ID, 0, 0).Error(); err != nil {
			c.log.Warn("raft: remove dead server", "server", n, "err", err)
			return
		}
		c.log.Info("raft: removed a server that left or failed", "server", n, "status", st.String())
		if s.Suffrage == raft.Voter {
			voters--
		}
		delete(in, n)
		break
	}
	// Add alive members missing from the configuration, as non-voters.
	for n, st := range status {
		if _, ok := in[n]; ok || st != serf.StatusAlive {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		rs, err := c.askStatus(ctx, n)
		cancel()
		if err != nil || rs.Off {
			continue // unreachable now, or runs no raft server
		}
		if err := c.r.AddNonvoter(raft.ServerID(n), raft.ServerAddress(n), 0, 0).Error(); err != nil {
			c.log.Warn("raft: add non-voter", "server", n, "err", err)
			continue
		}
		c.log.Info("raft: added a non-voter", "server", n)
		in[n] = raft.Nonvoter
		addedAt[n] = now
	}
	// Promote one healthy non-voter while voters are short, once it has had
	// a second to catch up.
	if voters >= c.voters {
		return
	}
	var cands []string
	for n, sf := range in {
		if sf == raft.Nonvoter && status[n] == serf.StatusAlive && now.Sub(addedAt[n]) >= time.Second {
			cands = append(cands, n)
		}
	}
	slices.Sort(cands)
	if len(cands) == 0 {
		return
	}
	if err := c.r.AddVoter(raft.ServerID(cands[0]), raft.ServerAddress(cands[0]), 0, 0).Error(); err != nil {
		c.log.Warn("raft: promote non-voter", "server", cands[0], "err", err)
		return
	}
	c.log.Info("raft: promoted a non-voter", "server", cands[0], "voters", voters+1)
}

// lockExpiryLoop, on the leader, proposes the expiry of locks whose renew
// it has not seen for their TTL.
func (c *coord) lockExpiryLoop() {
	defer c.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	type seen struct {
		session string
		renewed uint64
		at      time.Time
	}
	track := map[string]seen{}
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if c.r.State() != raft.Leader {
			clear(track)
			continue
		}
		now := time.Now()
		held := c.fsm.heldLocks()
		for n := range track {
			if _, ok := held[n]; !ok {
				delete(track, n)
			}
		}
		for n, l := range held {
			s, ok := track[n]
			if !ok || s.session != l.Session || s.renewed != l.Renewed {
				track[n] = seen{session: l.Session, renewed: l.Renewed, at: now}
				continue
			}
			if now.Sub(s.at) < time.Duration(l.TTLMillis)*time.Millisecond {
				continue
			}
			res, err := c.apply(context.Background(), &fsmCmd{Op: opExpire, Key: n, Session: l.Session, Renewed: l.Renewed})
			if err == nil && res.Code == "" {
				c.log.Info("raft: lock expired: its holder did not renew it within its TTL", "lock", n, "fence", l.Fence, "ttl_ms", l.TTLMillis)
			}
			delete(track, n)
		}
	}
}

// errNotLeader: this node does not lead (any more); nothing was applied.
// raftLogCache is how many recent log entries are kept in memory: two of
// raft's batches (MaxAppendEntries, 64), at most 128 × a 64 KiB value =
// 8 MiB when every value is as large as allowed, a few KiB usually.
const raftLogCache = 128

var errNotLeader = errors.New("not the leader")

// apply proposes a command on the leader and returns its result once
// committed and applied. errNotLeader means it was not proposed; any other
// error leaves its outcome unknown.
func (c *coord) apply(ctx context.Context, cmd *fsmCmd) (fsmResult, error) {
	b, err := encodeMsgpack(cmd)
	if err != nil {
		return fsmResult{}, err
	}
	if c.r.State() != raft.Leader {
		return fsmResult{}, errNotLeader
	}
	f := c.r.Apply(b, time.Second)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrEnqueueTimeout) {
			return fsmResult{}, errNotLeader
		}
		if err != nil {
			return fsmResult{}, err
		}
	case <-ctx.Done():
		return fsmResult{}, ctx.Err()
	}
	switch r := f.Response().(type) {
	case fsmResult:
		return r, nil
	case error:
		return fsmResult{}, r
	}
	return fsmResult{}, fmt.Errorf("unexpected apply response %T", f.Response())
}
