package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerctl/peerctl/e2e/internal/procs"
	"github.com/peerctl/peerctl/internal/damage"
)

// Damaged data dirs (issue 7): each test damages a stopped node's store
// the way a disk or an operator would, starts the real binary on it, and
// checks the outcome a user sees: a refused start with one clear line
// naming the way out, or a node that repairs itself from its peers; never
// a panic, never a wrong value, never keys silently gone.

// bigValue is above the store's value threshold (1 KiB), so it lives in
// badger's value log rather than in its tables.
func bigValue(i int) string { return strings.Repeat(fmt.Sprintf("big-%03d.", i), 256) }

// putKeys writes n small and n big values at a, returning key -> value.
func putKeys(t *testing.T, a node, prefix string, n int) map[string]string {
	t.Helper()
	want := map[string]string{}
	for i := 0; i < n; i++ {
		k, v := fmt.Sprintf("%s/small/%03d", prefix, i), fmt.Sprintf("value %d", i)
		peerctl.MustCLI(t, a.api, "put", k, v)
		want[k] = v
		k, v = fmt.Sprintf("%s/big/%03d", prefix, i), bigValue(i)
		peerctl.MustCLI(t, a.api, "put", k, v)
		want[k] = v
	}
	return want
}

// waitKeys waits until n lists exactly the same keys and versions as ref.
func waitKeys(t *testing.T, n, ref node) {
	t.Helper()
	waitUntil(t, syncTimeout, fmt.Sprintf("%s holds the keys of %s", n.name, ref.name), func() (bool, string) {
		a, err := keys(t, n)
		if err != nil {
			return false, err.Error()
		}
		b, err := keys(t, ref)
		if err != nil {
			return false, err.Error()
		}
		if describe(a) != describe(b) {
			return false, fmt.Sprintf("%s has %d keys, %s has %d", n.name, len(a), ref.name, len(b))
		}
		return true, ""
	})
}

// checkValues reads every key at n and compares it with want.
func checkValues(t *testing.T, n node, want map[string]string) {
	t.Helper()
	for k, v := range want {
		r := peerctl.CLI(t, n.api, "get", k)
		if r.Code != 0 || r.Stdout != v+"\n" {
			t.Fatalf("get %s at %s: %s; want the written value (%d bytes)", k, n.name, procs.Tail(r.String(), 2), len(v))
		}
	}
}

// stopNode stops the agent gracefully and checks it exited 0.
func stopNode(t *testing.T, p *procs.Proc) {
	t.Helper()
	p.Term()
	if err := p.Wait(t, procs.StopGrace); err != nil {
		t.Fatalf("%s stopped with %v", p.Name, err)
	}
}

// refusedStart starts the agent on n's data dir and checks that it exits
// non-zero with one line "peerctl: ..." containing every want, and no
// panic or goroutine dump.
func refusedStart(t *testing.T, n node, want ...string) string {
	t.Helper()
	p := start(t, n.name+"-refused", "agent", "--data-dir", n.dir)
	if err := p.Wait(t, procs.CmdTimeout); err == nil {
		t.Fatalf("agent on a damaged data dir exited 0; want a refused start")
	}
	out := strings.TrimSpace(p.Output())
	if strings.Count(out, "\n") != 0 || !strings.HasPrefix(out, "peerctl: ") || strings.Contains(out, "goroutine") {
		t.Fatalf("output = %q; want one line \"peerctl: ...\"", out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output = %q; want it to mention %q", out, w)
		}
	}
	return out
}

func storeFiles(t *testing.T, n node, ext string) []string {
	t.Helper()
	return damage.Files(t, filepath.Join(n.dir, "store"), ext)
}

func fileSize(p string) int64 { return damage.Size(p) }

func scribble(t *testing.T, path string, off int64, n int) {
	t.Helper()
	damage.Scribble(t, path, off, n, 7)
}

