package daemon

// A node's fault table at work (see faultstate.go for the design): loaded
// from the data dir and applied before serf starts, merged with the tables
// other nodes push or return, saved before it is applied, re-derived when
// an expiry passes, and exchanged with a random known member every 1-2 s
// over the HTTP API:
//
//	POST /v1/faults/table   a table (faultFile) -> this node's table after merging it

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"
)

// Timing of the table exchange.
const (
	faultSyncInterval = time.Second     // plus up to faultSyncJitter
	faultSyncJitter   = time.Second     // so nodes do not exchange in step
	faultSyncTimeout  = 2 * time.Second // one exchange or push
)

// faultState is a node's fault table and what it applies from it.
type faultState struct {
	dir string // data dir; "" keeps the table in memory

	hc *http.Client // table exchanges; the API server may not run yet

	mu      sync.Mutex // guards table, applied; held across save and apply
	table   FaultTable
	applied map[string]bool // IDs of the records whose rules are set in Faults
}

// openFaults loads the saved table and applies this node's rules. Create
// calls it before serf, memberlist or replication can send anything, so a
// node restarted under a fault is under it from its first message. A
// damaged file is moved aside: the node then learns the table from its
// peers within one exchange.
func (a *Agent) openFaults() error {
	fs := &faultState{applied: map[string]bool{}, table: FaultTable{},
		hc: &http.Client{Timeout: faultSyncTimeout}}
	if !a.cfg.InMemory {
		fs.dir = a.cfg.DataDir
		t, err := loadFaults(fs.dir)
		switch {
		case errors.Is(err, errBadFaultFile):
			aside := filepath.Join(fs.dir, faultFileName+".damaged")
			if rerr := os.Rename(filepath.Join(fs.dir, faultFileName), aside); rerr != nil {
				return fmt.Errorf("%w; and could not move it aside: %w", err, rerr)
			}
			a.log.Error("fault table set aside; faults in force are learned from peers", "err", err, "moved_to", aside)
		case err != nil:
			return err
		default:
			fs.table = purgeFaults(t, time.Now())
		}
	}
	a.fstate = fs
	fs.mu.Lock()
	a.applyFaultsLocked(time.Now(), false)
	fs.mu.Unlock()
	a.startupExchange()
	return nil
}

// startupExchange asks every member this node has known for the fault
// table, in parallel and for at most faultSyncTimeout, and merges what
// they answer: a node that was down when a fault was ordered starts under
// it. A node that reaches none starts under its saved table and learns
// the rest at its first exchange after start.
func (a *Agent) startupExchange() {
	peers := a.faultPeers()
	if len(peers) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultSyncTimeout)
	defer cancel()
	answered := 0
	for _, nf := range a.pushFaults(ctx, peers) {
		if nf.Error == "" {
			answered++
		}
	}
	a.log.Info("fault table at start", "asked", len(peers), "answered", answered, "in_force", len(a.faultTable().live(time.Now())))
}

// applyFaultsLocked sets this node's rules from the table at now and
// reports whether any rule was lifted; with rejoin, a lift makes the node
// contact the members it lost. fstate.mu must be held.
func (a *Agent) applyFaultsLocked(now time.Time, rejoin bool) (lifted bool) {
	fs := a.fstate
	// Name the table's members' gossip addresses, so a rule applies to a
	// join by address (serf's snapshot rejoin at start) before serf has
	// told us who lives there.
	for _, ep := range fs.table.endpoints() {
		if ep.Gossip != "" && ep.Name != a.cfg.Name {
			a.addrNames.LoadOrStore(ep.Gossip, ep.Name)
		}
	}
	a.events.faultTable(fs.table, now)
	rules := deriveRules(fs.table, a.cfg.Name, now)
	now2 := map[string]bool{}
	for _, r := range rules {
		now2[r.ID] = true
	}
	for _, rec := range fs.table.records() {
		switch {
		case now2[rec.ID] && !fs.applied[rec.ID]:
			if seed := rec.Request.Seed; seed != 0 {
				h := fnv.New64a()
				h.Write([]byte(a.cfg.Name))
				a.faults.Seed(seed ^ h.Sum64())
			}
			for _, r := range rules {
				if r.ID == rec.ID {
					until := "until healed"
					if !r.Until.IsZero() {
						until = "until " + r.Until.Format(time.RFC3339)
					}
					a.log.Warn("fault applied: "+r.Describe(), "id", r.ID, "reason", r.Reason, "for", until)
				}
			}
		case !now2[rec.ID] && fs.applied[rec.ID]:
			why := "expired"
			if !rec.Healed.IsZero() {
				why = "healed"
			}
			a.log.Warn("fault lifted", "id", rec.ID, "why", why)
			lifted = true
		}
	}
	for id := range fs.applied {
		if _, ok := fs.table[id]; !ok && !now2[id] {
			a.log.Warn("fault lifted", "id", id, "why", "purged")
			lifted = true
		}
	}
	fs.applied = now2
	if err := a.faults.Set(rules); err != nil {
		a.log.Error("fault rules refused", "err", err) // derived from validated records: a bug
	}
	if lifted && rejoin {
		a.rejoinLost()
	}
	return lifted
}

