package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// leaderView is the part of `peerctl leader --json` the test reads.
type leaderView struct {
	Leader  string `json:"leader"`
	Term    uint64 `json:"term"`
	Servers []struct {
		Name string `json:"name"`
		Role string `json:"role"`
	} `json:"servers"`
}

func leaderOf(tb testing.TB, n node) (leaderView, error) {
	r := peerctl.CLI(tb, n.api, "leader", "--json")
	var l leaderView
	if r.Code != 0 {
		return l, fmt.Errorf("leader at %s: %v", n.name, r)
	}
	return l, json.Unmarshal([]byte(r.Stdout), &l)
}

// Five real agents form a raft group from serf membership (three voters
// bootstrap, autopilot brings the group to five voters); consistent
// writes, compare-and-set and locks work through any node; the minority
// side of a partition refuses consistent writes ("quorum", exit status 3)
// while gossip writes still work there; after the leader is killed -9 a
// new one is elected and acknowledged writes are all there.
func TestRaftCluster(t *testing.T) {
	ns := startJoined(t, "n", 5)
	byName := map[string]node{}
	for _, n := range ns {
		byName[n.name] = n
	}
	waitUntil(t, 2*formTimeout, "a leader with five voters", func() (bool, string) {
		l, err := leaderOf(t, ns[4])
		if err != nil {
			return false, err.Error()
		}
		voters := 0
		for _, s := range l.Servers {
			if s.Role == "voter" || s.Role == "leader" {
				voters++
			}
		}
		return l.Leader != "" && voters == 5, fmt.Sprintf("leader %q, %d voters", l.Leader, voters)
	})

	// Consistent writes through a follower, reads through another.
	out := peerctl.MustCLI(t, ns[1].api, "put", "--consistent", "acked/1", "one")
	if !strings.HasPrefix(out, "OK key=acked/1 version=") {
		t.Fatalf("put --consistent printed %q", out)
	}
	version := strings.Fields(strings.TrimPrefix(out, "OK key=acked/1 version="))[0]
	if got := peerctl.MustCLI(t, ns[3].api, "get", "--consistent", "acked/1"); got != "one\n" {
		t.Fatalf("get --consistent = %q; want one", got)
	}
	if r := peerctl.CLI(t, ns[2].api, "put", "--consistent", "--if-version", "1", "acked/1", "two"); r.Code != 1 || !strings.Contains(r.Stderr, "version mismatch") {
		t.Fatalf("put --consistent --if-version with a stale version: %v; want exit 1, version mismatch", r)
	}
	peerctl.MustCLI(t, ns[2].api, "put", "--consistent", "--if-version", version, "acked/1", "two")
	peerctl.MustCLI(t, ns[4].api, "put", "--consistent", "--if-absent", "acked/2", "x")

	// A lock through any node hands the command its fencing token.
	out = peerctl.MustCLI(t, ns[4].api, "lock", "--ttl", "2s", "job", "--", "sh", "-c", "echo fence=$PEERCTL_FENCE")
	if !strings.HasPrefix(out, "fence=") || out == "fence=\n" {
		t.Fatalf("lock ran the command with %q; want fence=N", out)
	}

	// Partition 2 / 3: the minority refuses consistent writes, accepts
	// gossip writes; the majority does both.
	l, err := leaderOf(t, ns[0])
	if err != nil {
		t.Fatal(err)
	}
	var minority, majority []string
	for _, n := range ns {
		if n.name != l.Leader && len(minority) < 2 {
			minority = append(minority, n.name)
		} else {
			majority = append(majority, n.name)
		}
	}
	peerctl.MustCLI(t, ns[0].api, "partition", strings.Join(minority, ",")+" / "+strings.Join(majority, ","))
	minNode, majNode := byName[minority[0]], byName[majority[0]]
	began := time.Now()
	r := peerctl.CLI(t, minNode.api, "put", "--consistent", "minority", "x")
	if r.Code != 3 || !strings.Contains(r.Stderr, "quorum") || !strings.Contains(r.Stderr, "reaches 2 of 5 voters") {
		t.Fatalf("consistent put on the minority side: %v; want exit 3, no quorum, reaches 2 of 5 voters", r)
	}
	t.Logf("minority refused a consistent write after %v: %s", time.Since(began).Round(time.Millisecond), strings.TrimSpace(r.Stderr))
	peerctl.MustCLI(t, minNode.api, "put", "gossip/minority", "x")
	peerctl.MustCLI(t, majNode.api, "put", "--consistent", "acked/3", "y")
	peerctl.MustCLI(t, majNode.api, "put", "gossip/majority", "y")
	peerctl.MustCLI(t, ns[0].api, "heal")

	// Kill the leader (as kill -9): a new one is elected and every
	// acknowledged write is there.
	waitUntil(t, formTimeout, "a leader after the heal", func() (bool, string) {
		l, err = leaderOf(t, ns[0])
		if err != nil {
			return false, err.Error()
		}
		return l.Leader != "", fmt.Sprintf("%+v", l)
	})
	old := l.Leader
	var survivor node
	for _, n := range ns {
		if n.name != old {
			survivor = n
			break
		}
	}
	killed := time.Now()
	peerctl.MustCLI(t, survivor.api, "kill", old)
	elected := waitUntil(t, formTimeout, "a new leader after the kill", func() (bool, string) {
		l, err := leaderOf(t, survivor)
		if err != nil {
			return false, err.Error()
		}
		return l.Leader != "" && l.Leader != old, "leader " + l.Leader
	})
	waitUntil(t, formTimeout, "a consistent write after the kill", func() (bool, string) {
		r := peerctl.CLI(t, survivor.api, "put", "--consistent", "acked/4", "z")
		return r.Code == 0, r.String()
	})
	t.Logf("leader %s killed: new leader seen after %v, consistent write acknowledged after %v (polled by CLI)", old, elected.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	for k, want := range map[string]string{"acked/1": "two\n", "acked/2": "x\n", "acked/3": "y\n", "acked/4": "z\n"} {
		if got := peerctl.MustCLI(t, survivor.api, "get", "--consistent", k); got != want {
			t.Errorf("get --consistent %s = %q; want %q", k, got, want)
		}
	}
}
