package demo

// Chapter coordination: who coordinates, and how another takes over when
// it dies (Raft leader election); then a naive rule, "the alive member
// with the lowest name coordinates", computed by each node from its own
// gossip view, elects two coordinators in a partition, while the majority
// rule leaves the minority with none.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

// splitTimeout bounds how long the two sides of a partition take to
// declare each other failed (FACTS: 10–25 s for a group at N=5).
const splitTimeout = 60 * time.Second

func coordination(r *run) error {
	count := 50
	if r.o.Quick {
		count = 15
	}
	r.say("demo coordination: who decides, and what happens when it dies or is cut off?")
	r.say("The five nodes run a Raft group: one leader, elected by a majority of voters,")
	r.say("orders every consistent write. Any node can take over; none may lead alone.")

	g, err := r.newGroup("cluster", 5)
	if err != nil {
		return err
	}
	minority, majority := []int{0, 1}, []int{2, 3, 4}
	return r.steps(
		step{"Start 5 nodes; show who leads", func() error {
			if _, err := g.form(); err != nil {
				return err
			}
			leader, _, err := g.waitLeader(g.all(), leaderTimeout, "")
			if err != nil {
				return err
			}
			l, err := g.client(g.index(leader)).Leader(r.ctx, "")
			if err != nil {
				return err
			}
			r.note("`peerctl leader` at %s: term %d, commit index %d", leader, l.Term, l.CommitIndex)
			rows := [][]string{{"SERVER", "ROLE", "LAST CONTACT"}}
			for _, s := range l.Servers {
				lc := "-"
				if s.LastContactMs >= 0 {
					lc = fmt.Sprintf("%dms", s.LastContactMs)
				}
				rows = append(rows, []string{s.Name, s.Role, lc})
			}
			r.table(rows)
			return nil
		}},
		step{"The price of coordination: write latency through node5", func() error {
			r.note("%d writes of each kind, one after another:", count)
			_, _, err := r.price(g, 4, count)
			return err
		}},
		step{"Kill the leader (kill -9); the others elect another", func() error {
			old, term, err := g.waitLeader(g.all(), leaderTimeout, "")
			if err != nil {
				return err
			}
			li := g.index(old)
			survivors := g.except(li)
			writer := survivors[len(survivors)-1]
			// From the kill on, a client retries a consistent write
			// through a survivor until one is acknowledged.
			var wrote time.Duration
			var werr error
			var wg sync.WaitGroup
			if err := g.kill(li); err != nil {
				return err
			}
			t0 := time.Now()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, werr = g.acked(writer, "coordinated", "after the kill", leaderTimeout)
				wrote = time.Since(t0)
			}()
			leader, newTerm, err := g.waitLeader(survivors, leaderTimeout, old)
			elected := time.Since(t0)
			wg.Wait()
			if err != nil {
				return err
			}
			if werr != nil {
				return werr
			}
			r.note("ok: %s was elected (term %d → %d) %s after %s died;", leader, term, newTerm, fmtDur(elected), old)
			r.note("the first consistent write through %s was acknowledged after %s.", g.nodes[writer].Name, fmtDur(wrote))
			r.note("Followers wait a randomized election timeout without hearing from the leader,")
			r.note("then one asks the others for votes; a majority makes it leader.")
			r.figure("leader killed: new leader after", ms(elected), "ms")
			r.figure("leader killed: consistent write acknowledged after", ms(wrote), "ms")
			if err := g.restart(li); err != nil {
				return err
			}
			if err := g.waitAlive(g.all(), g.names(), restartWait); err != nil {
				return err
			}
			r.note("%s restarted and rejoined as a follower.", old)
			return nil
		}},
		step{"A naive rule: \"the alive member with the lowest name coordinates\"", func() error {
			views := g.naive(r.ctx)
			r.note("Each node applies it to its own gossip member list: all say %s.", strings.Join(unique(views), ", "))
			if u := unique(views); len(u) != 1 {
				return fmt.Errorf("before any fault the nodes name %s", strings.Join(u, ", "))
			}
			return nil
		}},
		step{"Partition {node1, node2} / {node3, node4, node5}", func() error {
			if err := g.partition(0, minority, majority); err != nil {
				return err
			}
			t0 := time.Now()
			r.note("Each side soon declares the other failed, and applies the rule to what it sees:")
			var views []string
			err := g.waitFor(splitTimeout, func(ctx context.Context) (bool, string) {
				views = g.naive(ctx)
				for _, i := range majority {
					if views[i] != "node3" {
						return false, fmt.Sprintf("%s still names %s", g.nodes[i].Name, views[i])
					}
				}
				return true, ""
			})
			if err != nil {
				return err
			}
			split := time.Since(t0)
			rows := [][]string{{"NODE", "SIDE", "NAIVE COORDINATOR", "RAFT: STATE", "RAFT: LEADER"}}
			ls, errs := g.leaders(r.ctx, g.all())
			for i, n := range g.nodes {
				side := "majority"
				if slices.Contains(minority, i) {
					side = "minority"
				}
				state, leader := "?", "?"
				if errs[i] == nil {
					state, leader = ls[i].State, ls[i].Leader
					if leader == "" {
						leader = "(none)"
					}
				}
				rows = append(rows, []string{n.Name, side, views[i], state, leader})
			}
			r.table(rows)
			coords := unique(views)
			r.note("The naive rule now has %d coordinators (%s), %s after the cut: each side", len(coords), strings.Join(coords, " and "), fmtDur(split))
			r.note("is sure of its own. Anything they coordinate (a lock, a job, a sequence) now")
			r.note("happens twice: split brain.")
			r.figure("naive rule: coordinators during the partition", float64(len(coords)), "")
			r.figure("naive rule: two coordinators after", ms(split), "ms")
			if len(coords) != 2 {
				return fmt.Errorf("the naive rule names %s; expected one per side", strings.Join(coords, ", "))
			}
			return nil
		}},
		step{"The majority rule: only the side with 3 of 5 voters can decide", func() error {
			leader, _, err := g.waitLeader(majority, leaderTimeout, "")
			if err != nil {
				return err
			}
			leading := 0
			ls, errs := g.leaders(r.ctx, g.all())
			for i := range g.nodes {
				if errs[i] == nil && ls[i].State == "Leader" {
					leading++
					if ls[i].Node != leader {
						return fmt.Errorf("%s says it leads besides %s", ls[i].Node, leader)
					}
				}
			}
			r.note("ok: %s, on the majority side, is the only node that says it leads; the", leader)
			r.note("minority's nodes cannot win an election with 2 votes of 5.")
			r.figure("Raft: leaders during the partition", float64(leading), "")
			if _, err := g.client(0).Put(r.ctx, "", "job", []byte("run by the minority")); err != nil {
				return fmt.Errorf("gossip write at node1: %w", err)
			}
			took, err := g.refused(0, "job", "run by the minority")
			if err != nil {
				return err
			}
			r.note("ok: node1 (minority) accepts a gossip write but refuses a consistent one after")
			r.note("%s: \"no quorum\".", fmtDur(took))
			if _, err := g.client(3).Put(r.ctx, "", "job", []byte("run by the majority")); err != nil {
				return fmt.Errorf("gossip write at node4: %w", err)
			}
			wr, _, err := g.acked(3, "job", "run by the majority", leaderTimeout)
			if err != nil {
				return err
			}
			r.note("ok: node4 (majority) accepts both; the consistent one at index %s.", wr.Version)
			if err := g.heal(0); err != nil {
				return err
			}
			err = g.waitFor(healTimeout, func(ctx context.Context) (bool, string) {
				for i, n := range g.nodes {
					kv, err := g.slowClient(i).ConsistentGet(ctx, "", "job")
					if err != nil {
						return false, fmt.Sprintf("consistent read at %s: %v", n.Name, err)
					}
					if kv.Version != wr.Version {
						return false, fmt.Sprintf("%s reads %q at %s", n.Name, kv.Value, kv.Version)
					}
				}
				return true, ""
			})
			if err != nil {
				return err
			}
			r.keepNote = append(r.keepNote, fmt.Sprintf("peerctl --addr %s leader    # the Raft group as node1 sees it", g.nodes[0].API))
			r.note("Healed: every node reads the majority's job at index %s; the minority's never", wr.Version)
			r.note("happened. A majority rule cannot pick two: two sides cannot both hold 3 of 5.")
			return nil
		}},
	)
}

// naive applies "the alive member with the lowest name coordinates" to
// each node's own member list; "?" for a node that does not answer.
func (g *group) naive(ctx context.Context) []string {
	views, errs := memberViews(ctx, g)
	out := make([]string, len(g.nodes))
	for i := range g.nodes {
		if errs[i] != nil {
			out[i] = "?"
			continue
		}
		var alive []string
		for _, m := range views[i] {
			if m.Status == "alive" || m.Status == "suspect" {
				alive = append(alive, m.Name)
			}
		}
		sort.Strings(alive)
		out[i] = "(none)"
		if len(alive) > 0 {
			out[i] = alive[0]
		}
	}
	return out
}

func memberViews(ctx context.Context, g *group) ([][]api.Member, []error) {
	views := make([][]api.Member, len(g.nodes))
	errs := make([]error, len(g.nodes))
	for i := range g.nodes {
		views[i], errs[i] = g.client(i).Members(ctx, "")
		if errs[i] == nil && len(views[i]) == 0 {
			errs[i] = errors.New("no members")
		}
	}
	return views, errs
}

// unique returns the distinct values, sorted.
func unique(ss []string) []string {
	out := slices.Clone(ss)
	sort.Strings(out)
	return slices.Compact(out)
}