// TestResyncAfterLostManifest: three nodes; one's MANIFEST is deleted
// while it is down. Before, it started with 0 keys (badger deleted its
// tables). Now its start is refused with a line naming --resync; with
// --resync it moves the store aside (kept) and catches up every key,
// those written while it was down included.
func TestResyncAfterLostManifest(t *testing.T) {
	t.Parallel()
	n1, n2, n3 := newNode(t, "n1"), newNode(t, "n2"), newNode(t, "n3")
	start(t, "n1", n1.args()...)
	start(t, "n2", n2.args(n1.gossip)...)
	p3 := start(t, "n3", n3.args(n1.gossip)...)
	all := []node{n1, n2, n3}
	waitStatus(t, formTimeout, all, "alive", "n1", "n2", "n3")

	want := putKeys(t, n1, "before", 30)
	waitKeys(t, n3, n1)
	stopNode(t, p3)
	if _, err := os.Stat(filepath.Join(n3.dir, "clean-stop.json")); err != nil {
		t.Fatalf("no clean-stop record after a graceful stop: %v", err)
	}
	for k, v := range putKeys(t, n2, "while-down", 5) {
		want[k] = v
	}
	tables := storeFiles(t, n3, ".sst")
	if err := os.Remove(filepath.Join(n3.dir, "store", "MANIFEST")); err != nil {
		t.Fatal(err)
	}

	refusedStart(t, n3, "MANIFEST is missing", "--resync")
	for _, f := range tables {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("refused start removed %s: %v", f, err)
		}
	}

	start(t, "n3-resync", "agent", "--data-dir", n3.dir, "--resync")
	waitKeys(t, n3, n1)
	checkValues(t, n3, want)
	aside, _ := filepath.Glob(filepath.Join(n3.dir, "store.damaged-*", "*.sst"))
	if len(aside) != len(tables) {
		t.Errorf("moved-aside store holds %d tables; want the %d of the damaged store", len(aside), len(tables))
	}
}

// TestDamagedTableRefused: a truncated table (before: a panic in a badger
// goroutine, the process died with a goroutine dump) and garbage in a
// table (before: thousands of keys silently missing) both refuse the
// start with one line naming the table and --resync.
func TestDamagedTableRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, sst string)
	}{
		{"truncated", func(t *testing.T, sst string) { os.Truncate(sst, fileSize(sst)/2) }},
		{"garbage", func(t *testing.T, sst string) { scribble(t, sst, fileSize(sst)/3, 1024) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newNode(t, "a")
			p := start(t, "a", a.args()...)
			waitStatus(t, formTimeout, []node{a}, "alive", "a")
			putKeys(t, a, "k", 20)
			stopNode(t, p)
			sst := storeFiles(t, a, ".sst")[0]
			tc.damage(t, sst)
			refusedStart(t, a, filepath.Base(sst), "--resync")
		})
	}
}

// TestDamagedValueLogRepaired: garbage in one node's value log. Before,
// the node served random bytes as a value with a valid version, and
// anti-entropy could not see it. Now the node starts, quarantines the
// records that fail their checksum (counted in info), never serves them,
// and fetches good copies from its peer.
func TestDamagedValueLogRepaired(t *testing.T) {
	t.Parallel()
	n1, n2 := newNode(t, "n1"), newNode(t, "n2")
	start(t, "n1", n1.args()...)
	p2 := start(t, "n2", n2.args(n1.gossip)...)
	waitStatus(t, formTimeout, []node{n1, n2}, "alive", "n1", "n2")
	want := putKeys(t, n1, "k", 20)
	waitKeys(t, n2, n1)
	stopNode(t, p2)
	// Overwrite the middle of one value in n2's value log.
	vlog := storeFiles(t, n2, ".vlog")[0]
	data, err := os.ReadFile(vlog)
	if err != nil {
		t.Fatal(err)
	}
	off := bytes.Index(data, []byte(bigValue(7)))
	if off < 0 {
		t.Fatalf("value of k/big/007 not found in %s (%d bytes)", vlog, len(data))
	}
	scribble(t, vlog, int64(off+len(bigValue(7))/2), 64)

	p2 = start(t, "n2-damaged", "agent", "--data-dir", n2.dir)
	waitKeys(t, n2, n1)
	if out := p2.Output(); !strings.Contains(out, "fewer entries than at the last clean stop") || !strings.Contains(out, "quarantined") {
		t.Errorf("n2's log does not warn about the entries lost since its clean stop:\n%s", procs.Tail(out, 20))
	}
	checkValues(t, n2, want)
	var info struct {
		Store struct {
			Quarantined int `json:"quarantined"`
		} `json:"store"`
	}
	out := peerctl.MustCLI(t, n2.api, "info", "--json")
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info --json: %v", err)
	}
	if info.Store.Quarantined == 0 {
		t.Errorf("info reports 0 quarantined records after value-log damage")
	}
	t.Logf("quarantined at n2: %d", info.Store.Quarantined)
}
