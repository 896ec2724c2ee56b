package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/peerctl/peerctl/e2e/internal/procs"
	"github.com/peerctl/peerctl/internal/api"
)

// The coordination workload (issue 11, item 4), run beside the gossip
// workload under the same nemesis:
//
//   - kv clients read, write, compare-and-set and delete keys of the
//     consistent namespace through random nodes; the keys rotate every
//     keyGeneration (a fresh set of coordKeys keys), as Jepsen's
//     independent keys do, so that each key's history stays short enough
//     for an exhaustive linearizability check even with operations of
//     unknown outcome, which may take effect at any later time;
//   - lock clients take one lock through random nodes, hold it a moment
//     while renewing it, and record each critical section (section, in
//     coordcheck_test.go);
//   - a poller asks every running node GET /v1/leader every leaderPoll.

// Settings of the coordination workload.
const (
	coordClients  = 4                     // kv clients
	coordKeys     = 3                     // keys per generation
	keyGeneration = 5 * time.Second       // how long a key is in use
	coordPace     = 25 * time.Millisecond // a kv client's pause between operations
	coordTimeout  = 7 * time.Second       // per kv operation (no quorum fails within 5 s)
	lockClients   = 3                     // clients contending for the lock
	lockName      = "nemesis-lock"
	lockTTL       = 2 * time.Second        // the lock's TTL
	lockWait      = 3 * time.Second        // how long an acquire waits
	leaderPoll    = 200 * time.Millisecond // GET /v1/leader at every running node
	linTimeout    = 120 * time.Second      // porcupine's budget for a history
	leaderTimeout = 60 * time.Second       // a raft group forms or recovers
	lockHoldMin   = 100 * time.Millisecond // a critical section's planned length
	lockHoldMax   = 700 * time.Millisecond
	lockPause     = 50 * time.Millisecond  // between a release and the next acquire
	finalReadWait = 500 * time.Millisecond // between retries of a final read
)

// coordHistory is what the coordination workload recorded.
type coordHistory struct {
	mu       sync.Mutex // guards the fields below while the workload runs
	ops      []linOp
	sections []section
	reports  []leaderReport
	lockErrs map[string]int // failed acquires, renewals and releases, by cause
	acquires int            // acquire requests sent
	keys     map[string]bool
}

func (h *coordHistory) addOp(o linOp) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.keys[o.Key] = true
	h.mu.Unlock()
}

func (h *coordHistory) lockErr(what string, err error) {
	h.mu.Lock()
	h.lockErrs[what+": "+coordCause(err)]++
	h.mu.Unlock()
}

// coordCause is a short name for an error of the coordination API.
func coordCause(err error) string {
	var se *api.StatusError
	if errors.As(err, &se) {
		if se.Kind != "" {
			return se.Kind
		}
		return strconv.Itoa(se.Code)
	}
	return cause(err.Error())
}

// coordClientHTTP is one HTTP client for the workload: keep-alive
// connections for every client at every daemon, no overall timeout (each
// call has its context).
func coordClientHTTP() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * (coordClients + lockClients), DisableCompression: true}}
}

// waitLeader waits until every running agent names the same leader, a
// running agent, and returns it.
func waitLeader(c *cluster, timeout time.Duration) (string, time.Duration, error) {
	var leader string
	took, err := procs.WaitFor(timeout, poll, func() (bool, string) {
		leader = ""
		for _, a := range c.running() {
			ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
			l, err := c.client(a).Leader(ctx, "")
			cancel()
			if err != nil {
				return false, fmt.Sprintf("leader at %s: %v", a.name, err)
			}
			if l.Leader == "" {
				return false, fmt.Sprintf("%s knows no leader (term %d, state %s)", a.name, l.Term, l.State)
			}
			if leader != "" && l.Leader != leader {
				return false, fmt.Sprintf("%s names %s, another names %s", a.name, l.Leader, leader)
			}
			leader = l.Leader
		}
		if leader == "" {
			return false, "no agent runs"
		}
		if a := c.byName(leader); a == nil || !a.running() {
			return false, fmt.Sprintf("all name %s, which is not running", leader)
		}
		return true, ""
	})
	return leader, took, err
}

