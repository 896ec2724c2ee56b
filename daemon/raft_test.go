package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

// groupLeader returns the leader every node in nodes agrees on, or an error.
func groupLeader(nodes []*testNode) (string, error) {
	leader := ""
	for _, n := range nodes {
		l := n.coord.leaderName()
		if l == "" {
			return "", fmt.Errorf("%s knows no leader", n.Name())
		}
		if leader != "" && l != leader {
			return "", fmt.Errorf("%s says %s leads, another says %s", n.Name(), l, leader)
		}
		leader = l
	}
	return leader, nil
}

func waitLeader(tb testing.TB, nodes []*testNode) string {
	tb.Helper()
	var leader string
	waitFor(tb, 30*time.Second, "one leader all nodes agree on", func() (err error) {
		leader, err = groupLeader(nodes)
		return err
	})
	return leader
}

func clientOf(n *testNode) *api.Client { return api.NewClient(n.APIAddr()) }

// The raft group forms from serf membership (bootstrap-expect 3) and
// serves the consistent namespace and locks from any node: followers
// forward to the leader. Then the leader dies and the others elect a new
// one, which serves the writes.
func TestRaftGroup(t *testing.T) {
	nodes := startCluster(t, 3)
	leader := waitLeader(t, nodes)
	var follower, other *testNode
	for _, n := range nodes {
		if n.Name() != leader {
			if follower == nil {
				follower = n
			} else {
				other = n
			}
		}
	}
	ctx := context.Background()
	fc, oc := clientOf(follower), clientOf(other)

	t.Run("kv", func(t *testing.T) {
		w, err := fc.ConsistentPut(ctx, "", "cfg/a", []byte("one"), api.PutOptions{})
		if err != nil {
			t.Fatalf("ConsistentPut via follower = %v", err)
		}
		// Linearizable: a read through another node right after the
		// acknowledgement sees the write.
		kv, err := oc.ConsistentGet(ctx, "", "cfg/a")
		if err != nil || string(kv.Value) != "one" || kv.Version != w.Version {
			t.Fatalf("ConsistentGet = %+v, %v; want one at version %s", kv, err, w.Version)
		}
		// The gossip store does not see consistent keys.
		if _, err := oc.Get(ctx, "", "cfg/a"); !errors.Is(err, api.ErrKeyNotFound) {
			t.Errorf("gossip Get of a consistent key = %v; want ErrKeyNotFound", err)
		}
		stale := uint64(1)
		if _, err := oc.ConsistentPut(ctx, "", "cfg/a", []byte("two"), api.PutOptions{IfVersion: &stale}); !errors.Is(err, api.ErrVersionMismatch) {
			t.Fatalf("CAS with a stale version = %v; want ErrVersionMismatch", err)
		}
		if _, err := oc.ConsistentPut(ctx, "", "cfg/a", []byte("two"), api.PutOptions{IfAbsent: true}); !errors.Is(err, api.ErrVersionMismatch) {
			t.Fatalf("if-absent on a present key = %v; want ErrVersionMismatch", err)
		}
		var cur uint64
		fmt.Sscan(w.Version, &cur)
		w2, err := oc.ConsistentPut(ctx, "", "cfg/a", []byte("two"), api.PutOptions{IfVersion: &cur})
		if err != nil {
			t.Fatalf("CAS with the current version = %v", err)
		}
		if w2.Version <= w.Version && len(w2.Version) <= len(w.Version) {
			t.Errorf("version after CAS %s, before %s: want it to grow", w2.Version, w.Version)
		}
		if _, err := fc.ConsistentPut(ctx, "", "cfg/b", []byte("x"), api.PutOptions{IfAbsent: true}); err != nil {
			t.Fatalf("if-absent on an absent key = %v", err)
		}
		keys, err := fc.ConsistentList(ctx, "", "cfg/")
		if err != nil || len(keys) != 2 || keys[0].Key != "cfg/a" || keys[1].Key != "cfg/b" {
			t.Fatalf("ConsistentList = %+v, %v; want cfg/a, cfg/b", keys, err)
		}
		if res, err := fc.ConsistentDelete(ctx, "", "cfg/b", nil); err != nil || !res.Existed {
			t.Fatalf("ConsistentDelete = %+v, %v", res, err)
		}
		if _, err := oc.ConsistentGet(ctx, "", "cfg/b"); !errors.Is(err, api.ErrKeyNotFound) {
			t.Fatalf("get after delete = %v; want ErrKeyNotFound", err)
		}
	})

	t.Run("leader", func(t *testing.T) {
		l, err := oc.Leader(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if l.Leader != leader || len(l.Servers) != 3 || l.Term == 0 {
			t.Fatalf("Leader = %+v; want %s leading 3 servers", l, leader)
		}
		roles := map[string]int{}
		for _, s := range l.Servers {
			roles[s.Role]++
		}
		if roles[api.RoleLeader] != 1 || roles[api.RoleVoter] != 2 {
			t.Errorf("roles %v; want 1 leader, 2 voters", roles)
		}
	})

	t.Run("lock", func(t *testing.T) {
		g1, err := fc.Lock(ctx, "", "job", 500*time.Millisecond, 0)
		if err != nil {
			t.Fatalf("Lock = %v", err)
		}
		if _, err := oc.Lock(ctx, "", "job", time.Second, 0); !errors.Is(err, api.ErrLockHeld) {
			t.Fatalf("second Lock without wait = %v; want ErrLockHeld", err)
		}
		if _, err := fc.RenewLock(ctx, "", "job", g1.Session); err != nil {
			t.Fatalf("RenewLock = %v", err)
		}
		// The holder stops renewing (as if killed): the lock expires
		// through the log and the waiter gets it with a larger fence.
		g2, err := oc.Lock(ctx, "", "job", time.Second, 20*time.Second)
		if err != nil {
			t.Fatalf("Lock after the holder stopped renewing = %v", err)
		}
		if g2.Fence <= g1.Fence {
			t.Errorf("fence %d after %d: want strictly increasing", g2.Fence, g1.Fence)
		}
		if _, err := fc.RenewLock(ctx, "", "job", g1.Session); !errors.Is(err, api.ErrLockLost) {
			t.Errorf("renew of the expired session = %v; want ErrLockLost", err)
		}
		if err := oc.Unlock(ctx, "", "job", g2.Session); err != nil {
			t.Fatalf("Unlock = %v", err)
		}
		g3, err := fc.Lock(ctx, "", "job", time.Second, 0)
		if err != nil || g3.Fence <= g2.Fence {
			t.Fatalf("Lock after Unlock = %+v, %v; want a fence above %d", g3, err, g2.Fence)
		}
	})

	t.Run("minority refuses", func(t *testing.T) {
		// Cut one follower off: consistent operations through it fail
		// with no quorum within the budget, gossip writes still work.
		if _, err := fc.InjectFault(ctx, FaultRequest{Kind: ReqPartition, Groups: [][]string{{follower.Name()}, {leader, other.Name()}}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := fc.ConsistentPut(ctx, "", "cfg/minority", []byte("x"), api.PutOptions{})
		if !errors.Is(err, api.ErrNoQuorum) || !strings.Contains(err.Error(), "quorum") || !strings.Contains(err.Error(), "reaches 1 of 3 voters") {
			t.Fatalf("consistent put on the minority side = %v; want no quorum, reaches 1 of 3 voters", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("refusal took %v", d)
		}
		if _, err := fc.Put(ctx, "", "gossip/minority", []byte("x")); err != nil {
			t.Errorf("gossip put on the minority side = %v; want it accepted", err)
		}
		if _, err := oc.ConsistentPut(ctx, "", "cfg/majority", []byte("y"), api.PutOptions{}); err != nil {
			t.Errorf("consistent put on the majority side = %v", err)
		}
		if _, err := fc.Heal(ctx, ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the healed follower serves consistent reads", func() error {
			_, err := fc.ConsistentGet(ctx, "", "cfg/majority")
			return err
		})
	})

	t.Run("failover", func(t *testing.T) {
		var dead *testNode
		var rest []*testNode
		for _, n := range nodes {
			if n.Name() == waitLeader(t, nodes) && dead == nil {
				dead = n
			} else {
				rest = append(rest, n)
			}
		}
		sub, err := rest[0].events.subscribe(kindBits[api.EventLeader])
		if err != nil {
			t.Fatal(err)
		}
		defer rest[0].events.unsubscribe(sub)
		killed := time.Now()
		dead.Shutdown()
		var newLeader string
		waitFor(t, 30*time.Second, "a new leader", func() (err error) {
			newLeader, err = groupLeader(rest)
			if err == nil && newLeader == dead.Name() {
				err = fmt.Errorf("still following the dead leader")
			}
			return err
		})
		elected := time.Since(killed)
		// The survivors report the new leader as a leader event.
		waitFor(t, 10*time.Second, "a leader event naming "+newLeader, func() error {
			for {
				select {
				case b := <-sub.ch:
					var ev api.Event
					if json.Unmarshal(b, &ev) == nil && ev.Kind == api.EventLeader && ev.Leader == newLeader && ev.Term > 0 {
						return nil
					}
				default:
					return fmt.Errorf("none yet")
				}
			}
		})
		waitFor(t, 30*time.Second, "a consistent write after failover", func() error {
			_, err := clientOf(rest[0]).ConsistentPut(ctx, "", "cfg/after", []byte("z"), api.PutOptions{})
			return err
		})
		t.Logf("leader %s killed: %s elected after %v, first write acknowledged after %v", dead.Name(), newLeader, elected, time.Since(killed))
		kv, err := clientOf(rest[1]).ConsistentGet(ctx, "", "cfg/a")
		if err != nil || string(kv.Value) != "two" {
			t.Fatalf("acknowledged write after failover = %+v, %v; want two", kv, err)
		}
	})
}

// A member started with BootstrapExpect 0 runs no raft server: the group
// forms without it and never adds it, and a consistent operation through
// it fails as no quorum, saying why.
func TestRaftOffMember(t *testing.T) {
	var nodes []*testNode
	for i := 0; i < 4; i++ {
		var join []string
		if i > 0 {
			join = []string{nodes[0].GossipAddr()}
		}
		cfg := testConfig(t, fmt.Sprintf("n%d", i+1), t.TempDir(), join...)
		if i == 0 {
			cfg.BootstrapExpect = 0 // the lowest name: it must not block the bootstrap
		}
		nodes = append(nodes, startNode(t, cfg))
	}
	leader := waitLeader(t, nodes[1:])
	ctx := context.Background()
	if _, err := clientOf(nodes[1]).ConsistentPut(ctx, "", "k", []byte("v"), api.PutOptions{}); err != nil {
		t.Fatalf("ConsistentPut = %v", err)
	}
	_, err := clientOf(nodes[0]).ConsistentGet(ctx, "", "k")
	if !errors.Is(err, api.ErrNoQuorum) || !strings.Contains(err.Error(), "raft is off") {
		t.Fatalf("ConsistentGet through the member without raft = %v; want no quorum, raft is off", err)
	}
	// Let the leader's autopilot run twice more: it must not add it.
	var lead *testNode
	for _, n := range nodes[1:] {
		if n.Name() == leader {
			lead = n
		}
	}
	r0 := lead.coord.rounds.Load()
	waitFor(t, 20*time.Second, "two autopilot rounds", func() error {
		if lead.coord.rounds.Load() < r0+2 {
			return fmt.Errorf("%d rounds", lead.coord.rounds.Load()-r0)
		}
		return nil
	})
	l := nodes[1].coord.leaderInfo(ctx)
	for _, s := range l.Servers {
		if s.Name == nodes[0].Name() {
			t.Fatalf("the member without raft is in the configuration: %+v", l.Servers)
		}
	}
	if len(l.Servers) != 3 {
		t.Fatalf("configuration %+v; want the 3 raft members", l.Servers)
	}
}

// A follower that lost its state catches up by InstallSnapshot over the
// transport: the leader's log no longer holds its first entries (raft-wal
// drops whole segments only, so the agents keep raft in memory here, where
// compaction really deletes).
func TestRaftSnapshotInstall(t *testing.T) {
	var nodes []*testNode
	for i := 0; i < 3; i++ {
		var join []string
		if i > 0 {
			join = []string{nodes[0].GossipAddr()}
		}
		cfg := testConfig(t, fmt.Sprintf("n%d", i+1), "", join...)
		cfg.InMemory = true
		nodes = append(nodes, startNode(t, cfg))
	}
	leader := waitLeader(t, nodes)
	var lead, gone *testNode
	for _, n := range nodes {
		if n.Name() == leader {
			lead = n
		} else {
			gone = n
		}
	}
	gone.Shutdown()
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, err := clientOf(lead).ConsistentPut(ctx, "", fmt.Sprintf("snap/%02d", i), []byte("v"), api.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Keep one entry of log after a snapshot: only a snapshot can bring
	// an empty follower up to date.
	rc := lead.coord.r.ReloadableConfig()
	rc.TrailingLogs = 1
	if err := lead.coord.r.ReloadConfig(rc); err != nil {
		t.Fatal(err)
	}
	if err := lead.coord.r.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	cfg := testConfig(t, gone.Name(), "", lead.GossipAddr())
	cfg.InMemory = true
	cfg.Bind, cfg.API = gone.GossipAddr(), gone.APIAddr() // the same node, restarted
	back := startNode(t, cfg)
	waitFor(t, 30*time.Second, "the emptied follower holds the last write", func() error {
		if e, ok := back.coord.fsm.get("snap/19"); !ok || string(e.Value) != "v" {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}
