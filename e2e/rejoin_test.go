package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rejoinTimeout is the bound: a restarted node is alive to all
// within 10 s.
const rejoinTimeout = 10 * time.Second

// TestRejoinWithoutFirstJoinTarget: the node everyone first joined (n1)
// stops for good; n3 is then killed (kill -9) and restarted with only its
// data dir, whose saved flags still say --join n1. It must come back
// through any member it has known (DATA_DIR/known-members.json), even when
// serf's snapshot holds no peer (it buffers writes, so after kill -9 it may
// hold none; the second round removes it to be sure).
func TestRejoinWithoutFirstJoinTarget(t *testing.T) {
	t.Parallel()
	n1, n2, n3 := newNode(t, "n1"), newNode(t, "n2"), newNode(t, "n3")
	p1 := start(t, "n1", n1.args()...)
	start(t, "n2", n2.args(n1.gossip)...)
	p3 := start(t, "n3", n3.args(n1.gossip)...)
	waitStatus(t, formTimeout, []node{n1, n2, n3}, "alive", "n1", "n2", "n3")
	waitUntil(t, syncTimeout, "n3's known-members file lists n2", func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(n3.dir, "known-members.json"))
		if err != nil {
			return false, err.Error()
		}
		var doc struct {
			Members []struct{ Name, Addr string }
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return false, err.Error()
		}
		for _, m := range doc.Members {
			if m.Name == "n2" && m.Addr == n2.gossip {
				return true, ""
			}
		}
		return false, string(b)
	})

	// n1 stops for good: the only --join address anyone was given.
	if err := p1.Kill(); err != nil {
		t.Fatal(err)
	}
	p1.Wait(t, 5*time.Second)
	waitStatus(t, detectTimeout, []node{n2, n3}, "failed", "n1")

	for round, dropSnapshot := range []bool{false, true} {
		if err := p3.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := p3.Wait(t, 5*time.Second); !p3.DiedBySIGKILL() {
			t.Fatalf("round %d: n3 exit = %v; want killed by SIGKILL", round, err)
		}
		if dropSnapshot {
			if err := os.Remove(filepath.Join(n3.dir, "serf.snapshot")); err != nil {
				t.Fatal(err)
			}
		}
		p3 = start(t, "n3-restarted", "agent", "--data-dir", n3.dir)
		// n3's own view of n2 proves the new process joined: n2 may still
		// hold the old n3 as alive.
		took := waitStatus(t, rejoinTimeout, []node{n2, n3}, "alive", "n2", "n3")
		t.Logf("round %d (serf snapshot removed: %v): restarted n3 was alive to all after %s", round, dropSnapshot, took)
		// It found the cluster itself, not only because n2's reconnect
		// loop reached it on its old address.
		waitUntil(t, rejoinTimeout, "restarted n3 logs that it joined", func() (bool, string) {
			return strings.Contains(p3.Output(), `msg="joined cluster"`), "no \"joined cluster\" line yet"
		})
		if out := p3.Output(); strings.Contains(out, "error occurred") {
			t.Errorf("round %d: n3 logged serf's multi-line join error:\n%s", round, out)
		}
	}
}
