package daemon

import (
	"context"
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
