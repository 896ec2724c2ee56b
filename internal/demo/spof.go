package demo

// Chapter spof: a cluster whose nodes know only one seed address, as
// services that find each other through one DNS name; stop the seed. Then
// the same with peerctl's saved membership (daemon/known.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files in a node's data dir that remember the members it has seen:
// peerctl's own list (daemon/known.go) and serf's snapshot.
const (
	knownFile    = "known-members.json"
	snapshotFile = "serf.snapshot"
)

func spof(r *run) error {
	lost := 6 * time.Second // how long the lost nodes are watched
	if r.o.Quick {
		lost = 3 * time.Second
	}
	r.say("demo spof: a distributed system still falls to a central dependency.")
	r.say("Four nodes start knowing one address: the seed's, node1. Think of it as a DNS")
	r.say("name every service resolves to find the others. Then the seed goes away.")

	// Half 1: the seed is all anyone knows.
	a, err := r.newGroup("seed-only", 5)
	if err != nil {
		return err
	}
	seed := []string{a.nodes[0].Gossip}
	var aJoins, aNewJoins int
	err = r.steps(
		step{"Start node1 (the seed) and node2..node4, each told only the seed's address", func() error {
			took, err := a.formFirst(4)
			if err != nil {
				return err
			}
			r.note("ok: the 4 nodes see each other alive after %s. Gossip told each node about", fmtDur(took))
			r.note("the others, but we make them keep nothing: before a node restarts we delete")
			r.note("its saved membership (%s, %s), so the seed's address", knownFile, snapshotFile)
			r.note("is all it knows, as for a service that only knows a DNS name.")
			return nil
		}},
		step{"The seed dies (kill -9 node1)", func() error {
			return a.kill(0)
		}},
		step{"Restart node3 and start a new node5, both pointed at the seed", func() error {
			if err := a.stop(2); err != nil {
				return err
			}
			for _, f := range []string{knownFile, snapshotFile} {
				if err := os.Remove(filepath.Join(a.nodes[2].DataDir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			if err := a.restart(2); err != nil {
				return err
			}
			if err := a.startNew(4, seed); err != nil {
				return err
			}
			r.note("node3 was stopped gracefully, so the others forgot it: they retry failed")
			r.note("members every few seconds, and would have found a crashed node3 back at its")
			r.note("old address. Watching both for %s: each retries the seed, with a growing pause.", fmtDur(lost))
			if err := a.staysAlone(lost, 2, 4); err != nil {
				return err
			}
			aJoins, aNewJoins = joinFailures(a.logPath("node3")), joinFailures(a.logPath("node5"))
			r.note("ok: neither found the cluster: node3 failed to join %d times, node5 %d times,", aJoins, aNewJoins)
			r.note("while node2 and node4 were alive all along, a few ports away.")
			r.figure("seed-only: restarted node3 failed joins", float64(aJoins), "")
			r.figure("seed-only: new node5 failed joins", float64(aNewJoins), "")
			r.figure("seed-only: time watched, neither joined", ms(lost), "ms")
			return nil
		}},
	)
	if err != nil {
		return err
	}
	a.close()

	// Half 2: every node saves every member it has seen.
	b, err := r.newGroup("saved", 5)
	if err != nil {
		return err
	}
	r.say("")
	r.say("Now the same with peerctl as it is: every node saves the members it has seen in")
	r.say("%s in its data dir (and serf its own %s) and tries them all", knownFile, snapshotFile)
	r.say("when it starts; any member can introduce a newcomer.")
	err = r.steps(
		step{"Start node1 (the seed) and node2..node4 again, each told only the seed's address", func() error {
			took, err := b.formFirst(4)
			if err != nil {
				return err
			}
			r.note("ok: alive to each other after %s.", fmtDur(took))
			return b.waitFor(formTimeout, func(ctx context.Context) (bool, string) {
				for _, i := range []int{1, 2, 3} {
					names, err := knownNames(b.nodes[i].DataDir)
					if err != nil {
						return false, err.Error()
					}
					if len(names) < 3 {
						return false, fmt.Sprintf("%s's %s lists %s", b.nodes[i].Name, knownFile, strings.Join(names, ", "))
					}
				}
				return true, ""
			})
		}},
		step{"The seed dies (kill -9 node1)", func() error {
			return b.kill(0)
		}},
		step{"Restart node3: its command line still names only the seed", func() error {
			if err := b.stop(2); err != nil {
				return err
			}
			t0 := time.Now()
			if err := b.restart(2); err != nil {
				return err
			}
			if err := b.waitAlive([]int{1, 2, 3}, b.names(1, 2, 3), formTimeout); err != nil {
				return err
			}
			took := time.Since(t0)
			r.note("ok: node3 is back in the cluster %s after it started: it joined through", fmtDur(took))
			r.note("node2 and node4 from its saved list.")
			r.figure("saved membership: restarted node3 rejoined after", ms(took), "ms")
			return nil
		}},
		step{"A new node5 joins through any member", func() error {
			names, addrs, err := readKnown(b.nodes[1].DataDir)
			if err != nil {
				return err
			}
			r.note("node5 is given every address in node2's %s (%s),", knownFile, strings.Join(names, ", "))
			r.note("the dead seed's among them: `peerctl members` at any node lists the same.")
			t0 := time.Now()
			if err := b.startNew(4, addrs); err != nil {
				return err
			}
			if err := b.waitAlive([]int{1, 2, 3, 4}, b.names(1, 2, 3, 4), formTimeout); err != nil {
				return err
			}
			took := time.Since(t0)
			r.note("ok: node5 is alive to all %s after it started.", fmtDur(took))
			r.figure("saved membership: new node5 joined after", ms(took), "ms")
			return nil
		}},
		step{"Why it matters", func() error {
			r.note("On 4 October 2021 a maintenance command cut Facebook's backbone; its DNS")
			r.note("servers, unable to reach the data centres, withdrew their routes from the")
			r.note("Internet, and for about six hours nothing, their own engineers' tools included,")
			r.note("could find the replicated services behind them. Replicas do not help when every")
			r.note("path to them goes through one name: remembering many peers, as above, does.")
			return nil
		}},
	)
	return err
}

// formFirst starts nodes 1..k, nodes 2..k joining node1, and waits until
// they all see each other alive.
func (g *group) formFirst(k int) (time.Duration, error) {
	t0 := time.Now()
	idx := make([]int, k)
	for i := range k {
		idx[i] = i
		var join []string
		if i > 0 {
			join = []string{g.nodes[0].Gossip}
		}
		if err := g.startNew(i, join); err != nil {
			return 0, err
		}
	}
	if err := g.waitAlive(idx, g.names(idx...), formTimeout); err != nil {
		return 0, fmt.Errorf("the %d nodes did not all see each other alive: %w", k, err)
	}
	return time.Since(t0), nil
}

// staysAlone checks, for d, that the nodes at idx see no other member
// alive and that no other node sees them alive.
func (g *group) staysAlone(d time.Duration, idx ...int) error {
	lone := map[string]bool{}
	for _, i := range idx {
		lone[g.nodes[i].Name] = true
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for i, n := range g.nodes {
			ch := g.proc(i)
			if ch == nil || ch.Exited() {
				continue
			}
			ms, err := g.client(i).Members(g.r.ctx, "")
			if err != nil {
				if g.r.ctx.Err() != nil {
					return g.r.ctx.Err()
				}
				continue // starting: not serving yet
			}
			for _, m := range ms {
				if m.Name == n.Name || m.Status != "alive" {
					continue
				}
				if lone[n.Name] || lone[m.Name] {
					return fmt.Errorf("%s sees %s alive: a lost node found the cluster", n.Name, m.Name)
				}
			}
		}
		if err := g.exited(); err != nil {
			return err
		}
		if err := g.r.sleep(200 * time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// joinFailures counts the failed join attempts in a node's log.
func joinFailures(log string) int {
	b, err := os.ReadFile(log)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "join failed")
}

// readKnown reads a node's known-members file: the members' names and
// gossip addresses.
func readKnown(dataDir string) (names, addrs []string, err error) {
	b, err := os.ReadFile(filepath.Join(dataDir, knownFile))
	if err != nil {
		return nil, nil, fmt.Errorf("saved membership: %w", err)
	}
	var doc struct {
		Members []struct {
			Name string `json:"name"`
			Addr string `json:"addr"`
		} `json:"members"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("saved membership %s: %w", filepath.Join(dataDir, knownFile), err)
	}
	for _, m := range doc.Members {
		names, addrs = append(names, m.Name), append(addrs, m.Addr)
	}
	return names, addrs, nil
}

// knownNames is readKnown's names; none if the file is not written yet.
func knownNames(dataDir string) ([]string, error) {
	names, _, err := readKnown(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return names, err
}