// runCoord runs the coordination workload until ctx is done. Client i
// draws its choices from a generator seeded with seed and i.
func runCoord(ctx context.Context, c *cluster, seed uint64) *coordHistory {
	h := &coordHistory{lockErrs: map[string]int{}, keys: map[string]bool{}}
	hc := coordClientHTTP()
	defer hc.CloseIdleConnections()
	clients := make([]*api.Client, len(c.agents))
	for i, a := range c.agents {
		clients[i] = api.NewClientWith(a.api, hc)
	}
	var wg sync.WaitGroup
	for ci := range coordClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kvClient(ctx, c, h, clients, ci, rand.New(rand.NewPCG(seed, 0x6b76+uint64(ci))))
		}()
	}
	for li := range lockClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lockClient(ctx, c, h, clients, coordClients+li, rand.New(rand.NewPCG(seed, 0x6c6f636b+uint64(li))))
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		pollLeaders(ctx, c, h, clients)
	}()
	wg.Wait()
	return h
}

// genKey is key k of the generation current at d.
func genKey(d time.Duration, k int) string {
	return fmt.Sprintf("lin/g%03d/k%d", int(d/keyGeneration), k)
}

// kvClient runs one kv client: 40% reads, 30% puts, 25% compare-and-sets
// on the version it last read of the key (0 if absent or never read), 5%
// deletes.
func kvClient(ctx context.Context, c *cluster, h *coordHistory, clients []*api.Client, ci int, rng *rand.Rand) {
	seen := map[string]uint64{} // key -> the version this client last learned
	for n := 0; ctx.Err() == nil; n++ {
		ni := rng.IntN(len(c.agents))
		o := linOp{Client: ci, Node: c.agents[ni].name, Key: genKey(c.since(), rng.IntN(coordKeys))}
		switch r := rng.IntN(100); {
		case r < 40:
			o.Kind = linGet
		case r < 70:
			o.Kind = linPut
		case r < 95:
			o.Kind, o.IfVersion = linCAS, seen[o.Key]
		default:
			o.Kind = linDel
		}
		if o.Kind == linPut || o.Kind == linCAS {
			o.Value = fmt.Sprintf("c%d-%d", ci, n)
		}
		o = invokeCoord(c, clients[ni], o)
		if o.Outcome == linOK && (o.Kind != linDel) {
			seen[o.Key] = o.Version
		}
		if o.Outcome == linOK && o.Kind == linDel {
			seen[o.Key] = 0
		}
		h.addOp(o)
		t := time.NewTimer(coordPace) // the workload's pace
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// invokeCoord performs one consistent operation with a context of its own
// (the end of the workload does not cut an operation short) and records
// its outcome.
func invokeCoord(c *cluster, cl *api.Client, o linOp) linOp {
	ctx, cancel := context.WithTimeout(context.Background(), coordTimeout)
	defer cancel()
	o.Invoke = c.since()
	var err error
	switch o.Kind {
	case linGet:
		var kv *api.KV
		kv, err = cl.ConsistentGet(ctx, "", o.Key)
		switch {
		case errors.Is(err, api.ErrKeyNotFound):
			err = nil
		case err == nil:
			o.Found, o.Value = true, string(kv.Value)
			o.Version, err = parseVersion(kv.Version)
		}
	case linPut, linCAS:
		var opts api.PutOptions
		if o.Kind == linCAS {
			v := o.IfVersion
			opts.IfVersion = &v
		}
		var res *api.WriteResult
		res, err = cl.ConsistentPut(ctx, "", o.Key, []byte(o.Value), opts)
		if err == nil {
			o.Version, err = parseVersion(res.Version)
		}
	case linDel:
		_, err = cl.ConsistentDelete(ctx, "", o.Key, nil)
	}
	o.Done = c.since()
	o.Outcome = classifyCoord(err)
	if err != nil {
		o.Err = err.Error()
	}
	return o
}

// parseVersion reads a consistent Version, the decimal raft index.
func parseVersion(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("odd version %q in an acknowledgement: want the decimal raft index", s)
	}
	return v, nil
}

// classifyCoord turns an error of the consistent namespace into an
// outcome: a refused connection or a request the daemon refused as bad
// (4xx other than a version mismatch) did nothing; a version mismatch is
// a definite answer; anything else (503 no quorum, 5xx, a timeout, a
// reset, an odd acknowledgement) may or may not have taken effect.
func classifyCoord(err error) linOutcome {
	if err == nil {
		return linOK
	}
	if errors.Is(err, api.ErrVersionMismatch) {
		return linMismatch
	}
	var se *api.StatusError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 {
		return linFail
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Op == "dial" {
		return linFail
	}
	return linUnknown
}

// lockClient takes the lock again and again until ctx is done, and
// records each critical section.
func lockClient(ctx context.Context, c *cluster, h *coordHistory, clients []*api.Client, ci int, rng *rand.Rand) {
	for ctx.Err() == nil {
		ni := rng.IntN(len(c.agents))
		hold := lockHoldMin + time.Duration(rng.Int64N(int64(lockHoldMax-lockHoldMin)))
		if s, ok := holdLock(c, h, clients[ni], ci, c.agents[ni].name, hold); ok {
			h.mu.Lock()
			h.sections = append(h.sections, s)
			h.mu.Unlock()
		}
		t := time.NewTimer(lockPause) // the workload's pace
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// holdLock acquires the lock through cl, holds it for hold (renewing it
// every TTL/3) and releases it. The client counts itself in the critical
// section from the grant until the first of: it decides to release, a
// renewal fails, or its lease ends (TTL after it sent the acquire or the
// last successful renewal). It reports false if it got no grant.
func holdLock(c *cluster, h *coordHistory, cl *api.Client, ci int, node string, hold time.Duration) (section, bool) {
	h.mu.Lock()
	h.acquires++
	h.mu.Unlock()
	sent := c.since()
	ctx, cancel := context.WithTimeout(context.Background(), lockWait+coordTimeout)
	g, err := cl.Lock(ctx, "", lockName, lockTTL, lockWait)
	cancel()
	if err != nil {
		h.lockErr("acquire", err)
		return section{}, false
	}
	s := section{Client: ci, Node: node, Lock: lockName, Session: g.Session, Fence: g.Fence, Sent: sent, Enter: c.since(), Why: "released"}
	ttl := lockTTL
	if g.TTLMillis > 0 {
		ttl = time.Duration(g.TTLMillis) * time.Millisecond
	}
	leaseEnd := sent + ttl
	planned := s.Enter + hold
	for {
		next := min(c.since()+ttl/3, planned)
		if d := next - c.since(); d > 0 {
			time.Sleep(d) // the holder's schedule: renew every TTL/3 until the planned end
		}
		now := c.since()
		if now >= leaseEnd {
			s.Exit, s.Why = leaseEnd, "lease ended"
			break
		}
		if now >= planned {
			s.Exit = now
			break
		}
		rsent := now
		rctx, rcancel := context.WithTimeout(context.Background(), ttl/3)
		_, err := cl.RenewLock(rctx, "", lockName, g.Session)
		rcancel()
		if err != nil {
			h.lockErr("renew", err)
			s.Exit, s.Why = min(c.since(), leaseEnd), "renew failed: "+coordCause(err)
			break
		}
		leaseEnd = rsent + ttl
	}
	// Out of the critical section before the release is sent.
	ctx, cancel = context.WithTimeout(context.Background(), coordTimeout)
	if err := cl.Unlock(ctx, "", lockName, g.Session); err != nil && s.Why == "released" {
		h.lockErr("release", err)
	}
	cancel()
	return s, true
}

// pollLeaders asks every running agent for its leader every leaderPoll.
func pollLeaders(ctx context.Context, c *cluster, h *coordHistory, clients []*api.Client) {
	tick := time.NewTicker(leaderPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C: // the poller's pace
		}
		var wg sync.WaitGroup
		for i, a := range c.agents {
			if !a.running() {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rctx, cancel := context.WithTimeout(ctx, time.Second)
				l, err := clients[i].Leader(rctx, "")
				cancel()
				if err != nil {
					return
				}
				r := leaderReport{At: c.since(), Node: a.name, Leader: l.Leader, Term: l.Term, Self: l.State == "Leader", Source: "poll"}
				if r.Self && r.Leader == "" {
					r.Leader = a.name
				}
				h.mu.Lock()
				h.reports = append(h.reports, r)
				h.mu.Unlock()
			}()
		}
		wg.Wait()
	}
}

// finalReads reads every key of the history consistently through every
// running agent, after the cluster has healed: a lost acknowledged write shows as
// a read the checker cannot linearize. It retries each read that got no
// answer for up to leaderTimeout.
func finalReads(c *cluster, h *coordHistory) error {
	keys := make([]string, 0, len(h.keys))
	for k := range h.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hc := coordClientHTTP()
	defer hc.CloseIdleConnections()
	var errs []string
	for ai, a := range c.agents {
		if !a.running() {
			errs = append(errs, a.name+" is not running: not read")
			continue
		}
		cl := api.NewClientWith(a.api, hc)
		for _, k := range keys {
			deadline := time.Now().Add(leaderTimeout)
			for {
				o := invokeCoord(c, cl, linOp{Client: coordClients + lockClients + ai, Node: a.name, Kind: linGet, Key: k})
				if o.Outcome == linOK {
					h.addOp(o)
					break
				}
				if time.Now().After(deadline) {
					errs = append(errs, fmt.Sprintf("final read of %s at %s: %s", k, a.name, o.Err))
					break
				}
				time.Sleep(finalReadWait) // retry a read that found no quorum yet
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// coordSummary is the coordination part of a run's summary.
type coordSummary struct {
	ops, ok, mismatch, failed, unknown int
	byKind                             map[linKind]int
	reasons                            map[string]int
	keys                               int
	lin                                linResult
	linErr                             error
	reports, elections, terms          int // polled reports, "election won" log lines, terms named
	splitBrain                         []splitBrain
	sections, acquires                 int
	lockErrs                           map[string]int
	expired                            int // sections that ended by a failed renewal or the lease
	violations                         []lockViolation
	finalErr                           error
}

func (s *coordSummary) String() string {
	var rs []string
	for r, n := range s.reasons {
		rs = append(rs, fmt.Sprintf("%s %d", r, n))
	}
	sort.Strings(rs)
	var ls []string
	for r, n := range s.lockErrs {
		ls = append(ls, fmt.Sprintf("%s %d", r, n))
	}
	sort.Strings(ls)
	lin := "yes"
	switch {
	case s.linErr != nil:
		lin = "not decided: " + s.linErr.Error()
	case s.lin.Result == porcupine.Illegal:
		lin = "NO, see " + s.lin.Visualized
	case s.lin.Result != porcupine.Ok:
		lin = fmt.Sprintf("not decided (%s) within %s", s.lin.Result, linTimeout)
	}
	return fmt.Sprintf(`  consistent   %d operations on %d keys (get %d, put %d, cas %d, del %d): %d ok, %d cas mismatches, %d failed, %d unknown
  not answered %s
  linearizable %s (%d operations checked in %s)
  leaders      %d polled reports and %d elections won (daemon logs) over %d terms; split-brain: %d terms with two leaders
  locks        %d critical sections of %d acquires, %d ended by a failed renewal or the lease; violations: %d
  lock errors  %s`,
		s.ops, s.keys, s.byKind[linGet], s.byKind[linPut], s.byKind[linCAS], s.byKind[linDel], s.ok, s.mismatch, s.failed, s.unknown,
		strings.Join(rs, ", "), lin, s.lin.Checked, s.lin.Took.Round(time.Millisecond),
		s.reports, s.elections, s.terms, len(s.splitBrain),
		s.sections, s.acquires, s.expired, len(s.violations), strings.Join(ls, ", "))
}

// checkCoord runs every check of the coordination workload on its
// history, after the final reads.
func checkCoord(h *coordHistory) *coordSummary {
	s := &coordSummary{byKind: map[linKind]int{}, reasons: map[string]int{}, lockErrs: h.lockErrs, keys: len(h.keys)}
	for _, o := range h.ops {
		s.ops++
		s.byKind[o.Kind]++
		switch o.Outcome {
		case linOK:
			s.ok++
		case linMismatch:
			s.mismatch++
		case linFail:
			s.failed++
		default:
			s.unknown++
		}
		if o.Outcome == linFail || o.Outcome == linUnknown {
			s.reasons[o.Outcome.String()+": "+cause(o.Err)]++
		}
	}
	s.lin, s.linErr = checkLinearizable(h.ops, linTimeout, visualizationDir())
	for _, r := range h.reports {
		if r.Source == "log" {
			s.elections++
		} else {
			s.reports++
		}
	}
	s.terms, s.splitBrain = checkLeaders(h.reports)
	s.sections, s.acquires = len(h.sections), h.acquires
	for _, sec := range h.sections {
		if sec.Why != "released" {
			s.expired++
		}
	}
	s.violations = checkLocks(h.sections)
	return s
}

// checkCoordFailures fails the test for every violation in the summary,
// with the history of the offending keys.
func checkCoordFailures(t testing.TB, failf func(string, ...any), h *coordHistory, s *coordSummary) {
	t.Helper()
	switch {
	case s.linErr != nil:
		failf("linearizability check: %v", s.linErr)
	case s.lin.Result == porcupine.Illegal:
		failf("the consistent namespace's history is not linearizable; porcupine's visualization: %s", s.lin.Visualized)
		for _, k := range illegalKeys(h.ops) {
			t.Logf("history of %s (last 60 operations that may have taken effect):\n%s", k, keyHistory(h.ops, k, 60))
		}
	case s.lin.Result != porcupine.Ok:
		failf("linearizability check not decided within %s (%d operations on %d keys)", linTimeout, s.lin.Checked, s.lin.Keys)
	}
	for _, sb := range s.splitBrain {
		failf("split brain: %v", sb)
	}
	for _, v := range s.violations {
		failf("lock safety: %v", v)
	}
}

// illegalKeys returns the keys whose own history is not linearizable.
func illegalKeys(ops []linOp) []string {
	byKey := map[string][]linOp{}
	for _, o := range ops {
		byKey[o.Key] = append(byKey[o.Key], o)
	}
	var out []string
	for k, kops := range byKey {
		if porcupine.CheckOperationsTimeout(kvModel, linOperations(kops), 10*time.Second) == porcupine.Illegal {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// electionReports reads every "election won: term=N" line hashicorp/raft
// logged in any process of any agent: the winner's own record of each
// election, beside the polled reports.
func electionReports(c *cluster) []leaderReport {
	var out []leaderReport
	for _, a := range c.agents {
		for _, p := range a.all() {
			for _, line := range strings.Split(p.Output(), "\n") {
				if r, ok := parseElectionWon(a.name, line, c.start); ok {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// parseElectionWon parses a daemon's log line
//
//	time=2026-11-29T15:34:28.238Z level=INFO msg="raft: election won: term=2 tally=1" node=n1 part=raft
//
// into a report of node leading that term.
func parseElectionWon(node, line string, start time.Time) (leaderReport, bool) {
	_, rest, ok := strings.Cut(line, "election won: term=")
	if !ok {
		return leaderReport{}, false
	}
	if i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		rest = rest[:i]
	}
	term, err := strconv.ParseUint(rest, 10, 64)
	if err != nil {
		return leaderReport{}, false
	}
	r := leaderReport{Node: node, Leader: node, Term: term, Self: true, Source: "log"}
	if ts, _, ok := strings.Cut(strings.TrimPrefix(line, "time="), " "); ok {
		if at, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			r.At = at.Sub(start)
		}
	}
	return r, true
}
