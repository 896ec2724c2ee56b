package demo

// Chapter availability: a client keeps writing and reading through every
// node while nodes are killed and restarted; the same client against a
// single node killed once.

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

const (
	availInterval = 20 * time.Millisecond // one operation (a write and a read) every 20 ms
	restartWait   = 30 * time.Second      // a restarted node: back and caught up
)

func availability(r *run) error {
	n, phase := 5, 4*time.Second
	if r.o.Quick {
		phase = 1500 * time.Millisecond
	}
	r.say("demo availability: is a group of machines passing messages more available than one?")
	r.say("A client writes and reads every %s. It knows every node's address and, like a", fmtDur(availInterval))
	r.say("real client, sends each request to the next node in turn, trying the next one")
	r.say("whenever a node does not answer. We kill nodes under it and count what it sees.")

	g, err := r.newGroup("cluster", n)
	if err != nil {
		return err
	}
	var ld *load
	var marks []time.Time // phase boundaries: start, 1 down, 2 down, restarting, restarted, end
	var whole []op
	err = r.steps(
		step{fmt.Sprintf("Start %d nodes and the client", n), func() error {
			took, err := g.form()
			if err != nil {
				return err
			}
			r.note("ok: %d nodes see each other alive after %s.", n, fmtDur(took))
			cs := make([]*api.Client, n)
			for i := range cs {
				cs[i] = g.client(i)
			}
			ld = startLoad(r.ctx, cs, availInterval, "avail")
			marks = append(marks, time.Now())
			return r.sleep(phase)
		}},
		step{"Kill node2 (as kill -9)", func() error {
			if err := g.kill(1); err != nil {
				return err
			}
			marks = append(marks, time.Now())
			r.note("node2 is gone; requests sent to it are refused and the client tries the next node.")
			return r.sleep(phase)
		}},
		step{"Kill node3 too: 2 of 5 down", func() error {
			if err := g.kill(2); err != nil {
				return err
			}
			marks = append(marks, time.Now())
			return r.sleep(phase)
		}},
		step{"Restart both; they catch up on what they missed", func() error {
			t0 := time.Now()
			marks = append(marks, t0)
			for _, i := range []int{1, 2} {
				if err := g.restart(i); err != nil {
					return err
				}
			}
			if err := g.waitAlive(g.all(), g.names(), restartWait); err != nil {
				return err
			}
			marks = append(marks, time.Now())
			r.note("ok: all 5 alive again %s after the restart.", fmtDur(time.Since(t0)))
			if err := r.sleep(phase); err != nil {
				return err
			}
			whole = ld.finish()
			marks = append(marks, time.Now())
			took, err := g.converged(restartWait)
			if err != nil {
				return err
			}
			r.note("ok: every node holds the same data %s after the load stopped,", fmtDur(took))
			r.note("including the writes node2 and node3 missed while down.")
			return nil
		}},
		step{"Check what the client saw", func() error {
			names := []string{"all 5 up", "node2 down", "node2, node3 down", "restarting", "all 5 up again"}
			rows := [][]string{{"PHASE", "OPS", "FAILED", "REROUTED", "SLOWEST"}}
			for k, name := range names {
				s := statsOf(between(whole, marks[k], marks[k+1]))
				rows = append(rows, []string{name, fmt.Sprint(s.n), fmt.Sprint(s.failed), fmt.Sprint(s.rerouted), fmtDur(s.slowest)})
			}
			r.table(rows)
			s := statsOf(whole)
			r.figure("cluster of 5: operations", float64(s.n), "")
			r.figure("cluster of 5: failed", float64(s.failed), "")
			r.figure("cluster of 5: answered, %", s.availability(), "pct")
			r.figure("cluster of 5: rerouted around a dead node", float64(s.rerouted), "")
			r.figure("cluster of 5: longest unavailability", ms(s.outage), "ms")
			r.figure("cluster of 5: slowest answered operation", ms(s.slowest), "ms")
			if s.failed > 0 {
				return fmt.Errorf("%d of %d operations failed at every node (first: %s): the client could not route around the dead nodes", s.failed, s.n, s.firstErr)
			}
			if s.rerouted == 0 {
				return fmt.Errorf("no operation was rerouted: the kills were not seen")
			}
			r.note("ok: every one of %d operations was answered; %d went to a dead node first", s.n, s.rerouted)
			r.note("and were answered by the next one. A restarting node can be slow: it accepts")
			r.note("connections before it serves them, so a request waits for it or for the")
			r.note("client's %s timeout.", "2s")
			return nil
		}},
	)
	if err != nil {
		return err
	}
	g.close()

	single, err := r.newGroup("single", 1)
	if err != nil {
		return err
	}
	var sOps []op
	err = r.steps(
		step{"The same client against a single node, killed once", func() error {
			if _, err := single.form(); err != nil {
				return err
			}
			ld := startLoad(r.ctx, []*api.Client{single.client(0)}, availInterval, "single")
			if err := r.sleep(phase); err != nil {
				return err
			}
			if err := single.kill(0); err != nil {
				return err
			}
			r.note("Killed it and restarted it at once, as a supervisor (systemd, Kubernetes) would.")
			if err := single.restart(0); err != nil {
				return err
			}
			if err := single.waitFor(restartWait, func(ctx context.Context) (bool, string) {
				if _, err := single.client(0).Info(ctx, ""); err != nil {
					return false, err.Error()
				}
				return true, ""
			}); err != nil {
				return err
			}
			if err := r.sleep(phase); err != nil {
				return err
			}
			sOps = ld.finish()
			s := statsOf(sOps)
			r.figure("single node: operations", float64(s.n), "")
			r.figure("single node: failed", float64(s.failed), "")
			r.figure("single node: answered, %", s.availability(), "pct")
			r.figure("single node: longest unavailability", ms(s.outage), "ms")
			if s.failed == 0 {
				return fmt.Errorf("no operation failed while the only node was down")
			}
			r.note("ok: %d of %d operations failed; the client had no answer for %s.", s.failed, s.n, fmtDur(s.outage))
			return nil
		}},
		step{"What this says in nines, and what it cannot say", func() error {
			cs, ss := statsOf(whole), statsOf(sOps)
			cn, sn := nines(cs), nines(ss)
			r.figure("cluster of 5: nines shown by the run", cn, "")
			r.figure("single node: nines shown by the run", sn, "")
			r.note("Availability is the share of requests answered. \"Five nines\" (99.999%%) allows")
			r.note("5.26 minutes of downtime a year. Over this run:")
			span := sOps[len(sOps)-1].start.Add(sOps[len(sOps)-1].took).Sub(sOps[0].start)
			down := 100 * ss.outage.Seconds() / span.Seconds()
			r.figure("single node: time without an answer, % of its run", down, "pct")
			r.note("  one node:   %.2f%% of requests answered = %.1f nines; no answer for %s", ss.availability(), sn, fmtDur(ss.outage))
			r.note("              after one crash, %.1f%% of its %s run. At one crash per %s", down, fmtDur(span), fmtDur(span))
			monthly := time.Duration(12 * float64(ss.outage))
			r.note("              that is %.0f days a year; at one a month, %s a year (%.1f nines).",
				down/100*365, fmtDur(monthly), -math.Log10(monthly.Hours()/(365*24)))
			r.note("  5 replicas: %.2f%% answered with 2 nodes down at once:", cs.availability())
			r.note("              %s.", ninesText(cs))
			r.note("What a %s run cannot show: a year's availability depends on how often", fmtDur(marks[len(marks)-1].Sub(marks[0])))
			r.note("machines fail (months apart, not seconds) and how long repair takes. %d operations", cs.n)
			r.note("can show at most %.1f nines. And the cluster fails too when 3 of its 5 nodes are", math.Log10(float64(cs.n)))
			r.note("down at once, or the network cuts the client off from them. What carries over:")
			r.note("with one node every crash is an outage as long as the restart; with replicas and")
			r.note("a client that routes around them, a crash costs a retry, not an outage.")
			return nil
		}},
	)
	return err
}

