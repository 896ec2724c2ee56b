package nemesis

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/e2e/internal/procs"
)

// TestPauseSuspectThenAlive pauses a node with `peerctl pause NODE --for`
// and checks what the issue promises (issue 3, item 1, pause): while it is
// frozen every other node suspects it (or has declared it failed); when
// the pause ends it refutes and is alive to all again, the same process
// without a restart, holding the write it missed; and no fault remains.
func TestPauseSuspectThenAlive(t *testing.T) {
	needBinary(t)
	const pauseFor = 4 * time.Second
	c := newCluster(t, 3, 1)
	n1, n2, n3 := c.byName("n1"), c.byName("n2"), c.byName("n3")
	p2 := n2.current()

	peerctl.MustCLI(t, n1.api, "pause", "n2", "--for", pauseFor.String())
	paused := time.Now()
	resumes := paused.Add(pauseFor)

	// n2 itself says what it does to its traffic.
	if ms, err := peerctl.Members(t, n2.api); err != nil {
		t.Fatal(err)
	} else if f := ms["n1"].Fault; !strings.Contains(f, "paused") {
		t.Errorf("members at n2 during its pause: fault toward n1 %q; want \"paused\"", f)
	}
	// A write n2 misses while it is frozen.
	peerctl.MustCLI(t, n1.api, "put", "during-pause", "missed by n2")

	// Every other node sees n2 suspect or failed before the pause ends
	// (plus a little slack for the polling itself).
	seen := map[string]string{} // observer -> first status other than alive, and when
	_, err := procs.WaitFor(pauseFor+2*time.Second, poll, func() (bool, string) {
		for _, a := range []*agent{n1, n3} {
			if seen[a.name] != "" {
				continue
			}
			ms, err := peerctl.Members(t, a.api)
			if err != nil {
				return false, err.Error()
			}
			if st := ms["n2"].Status; st == "suspect" || st == "failed" {
				seen[a.name] = fmt.Sprintf("%s after %s", st, time.Since(paused).Round(time.Millisecond))
			}
		}
		return len(seen) == 2, fmt.Sprintf("seen so far: %v", seen)
	})
	if err != nil {
		t.Fatalf("n2 paused: suspect or failed to n1 and n3: %v", err)
	}
	t.Logf("while n2 was paused: n1 saw it %s, n3 saw it %s", seen["n1"], seen["n3"])

	// After the pause, alive again to everyone, refuted, no restart.
	_, err = procs.WaitFor(30*time.Second, poll, func() (bool, string) {
		for _, a := range []*agent{n1, n2, n3} {
			ms, err := peerctl.Members(t, a.api)
			if err != nil {
				return false, err.Error()
			}
			for _, b := range []string{"n1", "n2", "n3"} {
				if ms[b].Status != "alive" {
					return false, fmt.Sprintf("%s sees %s as %q", a.name, b, ms[b].Status)
				}
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatalf("after the pause, every node alive to every node: %v", err)
	}
	t.Logf("all alive to all %s after the pause ended", time.Since(resumes).Round(time.Millisecond))
	if p2.Exited() || n2.current() != p2 {
		t.Fatalf("n2 (pid %d) was restarted or died: %v", p2.PID(), p2.Err())
	}
	var info struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(peerctl.MustCLI(t, n2.api, "info", "--json")), &info); err != nil {
		t.Fatal(err)
	}
	if info.PID != p2.PID() {
		t.Errorf("n2 info pid = %d; want %d, the process paused", info.PID, p2.PID())
	}

	// Anti-entropy brings n2 the write it missed.
	if _, err := procs.WaitFor(15*time.Second, poll, func() (bool, string) {
		r := peerctl.CLI(t, n2.api, "get", "during-pause")
		return r.Code == 0 && r.Stdout == "missed by n2\n", r.String()
	}); err != nil {
		t.Errorf("write made during the pause at n2: %v", err)
	}

	// The pause lifted itself: no fault is in force, no node applies one.
	var list struct {
		Faults []json.RawMessage `json:"faults"`
		Nodes  []struct {
			Node  string            `json:"node"`
			Rules []json.RawMessage `json:"rules"`
			Error string            `json:"error"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(peerctl.MustCLI(t, n1.api, "faults", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Faults) != 0 {
		t.Errorf("faults --json after the pause lists %d faults in force; want none", len(list.Faults))
	}
	if len(list.Nodes) != 3 {
		t.Errorf("faults --json lists %d nodes; want 3", len(list.Nodes))
	}
	for _, n := range list.Nodes {
		if len(n.Rules) > 0 || n.Error != "" {
			t.Errorf("faults at %s after the pause: %d rules, error %q; want none", n.Node, len(n.Rules), n.Error)
		}
	}
}