// updateFaults replaces the table with change(table), saves it and
// applies it, unless nothing changed. It returns the new table.
func (a *Agent) updateFaults(change func(FaultTable) (FaultTable, error)) (FaultTable, error) {
	fs := a.fstate
	fs.mu.Lock()
	defer fs.mu.Unlock()
	now := time.Now()
	t, err := change(fs.table)
	if err != nil {
		return fs.table, err
	}
	t = purgeFaults(t, now)
	if equalFaults(t, fs.table) {
		return fs.table, nil
	}
	if fs.dir != "" {
		if err := saveFaults(fs.dir, t); err != nil {
			return fs.table, err
		}
	}
	fs.table = t
	a.applyFaultsLocked(now, true)
	return t, nil
}

// mergeFaultTable merges a table received from another node.
func (a *Agent) mergeFaultTable(remote FaultTable) (FaultTable, error) {
	return a.updateFaults(func(t FaultTable) (FaultTable, error) {
		return mergeFaults(t, remote, time.Now()), nil
	})
}

// faultTable returns a copy of the table.
func (a *Agent) faultTable() FaultTable {
	a.fstate.mu.Lock()
	defer a.fstate.mu.Unlock()
	out := make(FaultTable, len(a.fstate.table))
	for id, r := range a.fstate.table {
		out[id] = r
	}
	return out
}

// faultSyncLoop lifts expired rules on time and exchanges the table with
// a random known member every 1-2 s, until the agent stops.
func (a *Agent) faultSyncLoop() {
	defer a.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), a.cfg.FaultSeed))
	for {
		t := time.NewTimer(faultSyncInterval + time.Duration(rng.Int64N(int64(faultSyncJitter))))
		select {
		case <-t.C:
		case <-a.stopCh:
			t.Stop()
			return
		}
		a.expireFaults()
		peers := a.faultPeers()
		if len(peers) == 0 {
			continue
		}
		p := peers[rng.IntN(len(peers))]
		ctx, cancel := context.WithTimeout(context.Background(), faultSyncTimeout)
		if err := a.exchangeFaults(ctx, p); err != nil {
			a.log.Debug("fault table exchange", "peer", p.Name, "err", err)
		}
		cancel()
	}
}

// expireFaults re-derives the rules when an expiry has passed, and drops
// records that no longer matter.
func (a *Agent) expireFaults() {
	fs := a.fstate
	fs.mu.Lock()
	defer fs.mu.Unlock()
	now := time.Now()
	a.events.faultTable(fs.table, now)
	want := map[string]bool{}
	for _, r := range deriveRules(fs.table, a.cfg.Name, now) {
		want[r.ID] = true
	}
	if !maps.Equal(want, fs.applied) {
		a.applyFaultsLocked(now, true)
	}
	if n := len(fs.table); len(purgeFaults(fs.table, now)) != n && fs.dir != "" {
		if err := saveFaults(fs.dir, fs.table); err != nil {
			a.log.Warn("save fault table", "err", err)
		}
	}
}

