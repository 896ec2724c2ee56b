package demo

// Chapter consistency: partition 2 / 3, write one key on both sides of
// the gossip store, heal, and see last-writer-wins drop an acknowledged
// write; then the consistent namespace (Raft) under the same partition.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/figures"
	"github.com/peerctl/peerctl/store"
)

const healTimeout = 45 * time.Second // both sides agree again after a heal

func consistency(r *run) error {
	count := 50 // writes timed for the price
	if r.o.Quick {
		count = 15
	}
	r.say("demo consistency: what happens to writes when the network splits?")
	r.say("Five nodes hold two stores side by side: the gossip store, where any node accepts")
	r.say("a write at once and tells the others later, and the consistent namespace, where a")
	r.say("write counts only once a majority of the voters (Raft) has it.")

	g, err := r.newGroup("cluster", 5)
	if err != nil {
		return err
	}
	minority, majority := []int{0, 1}, []int{2, 3, 4}
	var red, blue *api.WriteResult // the gossip writes at node1 and node4
	var cBlue *api.WriteResult     // the consistent write acknowledged by the majority
	return r.steps(
		step{"Start 5 nodes; they elect a Raft leader", func() error {
			took, err := g.form()
			if err != nil {
				return err
			}
			leader, term, err := g.waitLeader(g.all(), leaderTimeout, "")
			if err != nil {
				return err
			}
			r.note("ok: alive to each other after %s; %s leads (term %d).", fmtDur(took), leader, term)
			return nil
		}},
		step{"The price, measured now: write latency through node1", func() error {
			r.note("%d writes of each kind, one after another:", count)
			_, _, err := r.price(g, 0, count)
			return err
		}},
		step{"Partition {node1, node2} / {node3, node4, node5}", func() error {
			if err := g.partition(0, minority, majority); err != nil {
				return err
			}
			r.note("Every message between the sides is now dropped, gossip and Raft alike.")
			return nil
		}},
		step{"Both sides write the same gossip key at the same moment", func() error {
			var wg sync.WaitGroup
			var errR, errB error
			wg.Add(2)
			go func() { defer wg.Done(); red, errR = g.client(0).Put(r.ctx, "", "color", []byte("red")) }()
			go func() { defer wg.Done(); blue, errB = g.client(3).Put(r.ctx, "", "color", []byte("blue")) }()
			wg.Wait()
			if errR != nil || errB != nil {
				return fmt.Errorf("gossip writes: node1: %v; node4: %v", errR, errB)
			}
			r.note("node1 acknowledged color=red  as version %s", red.Version)
			r.note("node4 acknowledged color=blue as version %s", blue.Version)
			for _, c := range []struct {
				i    int
				want *api.WriteResult
			}{{1, red}, {4, blue}} {
				if err := g.holds(c.i, "color", c.want.Version, 10*time.Second); err != nil {
					return err
				}
			}
			r.note("ok: both clients were told \"done\"; node2 reads red, node5 reads blue.")
			return nil
		}},
		step{"Both sides write the same consistent key", func() error {
			took, err := g.refused(0, "color", "red")
			if err != nil {
				return err
			}
			r.note("ok: node1 refused color=red with \"no quorum\" after %s: it reaches 2 of 5", fmtDur(took))
			r.note("voters, and a write needs 3. Its client was told the write failed.")
			r.figure("minority: consistent write refused after", ms(took), "ms")
			var waited time.Duration
			cBlue, waited, err = g.acked(3, "color", "blue", leaderTimeout)
			if err != nil {
				return err
			}
			r.note("ok: node4 acknowledged color=blue at Raft index %s after %s (the majority", cBlue.Version, fmtDur(waited))
			r.note("side elects a leader of its own first if the old one was cut off).")
			r.figure("majority: consistent write acknowledged after", ms(waited), "ms")
			return nil
		}},
		step{"Heal; the sides exchange what they missed", func() error {
			if err := g.heal(0); err != nil {
				return err
			}
			t0 := time.Now()
			var survivor string
			err := g.waitFor(healTimeout, func(ctx context.Context) (bool, string) {
				rows, err := g.client(0).GetAll(ctx, "color")
				if err != nil {
					return false, err.Error()
				}
				survivor = ""
				for _, row := range rows {
					if row.KV == nil {
						return false, fmt.Sprintf("%s: %s", row.Node, row.Error)
					}
					if survivor != "" && row.KV.Version != survivor {
						return false, fmt.Sprintf("%s holds %s, another %s", row.Node, row.KV.Version, survivor)
					}
					survivor = row.KV.Version
				}
				return len(rows) == len(g.nodes), fmt.Sprintf("%d of %d nodes answered", len(rows), len(g.nodes))
			})
			if err != nil {
				return err
			}
			r.note("ok: all 5 nodes hold the same color %s after the heal.", fmtDur(time.Since(t0)))
			r.figure("gossip: both sides agree again after", ms(time.Since(t0)), "ms")
			won, lost, wonV := "red", "blue", red
			if vOf(blue).Compare(vOf(red)) > 0 {
				won, lost, wonV = "blue", "red", blue
			}
			if survivor != wonV.Version {
				return fmt.Errorf("every node holds version %s; last-writer-wins should keep %s", survivor, wonV.Version)
			}
			r.table([][]string{
				{"WRITE", "AT", "HYBRID LOGICAL CLOCK", "ACKNOWLEDGED", "AFTER THE HEAL"},
				{"color=red", red.Origin, store.Timestamp(red.TS).String(), "yes", map[bool]string{true: "kept", false: "gone"}[won == "red"]},
				{"color=blue", blue.Origin, store.Timestamp(blue.TS).String(), "yes", map[bool]string{true: "kept", false: "gone"}[won == "blue"]},
			})
			why := "its clock reading is later"
			if red.TS == blue.TS {
				why = "the clocks tie, and its node's name sorts later"
			}
			r.note("%s survived because %s: every node compares", won, why)
			r.note("versions the same way (hybrid logical clock, then node name) and keeps the")
			r.note("greater, so all agree without asking each other. The client that wrote %s was told \"done\" and its", lost)
			r.note("write is gone from every node: last-writer-wins loses acknowledged writes.")
			r.figure("gossip: acknowledged writes lost", 1, "")
			return nil
		}},
		step{"The consistent key after the heal", func() error {
			for i := range g.nodes {
				kv, err := g.slowClient(i).ConsistentGet(r.ctx, "", "color")
				if err != nil {
					return fmt.Errorf("consistent read at %s: %w", g.nodes[i].Name, err)
				}
				if string(kv.Value) != "blue" || kv.Version != cBlue.Version {
					return fmt.Errorf("consistent read at %s: %q at index %s; acknowledged was blue at %s", g.nodes[i].Name, kv.Value, kv.Version, cBlue.Version)
				}
			}
			r.note("ok: every node reads color=blue at index %s: the acknowledged write, and only", cBlue.Version)
			r.note("it. The minority refused instead of accepting a write it could not keep.")
			r.figure("consistent: acknowledged writes lost", 0, "")
			r.keepNote = append(r.keepNote, fmt.Sprintf("peerctl --addr %s get --all color    # the survivor, at every node", g.nodes[0].API),
				fmt.Sprintf("peerctl --addr %s get --consistent color    # the acknowledged write", g.nodes[0].API))
			r.note("The price: every consistent write waits for a majority (%s against %s p50", figures.Format(r.get("consistent write p50"), "ms"), figures.Format(r.get("gossip write p50"), "ms"))
			r.note("above), and a node cut off from the majority cannot write at all. The gossip store")
			r.note("stays writable everywhere and pays in lost writes instead (CAP: in a partition,")
			r.note("choose availability or consistency).")
			return nil
		}},
	)
}

func vOf(w *api.WriteResult) store.Version {
	return store.Version{TS: store.Timestamp(w.TS), Node: w.Origin}
}

// get returns a recorded figure's value, or 0.
func (r *run) get(name string) float64 {
	for _, f := range r.figures {
		if f.Name == name {
			return f.Value
		}
	}
	return 0
}

// holds waits until node i holds key at version in the gossip store.
func (g *group) holds(i int, key, version string, timeout time.Duration) error {
	return g.waitFor(timeout, func(ctx context.Context) (bool, string) {
		kv, err := g.client(i).Get(ctx, "", key)
		if err != nil {
			return false, fmt.Sprintf("get %s at %s: %v", key, g.nodes[i].Name, err)
		}
		if kv.Version != version {
			return false, fmt.Sprintf("%s holds %s at %s", g.nodes[i].Name, key, kv.Version)
		}
		return true, ""
	})
}
