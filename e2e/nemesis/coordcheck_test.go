package nemesis

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Checkers of the raft group's coordination promises (issue 11, item 4):
// at most one leader per term, and lock safety.

// leaderReport is one node's answer to GET /v1/leader: the leader it
// knows and its term.
type leaderReport struct {
	At     time.Duration // when the answer arrived, since the cluster started
	Node   string        // the node asked
	Leader string        // the leader it names ("" = none known)
	Term   uint64
	Self   bool   // the node names itself
	Source string // "poll" (GET /v1/leader) or "log" (raft's "election won" line)
}

// splitBrain is two leaders named for one term.
type splitBrain struct {
	Term    uint64
	Leaders map[string][]leaderReport // leader -> the reports naming it
}

func (s splitBrain) String() string {
	var names []string
	for n := range s.Leaders {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		rs := s.Leaders[n]
		var who []string
		for _, r := range rs {
			if len(who) == 4 {
				who = append(who, fmt.Sprintf("and %d more", len(rs)-4))
				break
			}
			who = append(who, fmt.Sprintf("%s at +%s (%s)", r.Node, r.At.Round(time.Millisecond), r.Source))
		}
		claim := "only named by others"
		for _, r := range rs {
			if r.Self {
				claim = "claimed by itself"
				if r.Source == "log" {
					claim = "won the election (its log)"
					break
				}
			}
		}
		parts = append(parts, fmt.Sprintf("%s, %s, named by %s", n, claim, strings.Join(who, ", ")))
	}
	return fmt.Sprintf("term %d has %d leaders: %s", s.Term, len(s.Leaders), strings.Join(parts, "; "))
}

// checkLeaders returns every term for which the reports name more than
// one leader (Election Safety, raft paper figure 3: at most one leader can
// be elected in a given term). Reports naming no leader say nothing.
func checkLeaders(reports []leaderReport) (terms int, out []splitBrain) {
	byTerm := map[uint64]map[string][]leaderReport{}
	for _, r := range reports {
		if r.Leader == "" {
			continue
		}
		m := byTerm[r.Term]
		if m == nil {
			m = map[string][]leaderReport{}
			byTerm[r.Term] = m
		}
		m[r.Leader] = append(m[r.Leader], r)
	}
	for term, m := range byTerm {
		if len(m) > 1 {
			out = append(out, splitBrain{Term: term, Leaders: m})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Term < out[j].Term })
	return len(byTerm), out
}

// section is one critical section a lock client ran. A client enters when
// the grant arrives and leaves when it releases the lock, when a renewal
// fails, or when its lease may have run out, whichever is first: the
// lease, by the client's clock, ends TTL after it sent the request that
// granted or last renewed it (the daemon starts the TTL when it receives
// that request, later). So a client never believes it holds a lock the
// daemon may already have given away, and two sections overlap only if
// the daemon granted the lock twice at once.
type section struct {
	Client  int
	Node    string // the daemon that granted it
	Lock    string
	Session string
	Fence   uint64
	Sent    time.Duration // the acquire request was sent
	Enter   time.Duration // the grant arrived
	Exit    time.Duration // the client stopped acting as the holder
	Why     string        // why it left: released, renew failed, lease ended
}

func (s section) String() string {
	return fmt.Sprintf("c%d %s fence %d session %s via %s [+%s..+%s] (%s)", s.Client, s.Lock, s.Fence, s.Session, s.Node,
		s.Enter.Round(time.Millisecond), s.Exit.Round(time.Millisecond), s.Why)
}

// lockViolation is a breach of lock safety.
type lockViolation struct {
	A, B section // B entered after A
	What string
}

func (v lockViolation) String() string { return v.What + ": " + v.A.String() + " / " + v.B.String() }

// checkLocks checks every lock's critical sections: ordered by entry,
// each must begin after the previous ones ended (mutual exclusion) and
// carry a greater fence (fencing tokens strictly increase in acquisition
// order, so a resource that remembers the greatest fence it saw refuses
// a stale holder); no two grants share a fence.
func checkLocks(secs []section) []lockViolation {
	byLock := map[string][]section{}
	var locks []string
	for _, s := range secs {
		if _, ok := byLock[s.Lock]; !ok {
			locks = append(locks, s.Lock)
		}
		byLock[s.Lock] = append(byLock[s.Lock], s)
	}
	sort.Strings(locks)
	var out []lockViolation
	for _, l := range locks {
		ss := byLock[l]
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].Enter < ss[j].Enter })
		fences := map[uint64]section{}
		for i, s := range ss {
			if prev, dup := fences[s.Fence]; dup {
				out = append(out, lockViolation{prev, s, "two grants with one fence"})
			}
			fences[s.Fence] = s
			for _, p := range ss[:i] {
				if p.Exit > s.Enter {
					out = append(out, lockViolation{p, s, "critical sections overlap"})
				}
				if p.Fence > s.Fence {
					out = append(out, lockViolation{p, s, "fence did not increase"})
				}
			}
		}
	}
	return out
}