// faultPeers returns every other node whose API may answer: the members
// serf knows, failed ones included (a cut-off node is "failed" to the
// others, yet its API answers), and every member the fault table names,
// which a node restarted behind a partition knows of only from there.
func (a *Agent) faultPeers() []Member {
	byName := map[string]Member{}
	var ms []Member
	if a.serf != nil {
		ms = a.Members()
	}
	for _, m := range ms {
		if m.Name != a.cfg.Name && m.Status != serf.StatusLeft.String() && m.API != "" {
			byName[m.Name] = m
		}
	}
	a.fstate.mu.Lock()
	eps := a.fstate.table.endpoints()
	a.fstate.mu.Unlock()
	for _, k := range a.knownMembers() { // known.go: saved in the data dir
		if _, ok := eps[k.Name]; !ok {
			eps[k.Name] = Endpoint{Name: k.Name, Gossip: k.Addr, API: k.API}
		}
	}
	for name, ep := range eps {
		if _, ok := byName[name]; !ok && name != a.cfg.Name && ep.API != "" {
			byName[name] = Member{Name: name, Addr: ep.Gossip, API: ep.API, Status: "unknown"}
		}
	}
	out := make([]Member, 0, len(byName))
	for _, m := range byName {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// exchangeFaults sends the table to m and merges the table it returns.
func (a *Agent) exchangeFaults(ctx context.Context, m Member) error {
	var raw json.RawMessage
	c := NewClientWith(m.API, a.fstate.hc)
	body := bytes.NewReader(encodeFaults(a.faultTable()))
	if err := c.Do(ctx, "POST", "/v1/faults/table", body, &raw); err != nil {
		return err
	}
	remote, err := decodeFaults(raw)
	if err != nil {
		return fmt.Errorf("fault table from %s: %w", m.Name, err)
	}
	_, err = a.mergeFaultTable(remote)
	return err
}

// pushFaults exchanges the table with every member of ms but this node, in
// parallel, and returns one NodeFaults per member: Error says why it could
// not be reached.
func (a *Agent) pushFaults(ctx context.Context, ms []Member) []NodeFaults {
	ctx, cancel := context.WithTimeout(ctx, faultSyncTimeout)
	defer cancel()
	return eachNode(ms, nil, func(m Member) NodeFaults {
		nf := NodeFaults{Node: m.Name}
		if m.Name == a.cfg.Name {
			return nf
		}
		if err := a.exchangeFaults(ctx, m); err != nil {
			nf.Error = err.Error()
		}
		return nf
	})
}

// postFaultTable merges a table a peer sent and returns this node's.
func (s *httpServer) postFaultTable(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFaultBody))
	if err != nil {
		code := http.StatusRequestEntityTooLarge
		if errors.Is(err, errBusy) {
			code = http.StatusServiceUnavailable
		}
		writeError(w, code, fmt.Errorf("fault table: %w", err))
		return
	}
	remote, err := decodeFaults(data)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	t, err := s.a.mergeFaultTable(remote)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(encodeFaults(t))
}

// rejoinLost contacts, at once rather than at serf's next reconnect
// attempt, the members marked failed and those the fault table names that
// serf does not know alive: after a heal, nodes that declared each other
// failed find each other within moments, and a node restarted behind the
// fault, which may know no one, finds the cluster.
func (a *Agent) rejoinLost() {
	if a.serf == nil || !a.rejoining.CompareAndSwap(false, true) {
		return
	}
	alive := map[string]bool{a.cfg.Name: true}
	var addrs []string
	for _, m := range a.Members() {
		switch m.Status {
		case serf.StatusFailed.String():
			addrs = append(addrs, m.Addr)
		case serf.StatusLeft.String():
		default:
			alive[m.Name] = true
		}
	}
	for name, ep := range a.fstate.table.endpoints() {
		if !alive[name] && ep.Gossip != "" && !slices.Contains(addrs, ep.Gossip) {
			addrs = append(addrs, ep.Gossip)
		}
	}
	if len(addrs) == 0 {
		a.rejoining.Store(false)
		return
	}
	go func() {
		defer a.rejoining.Store(false)
		n, err := a.serf.Join(addrs, true)
		if err != nil {
			a.log.Info("rejoin after heal", "tried", len(addrs), "contacted", n, "err", oneLineErr(err))
			return
		}
		a.log.Info("rejoin after heal", "tried", len(addrs), "contacted", n)
	}()
}
