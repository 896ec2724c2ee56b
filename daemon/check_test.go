package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestCheckFindsDivergentKeys(t *testing.T) {
	var nodes []*testNode
	for i, name := range []string{"n1", "n2", "n3"} {
		var join []string
		if i > 0 {
			join = []string{nodes[0].GossipAddr()}
		}
		cfg := testConfig(t, name, t.TempDir(), join...)
		cfg.SyncInterval = time.Hour // no anti-entropy but on joins
		nodes = append(nodes, startNode(t, cfg))
	}
	waitFor(t, 15*time.Second, "cluster", func() error { return allAlive(nodes, 3) })
	ctx := context.Background()
	c := NewClient(nodes[0].APIAddr())
	if _, err := c.Put(ctx, "", "everywhere", []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "converged", func() error { return converged(nodes) })
	res, err := c.Check(ctx)
	if err != nil || !res.Converged || len(res.Nodes) != 3 {
		t.Fatalf("Check = %+v, %v; want converged over 3 nodes", res, err)
	}

	// A write straight into n2's store, never replicated.
	e, err := nodes[1].Store().Put("only-n2", []byte("y"))
	if err != nil {
		t.Fatal(err)
	}
	res, err = c.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Converged || res.Divergent != 1 || len(res.Sample) != 1 {
		t.Fatalf("Check = %+v; want 1 divergent key", res)
	}
	dv := res.Sample[0]
	if dv.Key != "only-n2" || dv.Versions["n2"] != e.Version.String() || dv.Versions["n1"] != "" || dv.Versions["n3"] != "" {
		t.Errorf("divergence = %+v; want only-n2 held by n2 at %v only", dv, e.Version)
	}
}

// A node that sees only itself must not report "converged": check compares
// every member that its saved membership and the nodes it can ask know of.
// The node is emulated by a fresh n1 whose known-members file lists n2 and
// n3 with their real API addresses but gossip addresses nobody listens on,
// so it cannot join them (as behind a partition).
func TestCheckThroughNodeThatSeesOnlyItself(t *testing.T) {
	n2 := startNode(t, testConfig(t, "n2", t.TempDir()))
	n3 := startNode(t, testConfig(t, "n3", t.TempDir(), n2.GossipAddr()))
	waitFor(t, 15*time.Second, "n2, n3 alive", func() error { return allAlive([]*testNode{n2, n3}, 2) })

	dir := t.TempDir()
	dead := func() string { // a loopback port nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	now := time.Now()
	if err := writeKnown(dir, []knownMember{
		{Name: "n2", Addr: dead(), API: n2.APIAddr(), Seen: now},
		{Name: "n3", Addr: dead(), API: n3.APIAddr(), Seen: now},
	}); err != nil {
		t.Fatal(err)
	}
	n1 := startNode(t, testConfig(t, "n1", dir))
	if ms := n1.Members(); len(ms) != 1 {
		t.Fatalf("n1 members = %v; want only itself", ms)
	}
	ctx := context.Background()
	res, err := NewClient(n1.APIAddr()).Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := "n2, n3 unreachable from n1: partitioned?"
	if res.Converged || !slices.Contains(res.Reasons, want) {
		t.Fatalf("Check through n1 = %+v; want not converged because %q", res, want)
	}
	if res.Skipped["n2"] == "" || res.Skipped["n3"] == "" {
		t.Errorf("Skipped = %v; want n2 and n3", res.Skipped)
	}

	// Through n2, which sees n3: converged (n1 never joined anyone).
	res, err = NewClient(n2.APIAddr()).Check(ctx)
	if err != nil || !res.Converged || len(res.Nodes) != 2 {
		t.Fatalf("Check through n2 = %+v, %v; want converged over n2, n3", res, err)
	}

	// n3 killed: through n2 the answer names it failed, until it returns.
	n3.kill()
	waitFor(t, 15*time.Second, "n2 sees n3 failed", func() error {
		for _, m := range n2.Members() {
			if m.Name == "n3" && m.Status != "failed" {
				return fmt.Errorf("n3 is %s", m.Status)
			}
		}
		return nil
	})
	res, err = NewClient(n2.APIAddr()).Check(ctx)
	if err != nil || res.Converged || !slices.Contains(res.Reasons, "n3 failed") {
		t.Fatalf("Check through n2 = %+v, %v; want not converged: n3 failed", res, err)
	}
}

// /v1/info and /v1/check print the same digest for the same node.
func TestInfoAndCheckPrintTheSameDigest(t *testing.T) {
	n := startNode(t, testConfig(t, "n1", t.TempDir()))
	if _, err := n.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	c := NewClient(n.APIAddr())
	info, err := c.Info(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Store.Digest == "" || res.Digests["n1"] != info.Store.Digest {
		t.Errorf("check digest %q, info digest %q; want equal", res.Digests["n1"], info.Store.Digest)
	}
}

// A member that left does not count, and leaves the known-members file.
func TestCheckIgnoresMembersThatLeft(t *testing.T) {
	d1 := t.TempDir()
	n1 := startNode(t, testConfig(t, "n1", d1))
	n2 := startNode(t, testConfig(t, "n2", t.TempDir(), n1.GossipAddr()))
	n3 := startNode(t, testConfig(t, "n3", t.TempDir(), n1.GossipAddr()))
	waitFor(t, 15*time.Second, "cluster", func() error { return allAlive([]*testNode{n1, n2, n3}, 3) })
	waitFor(t, 10*time.Second, "n1's file lists n2 and n3", func() error {
		ms, err := readKnown(d1)
		if err != nil || len(ms) != 2 {
			return fmt.Errorf("file lists %+v, %v", ms, err)
		}
		return nil
	})
	if err := n3.Leave(); err != nil {
		t.Fatal(err)
	}
	n3.Shutdown()
	waitFor(t, 10*time.Second, "n3 left, n1's file lists only n2", func() error {
		ms, err := readKnown(d1)
		if err != nil || len(ms) != 1 || ms[0].Name != "n2" {
			return fmt.Errorf("file lists %+v, %v", ms, err)
		}
		return nil
	})
	res, err := NewClient(n1.APIAddr()).Check(context.Background())
	if err != nil || !res.Converged || !slices.Equal(res.Nodes, []string{"n1", "n2"}) {
		t.Fatalf("Check after n3 left = %+v, %v; want converged over n1, n2", res, err)
	}
}

// ?timeout= bounds a check's fan-out; a bad or absurd value is refused
// with 400 and a valid one still answers.
func TestCheckTimeoutParameter(t *testing.T) {
	n := startNode(t, testConfig(t, "n1", t.TempDir()))
	for _, v := range []string{"bogus", "0s", "-1s", "99ms", "1h"} {
		resp, err := http.Get("http://" + n.APIAddr() + "/v1/check?timeout=" + v)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("timeout=%s: status %d; want 400", v, resp.StatusCode)
		}
	}
	res, err := NewClient(n.APIAddr()).CheckWithin(context.Background(), 300*time.Millisecond)
	if err != nil || !res.Converged {
		t.Errorf("CheckWithin(300ms) = %+v, %v; want converged", res, err)
	}
}
