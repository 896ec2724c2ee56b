package daemon

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"
)

func TestFaultsDropAndHeal(t *testing.T) {
	f := NewFaults(1)
	if drop, d := f.Outbound("b"); drop || d != 0 {
		t.Fatalf("no rules: Outbound = %v, %v; want send now", drop, d)
	}
	f.Add(Rule{ID: "x", Kind: FaultDrop, Peers: []string{"b"}})
	if drop, _ := f.Outbound("b"); !drop {
		t.Error("drop rule toward b: message to b was sent")
	}
	if drop, _ := f.Outbound("c"); drop {
		t.Error("drop rule toward b: message to c was dropped")
	}
	if n := f.Heal("x"); n != 1 {
		t.Errorf("Heal(x) = %d, want 1", n)
	}
	if drop, _ := f.Outbound("b"); drop {
		t.Error("after heal, message to b was dropped")
	}
}

func TestFaultsPauseAndExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	f := NewFaults(1)
	f.now = func() time.Time { return now }
	f.Add(Rule{ID: "p", Kind: FaultPause, Until: now.Add(time.Second)})
	if !f.Paused() {
		t.Fatal("pause rule: not paused")
	}
	if drop, _ := f.Outbound("anyone"); !drop {
		t.Error("paused node sent a message")
	}
	now = now.Add(time.Second)
	if f.Paused() || len(f.Rules()) != 0 {
		t.Error("pause did not expire at its Until")
	}
}

func TestFaultsLossRateAndReplay(t *testing.T) {
	run := func(seed uint64) []bool {
		f := NewFaults(seed)
		f.Add(Rule{ID: "l", Kind: FaultLoss, Rate: 0.2})
		out := make([]bool, 20000)
		for i := range out {
			out[i], _ = f.Outbound("b")
		}
		return out
	}
	a := run(42)
	lost := 0
	for _, d := range a {
		if d {
			lost++
		}
	}
	if rate := float64(lost) / float64(len(a)); math.Abs(rate-0.2) > 0.015 {
		t.Errorf("loss 0.2: observed rate %.3f", rate)
	}
	if !reflect.DeepEqual(a, run(42)) {
		t.Error("same seed gave different drops: not replayable")
	}
	if reflect.DeepEqual(a, run(43)) {
		t.Error("different seeds gave identical drops")
	}
}

