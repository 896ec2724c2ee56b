package daemon

// The fault layer. Every message a node sends or receives, membership
// (memberlist packets and streams) and replication alike, passes through one
// Faults value, so a rule applies to all of that node's traffic at once. The
// HTTP API itself is outside it, so a faulted node can always be healed.
//
// Rules act where a node sends, keyed by the destination's name: on loopback
// a receiver cannot tell who opened a TCP stream (every peer is 127.0.0.1
// on an ephemeral port), so a partition is two sets of send rules, one on
// each side. Rules are not installed one by one: each node derives its own
// from the cluster's fault table (faultstate.go) and sets them here. A paused node also drops what it receives, as a frozen
// process would. UDP and TCP fail together; a delay never blocks the caller
// of a packet send (memberlist sends from its probe and gossip loops).
// Random choices (loss, jitter) come from a seeded generator, so a scenario
// replays with the same seed.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// validateRule checks a rule before it is installed.
func validateRule(r *Rule) error {
	switch r.Kind {
	case FaultDrop, FaultPause:
	case FaultDelay:
		if r.Delay <= 0 || r.Jitter < 0 || r.Delay > time.Minute || r.Jitter > r.Delay {
			return fmt.Errorf("delay %v jitter %v: want 0 < delay <= 1m and 0 <= jitter <= delay", r.Delay, r.Jitter)
		}
	case FaultLoss:
		if !(r.Rate > 0 && r.Rate <= 1) { // NaN too
			return fmt.Errorf("loss rate %v: want 0 < rate <= 1", r.Rate)
		}
	default:
		return fmt.Errorf("unknown fault kind %q: want drop, delay, loss or pause", r.Kind)
	}
	return nil
}

func ruleMatches(r *Rule, peer string) bool {
	return len(r.Peers) == 0 || slices.Contains(r.Peers, peer)
}

func ruleActive(r *Rule, now time.Time) bool { return r.Until.IsZero() || now.Before(r.Until) }

// Faults holds one node's active rules and decides the fate of each
// message. It is safe for concurrent use.
type Faults struct {
	now func() time.Time

	mu    sync.Mutex // guards rules, rng
	rules []Rule
	rng   *rand.Rand

	// count mirrors len(rules), so the common case, no faults, costs every
	// gossip packet and replication message one atomic load, not a lock.
	count atomic.Int32
}

// NewFaults returns an empty fault layer whose random choices come from seed.
func NewFaults(seed uint64) *Faults {
	return &Faults{now: time.Now, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Add installs rules. A rule with the ID of an installed one replaces it.
func (f *Faults) Add(rules ...Rule) error {
	for i := range rules {
		if err := validateRule(&rules[i]); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range rules {
		f.rules = slices.DeleteFunc(f.rules, func(o Rule) bool { return o.ID == r.ID && o.Kind == r.Kind })
		f.rules = append(f.rules, r)
	}
	f.count.Store(int32(len(f.rules)))
	return nil
}

// Set replaces every rule with rules, at once.
func (f *Faults) Set(rules []Rule) error {
	for i := range rules {
		if err := validateRule(&rules[i]); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = slices.Clone(rules)
	f.count.Store(int32(len(f.rules)))
	return nil
}

// Seed restarts the random generator, so a run can be replayed.
func (f *Faults) Seed(seed uint64) {
	f.mu.Lock()
	f.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	f.mu.Unlock()
}

// Heal removes the rules with the given IDs, or all rules if none given,
// and returns how many it removed.
func (f *Faults) Heal(ids ...string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.rules)
	if len(ids) == 0 {
		f.rules = nil
	} else {
		f.rules = slices.DeleteFunc(f.rules, func(r Rule) bool { return slices.Contains(ids, r.ID) })
	}
	f.count.Store(int32(len(f.rules)))
	return n - len(f.rules)
}

// Rules returns the active rules, dropping expired ones.
func (f *Faults) Rules() []Rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	return slices.Clone(f.rules)
}

// expire drops rules past their Until. f.mu must be held.
func (f *Faults) expire() {
	now := f.now()
	f.rules = slices.DeleteFunc(f.rules, func(r Rule) bool { return !ruleActive(&r, now) })
	f.count.Store(int32(len(f.rules)))
}

// Paused reports whether the node is paused: it must neither send nor
// answer anything.
func (f *Faults) Paused() bool {
	if f.count.Load() == 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	for _, r := range f.rules {
		if r.Kind == FaultPause {
			return true
		}
	}
	return false
}

// CutOff reports whether the node must not answer anything at all: it is
// paused, or drops everything it sends to every peer (isolated). Accepted
// connections are then closed too, since every reply would go to a peer.
func (f *Faults) CutOff() bool {
	if f.count.Load() == 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	for _, r := range f.rules {
		if r.Kind == FaultPause || (r.Kind == FaultDrop && len(r.Peers) == 0) {
			return true
		}
	}
	return false
}

// Outbound decides the fate of one message to peer: dropped, or sent after
// the returned delay (0 for now).
func (f *Faults) Outbound(peer string) (drop bool, delay time.Duration) {
	if f.count.Load() == 0 {
		return false, 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	for _, r := range f.rules {
		switch {
		case r.Kind == FaultPause:
			return true, 0
		case !ruleMatches(&r, peer):
		case r.Kind == FaultDrop:
			return true, 0
		case r.Kind == FaultLoss:
			if f.rng.Float64() < r.Rate {
				return true, 0
			}
		case r.Kind == FaultDelay:
			d := r.Delay
			if r.Jitter > 0 {
				d += time.Duration(f.rng.Int64N(int64(2*r.Jitter)+1)) - r.Jitter
			}
			delay += d
		}
	}
	return false, delay
}

// Toward describes the rules that affect traffic to peer, for members output.
func (f *Faults) Toward(peer string) string {
	var out []string
	for _, r := range f.Rules() {
		if r.Kind == FaultPause {
			out = append(out, "paused")
			continue
		}
		if !ruleMatches(&r, peer) {
			continue
		}
		switch r.Kind {
		case FaultDrop:
			out = append(out, "cut")
		case FaultDelay:
			out = append(out, "delay "+r.Delay.String())
		case FaultLoss:
			out = append(out, fmt.Sprintf("loss %.0f%%", r.Rate*100))
		}
	}
	return strings.Join(out, ",")
}

// errDropped is returned for a message the fault layer dropped.
var errDropped = fmt.Errorf("dropped by fault injection")