// nines is −log10 of the share of failed operations; with none failed, the
// most the run can show, log10 of the number of operations.
func nines(s opStats) float64 {
	if s.n == 0 {
		return 0
	}
	if s.failed == 0 {
		return math.Log10(float64(s.n))
	}
	return -math.Log10(float64(s.failed) / float64(s.n))
}

func ninesText(s opStats) string {
	if s.failed == 0 {
		return fmt.Sprintf("no failure in %d operations, the most such a run can show: %.1f nines or more", s.n, nines(s))
	}
	return fmt.Sprintf("%.1f nines", nines(s))
}

// between returns the operations that started in [from, to).
func between(ops []op, from, to time.Time) []op {
	var out []op
	for _, o := range ops {
		if !o.start.Before(from) && o.start.Before(to) {
			out = append(out, o)
		}
	}
	return out
}

// sleep waits d, or until the chapter is interrupted.
func (r *run) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// converged waits until every node of the group answers with the same
// store digest, and returns how long that took.
func (g *group) converged(timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	err := g.waitFor(timeout, func(ctx context.Context) (bool, string) {
		first := ""
		for i, n := range g.nodes {
			info, err := g.client(i).Info(ctx, "")
			if err != nil {
				return false, fmt.Sprintf("%s does not answer: %v", n.Name, err)
			}
			if i == 0 {
				first = info.Store.Digest
			} else if info.Store.Digest != first {
				return false, fmt.Sprintf("%s's store differs from %s's", n.Name, g.nodes[0].Name)
			}
		}
		return true, ""
	})
	return time.Since(t0), err
}