func TestFaultsDelayDistribution(t *testing.T) {
	f := NewFaults(7)
	f.Add(Rule{ID: "d", Kind: FaultDelay, Delay: 100 * time.Millisecond, Jitter: 20 * time.Millisecond})
	var ds []time.Duration
	for i := 0; i < 10000; i++ {
		drop, d := f.Outbound("b")
		if drop {
			t.Fatal("delay rule dropped a message")
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	if ds[0] < 80*time.Millisecond || ds[len(ds)-1] > 120*time.Millisecond {
		t.Errorf("delay 100ms±20ms: range [%v, %v]", ds[0], ds[len(ds)-1])
	}
	if med := ds[len(ds)/2]; med < 98*time.Millisecond || med > 102*time.Millisecond {
		t.Errorf("delay 100ms±20ms: median %v", med)
	}
}

func TestPlanPartitionIsSymmetric(t *testing.T) {
	members := []string{"a", "b", "c", "d", "e"}
	plan, err := planFault(FaultRequest{Kind: ReqPartition, Groups: [][]string{{"a", "b"}, {"c", "d", "e"}}}, members, "id", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	side := map[string]int{"a": 0, "b": 0, "c": 1, "d": 1, "e": 1}
	for _, x := range members {
		f := NewFaults(1)
		f.Add(plan[x]...)
		for _, y := range members {
			if x == y {
				continue
			}
			drop, _ := f.Outbound(y)
			if want := side[x] != side[y]; drop != want {
				t.Errorf("partition a,b / c,d,e: %s -> %s dropped = %v, want %v", x, y, drop, want)
			}
		}
	}
	for _, bad := range []FaultRequest{
		{Kind: ReqPartition, Groups: [][]string{{"a"}}},
		{Kind: ReqPartition, Groups: [][]string{{"a", "b"}, {"b", "c"}}},
		{Kind: ReqPartition, Groups: [][]string{{"a"}, {"zz"}}},
		{Kind: ReqDelay, Nodes: []string{"a"}},
		{Kind: ReqLoss, Nodes: []string{"a"}, Rate: 2},
		{Kind: "explode", Nodes: []string{"a"}},
	} {
		if _, err := planFault(bad, members, "id", time.Now()); err == nil {
			t.Errorf("planFault(%+v) accepted a bad request", bad)
		}
	}
}

func TestPlanDelayIsBothWays(t *testing.T) {
	members := []string{"a", "b", "c"}
	plan, err := planFault(FaultRequest{Kind: ReqDelay, Nodes: []string{"a"}, Delay: 50 * time.Millisecond}, members, "id", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for x, rs := range plan {
		f := NewFaults(1)
		f.Add(rs...)
		for _, y := range members {
			if _, d := f.Outbound(y); d > 0 && x != y {
				got = append(got, x+">"+y)
			}
		}
	}
	sort.Strings(got)
	want := []string{"a>b", "a>c", "b>a", "c>a"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("delay a: delayed links %v, want %v", got, want)
	}
}

// A partition stops replication both ways; heal restores membership and
// anti-entropy converges the writes made on both sides.
func TestPartitionStopsReplicationAndHealRestores(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	c := NewClient(nodes[0].APIAddr())
	if _, err := c.InjectFault(ctx, FaultRequest{Kind: ReqPartition, Groups: [][]string{{"n1"}, {"n2", "n3"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Put("left", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[2].Put("right", []byte("2")); err != nil {
		t.Fatal(err)
	}
	// Same key on both sides: after heal every node keeps the write with
	// the greater version (hybrid clock, then node name), whichever side.
	w1, _ := nodes[0].Put("both", []byte("from n1"))
	w2, _ := nodes[1].Put("both", []byte("from n2"))
	last := w1
	if w2.Version.Compare(w1.Version) > 0 {
		last = w2
	}

	waitFor(t, 20*time.Second, "each side marks the other failed", func() error {
		for _, m := range nodes[0].Members() {
			if m.Name != "n1" && m.Status != "failed" {
				return fmt.Errorf("n1 sees %s %s", m.Name, m.Status)
			}
		}
		for _, m := range nodes[1].Members() {
			if m.Name == "n1" && m.Status != "failed" {
				return fmt.Errorf("n2 sees n1 %s", m.Status)
			}
		}
		return nil
	})
	if _, err := nodes[1].Store().Get("left"); err == nil {
		t.Error("write at n1 crossed the partition to n2")
	}
	if _, err := nodes[0].Store().Get("right"); err == nil {
		t.Error("write at n3 crossed the partition to n1")
	}

	start := time.Now()
	if _, err := c.Heal(ctx, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "healed cluster converged", func() error {
		if err := allAlive(nodes, 3); err != nil {
			return err
		}
		return converged(nodes)
	})
	t.Logf("alive and converged %v after heal", time.Since(start))
	for _, nd := range nodes {
		e, err := nd.Store().Get("both")
		if err != nil || e.Version != last.Version {
			t.Errorf("%s: both = %v (%v), want the greater version %v", nd.Name(), e.Version, err, last.Version)
		}
	}
}

func TestFaultsCutOff(t *testing.T) {
	f := NewFaults(1)
	f.Add(Rule{ID: "p", Kind: FaultDrop, Peers: []string{"b"}})
	if f.CutOff() {
		t.Error("a cut toward one peer cut the node off from all")
	}
	f.Add(Rule{ID: "i", Kind: FaultDrop})
	if !f.CutOff() {
		t.Error("isolated node (drop to all) not cut off")
	}
	f.Heal("i")
	f.Add(Rule{ID: "z", Kind: FaultPause})
	if !f.CutOff() {
		t.Error("paused node not cut off")
	}
}
