package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/e2e/internal/procs"
)

// TestClusterLifecycle walks a cluster through what a user does first:
// write at one node and read at another, kill a node and watch the others
// declare it failed, write while it is down, restart it on its data dir
// alone and see it catch up, then add a node with an empty store.
func TestClusterLifecycle(t *testing.T) {
	t.Parallel()
	n1, n2, n3 := newNode(t, "n1"), newNode(t, "n2"), newNode(t, "n3")
	start(t, "n1", n1.args()...)
	start(t, "n2", n2.args(n1.gossip)...)
	p3 := start(t, "n3", n3.args(n1.gossip)...)
	took := waitStatus(t, formTimeout, []node{n1, n2, n3}, "alive", "n1", "n2", "n3")
	t.Logf("3 nodes formed a cluster in %s", took)

	peerctl.MustCLI(t, n1.api, "put", "greeting", "hello")
	peerctl.MustCLI(t, n1.api, "put", "colour", "blue")
	t.Logf("a write at n1 was read at n2 after %s", waitValue(t, n2, "greeting", "hello"))

	// The kill goes through n1, which forwards it to n3's API.
	peerctl.MustCLI(t, n1.api, "kill", "n3")
	if err := p3.Wait(t, 5*time.Second); !p3.DiedBySIGKILL() {
		t.Fatalf("n3 exit status = %v; want killed by SIGKILL", err)
	}
	took = waitStatus(t, detectTimeout, []node{n1, n2}, "failed", "n3")
	t.Logf("both survivors marked n3 failed %s after it died", took)

	peerctl.MustCLI(t, n2.api, "put", "greeting", "written while n3 was down")
	peerctl.MustCLI(t, n2.api, "put", "missed", "by n3")
	peerctl.MustCLI(t, n1.api, "del", "colour")
	waitValue(t, n1, "greeting", "written while n3 was down")

	// The data dir alone brings n3 back: name and ports come from its
	// agent.json, its old entries from its store.
	start(t, "n3-restarted", "agent", "--data-dir", n3.dir)
	took = waitStatus(t, formTimeout, []node{n1, n2, n3}, "alive", "n3")
	t.Logf("restarted n3 was alive to all after %s", took)
	waitValue(t, n3, "greeting", "written while n3 was down")
	waitValue(t, n3, "missed", "by n3")
	if r := peerctl.CLI(t, n3.api, "get", "colour"); r.Code != 1 {
		t.Errorf("get colour at n3 after its deletion: %v; want exit 1", r)
	}

	// A new node with an empty store, joining any member, gets every key.
	n4 := newNode(t, "n4")
	start(t, "n4", n4.args(n3.gossip)...)
	want, err := keys(t, n1)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 2 {
		t.Fatalf("keys at n1 = %v; want greeting and missed", want)
	}
	took = waitUntil(t, syncTimeout, "every node lists the keys n1 lists", func() (bool, string) {
		for _, n := range []node{n2, n3, n4} {
			got, err := keys(t, n)
			if err != nil {
				return false, err.Error()
			}
			if !slices.Equal(got, want) {
				return false, n.name + " lists " + describe(got)
			}
		}
		return true, ""
	})
	t.Logf("new node n4 held every key after %s", took)
}

func describe(ks []keyVersion) string {
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = k.Key + "@" + k.Version
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestAgentStartErrors checks that an agent that cannot start exits
// non-zero with one line that says why, and that reading a missing key
// is exit status 1.
func TestAgentStartErrors(t *testing.T) {
	t.Parallel()
	a := newNode(t, "a")
	start(t, "a", a.args()...)
	waitStatus(t, formTimeout, []node{a}, "alive", "a")

	cases := []struct {
		name string
		args func(b node) []string
		want string // in the error line
	}{
		{"same data dir", func(b node) []string {
			return []string{"agent", "--name", "b", "--bind", b.gossip, "--api", b.api, "--data-dir", a.dir}
		}, "in use"},
		{"busy API port", func(b node) []string {
			return []string{"agent", "--name", "b", "--bind", b.gossip, "--api", a.api, "--data-dir", b.dir}
		}, a.api},
		{"busy gossip port", func(b node) []string {
			return []string{"agent", "--name", "b", "--bind", a.gossip, "--api", b.api, "--data-dir", b.dir}
		}, a.gossip},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newNode(t, "b")
			p := start(t, "b", c.args(b)...)
			if err := p.Wait(t, procs.CmdTimeout); err == nil {
				t.Fatalf("second agent exited 0; want non-zero")
			}
			out := strings.TrimSpace(p.Output())
			if strings.Count(out, "\n") != 0 || !strings.HasPrefix(out, "peerctl: ") || !strings.Contains(out, c.want) {
				t.Errorf("output = %q; want one line \"peerctl: ...\" mentioning %q", out, c.want)
			}
		})
	}

	t.Run("get missing key", func(t *testing.T) {
		r := peerctl.CLI(t, a.api, "get", "no-such-key")
		if r.Code != 1 || r.Stdout != "" || !strings.Contains(r.Stderr, "not found") {
			t.Errorf("get no-such-key: %v; want exit 1 and \"not found\" on stderr", r)
		}
	})
}
