package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestKnownRoundTrip(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	want := []knownMember{{Name: "n2", Addr: "127.0.0.1:7948", API: "127.0.0.1:7949", Seen: at}, {Name: "n3", Addr: "[::1]:7950", Seen: at}}
	if err := writeKnown(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := readKnown(dir)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("readKnown = %v, %v; want %v", got, err, want)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("data dir holds %d files after writeKnown; want only %s (no temporary left)", len(ents), knownFile)
	}
	if got, err := readKnown(t.TempDir()); got != nil || err != nil {
		t.Errorf("readKnown(empty dir) = %v, %v; want nil, nil", got, err)
	}
}

func TestDecodeKnownRejectsHostileInput(t *testing.T) {
	for _, in := range []string{
		``, `{`, `null`, `[]`, `{"version": 2, "members": []}`,
		`{"version": 1, "members": [{"name": "", "addr": "127.0.0.1:1"}]}`,
		`{"version": 1, "members": [{"name": "n", "addr": "nohost"}]}`,
		`{"version": 1, "members": [{"name": "n", "addr": "127.0.0.1:0"}]}`,
		`{"version": 1, "members": [{"name": "n", "addr": "127.0.0.1:99999"}]}`,
		`{"version": 1, "members": [{"name": "n", "addr": ":7946"}]}`,
		`{"version": 1, "members": [{"name": "n", "addr": "127.0.0.1:1", "api": "x"}]}`,
		`{"version": 1, "members": [{"name": "` + strings.Repeat("x", 129) + `", "addr": "127.0.0.1:1"}]}`,
		strings.Repeat(" ", maxKnownFile+1),
	} {
		if ms, err := decodeKnown([]byte(in)); err == nil {
			t.Errorf("decodeKnown(%.60q) = %v, nil; want an error", in, ms)
		}
	}
	// Over maxKnown entries: the first maxKnown are kept; duplicates once.
	var b strings.Builder
	b.WriteString(`{"version": 1, "members": [{"name": "dup", "addr": "127.0.0.1:1"}`)
	for i := 0; i < maxKnown+10; i++ {
		b.WriteString(`, {"name": "dup", "addr": "127.0.0.1:2"}, {"name": "n` + strconv.Itoa(i) + `", "addr": "127.0.0.1:3"}`)
	}
	b.WriteString(`]}`)
	ms, err := decodeKnown([]byte(b.String()))
	if err != nil || len(ms) != maxKnown || ms[0].Addr != "127.0.0.1:1" {
		t.Fatalf("decodeKnown(%d entries) = %d entries, %v; want %d, the first dup kept", 2*maxKnown, len(ms), err, maxKnown)
	}
}

func FuzzDecodeKnown(f *testing.F) {
	f.Add([]byte(`{"version": 1, "members": [{"name": "n2", "addr": "127.0.0.1:7948", "api": "127.0.0.1:7949", "seen": "2026-11-29T12:00:00Z"}]}`))
	f.Add([]byte(`{"version": 1, "members": null}`))
	f.Add([]byte(`{"version": 1, "members": [{"name": "n", "addr": "[::1]:1"}, {"name": "n", "addr": "h:2"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := decodeKnown(b)
		if err != nil {
			return
		}
		if len(ms) > maxKnown {
			t.Fatalf("%d members; the limit is %d", len(ms), maxKnown)
		}
		names := map[string]bool{}
		for _, m := range ms {
			if m.Name == "" || len(m.Name) > maxNameLen || names[m.Name] || checkHostPort(m.Addr) != nil || (m.API != "" && checkHostPort(m.API) != nil) {
				t.Fatalf("decodeKnown accepted a bad entry %+v", m)
			}
			names[m.Name] = true
		}
		// What is accepted survives a write and a read unchanged.
		dir := t.TempDir()
		if err := writeKnown(dir, ms); err != nil {
			t.Fatal(err)
		}
		again, err := readKnown(dir)
		if err != nil || len(again) != len(ms) {
			t.Fatalf("re-read %d members, %v; wrote %d", len(again), err, len(ms))
		}
	})
}

func TestMergeKnown(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	prev := []knownMember{
		{Name: "gone", Addr: "127.0.0.1:1", Seen: t0},                           // unlisted, seen an hour ago: kept
		{Name: "ancient", Addr: "127.0.0.1:2", Seen: now.Add(-knownForget - 1)}, // unlisted for too long: dropped
		{Name: "leaver", Addr: "127.0.0.1:3", Seen: t0},                         // left: dropped
		{Name: "moved", Addr: "127.0.0.1:4", API: "127.0.0.1:5", Seen: t0},      // new address
	}
	cur := []Member{
		{Name: "leaver", Addr: "127.0.0.1:3", Status: "left"},
		{Name: "moved", Addr: "127.0.0.1:40", Status: "alive"},
		{Name: "down", Addr: "127.0.0.1:6", API: "127.0.0.1:7", Status: "failed"},
	}
	got := mergeKnown(prev, cur, now)
	want := []knownMember{
		{Name: "moved", Addr: "127.0.0.1:40", API: "127.0.0.1:5", Seen: now},
		{Name: "gone", Addr: "127.0.0.1:1", Seen: t0},
		{Name: "down", Addr: "127.0.0.1:6", API: "127.0.0.1:7"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("mergeKnown = %+v; want %+v", got, want)
	}
	var many []Member
	for i := 0; i < maxKnown+5; i++ {
		many = append(many, Member{Name: strings.Repeat("m", i+1), Addr: "127.0.0.1:9", Status: "alive"})
	}
	if got := mergeKnown(nil, many, now); len(got) != maxKnown {
		t.Errorf("mergeKnown of %d members kept %d; want %d", len(many), len(got), maxKnown)
	}
}

func TestSnapshotAddrs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "serf.snapshot")
	os.WriteFile(p, []byte("alive: n2 127.0.0.1:7948\nalive: n3 127.0.0.1:7950\nclock: 4\nnot-alive: n3\nalive: bad nonsense\nalive: n 4 127.0.0.1:7952\n"), 0o600)
	got := snapshotAddrs(p)
	if len(got) != 2 || got["n2"] != "127.0.0.1:7948" || got["n 4"] != "127.0.0.1:7952" {
		t.Errorf("snapshotAddrs = %v; want n2 and \"n 4\"", got)
	}
	if got := snapshotAddrs(p + ".missing"); got != nil {
		t.Errorf("snapshotAddrs(missing) = %v; want nil", got)
	}
}

// The known-members file follows membership: written after a member joins,
// durable across a restart.
func TestKnownMembersFileFollowsMembership(t *testing.T) {
	d1 := t.TempDir()
	n1 := startNode(t, testConfig(t, "n1", d1))
	n2 := startNode(t, testConfig(t, "n2", t.TempDir(), n1.GossipAddr()))
	waitFor(t, 10*time.Second, "n1's file lists n2", func() error {
		ms, err := readKnown(d1)
		if err != nil {
			return err
		}
		if len(ms) != 1 || ms[0].Name != "n2" || ms[0].Addr != n2.GossipAddr() || ms[0].API != n2.APIAddr() {
			return fmt.Errorf("file lists %+v", ms)
		}
		return nil
	})
}

// lockedBuffer is a log sink safe for the agent's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The rejoin after a heal logs a failed join on one line, like the join
// loop: serf's multi-error ("1 error occurred:\n\t* ...") used to spill
// over several lines.
func TestRejoinAfterHealLogsOneLine(t *testing.T) {
	logs := &lockedBuffer{}
	cfg := testConfig(t, "n1", t.TempDir())
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	n := startNode(t, cfg)
	// A member the fault table names, at an address where no one listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	n.fstate.mu.Lock()
	n.fstate.table["f-1"] = FaultRecord{ID: "f-1", Request: FaultRequest{Kind: ReqIsolate, Nodes: []string{"ghost"}},
		Members: []Endpoint{{Name: "n1"}, {Name: "ghost", Gossip: dead}}, Created: time.Now(), Healed: time.Now()}
	n.fstate.mu.Unlock()
	n.rejoinLost()
	waitFor(t, 10*time.Second, "the rejoin is logged", func() error {
		if !strings.Contains(logs.String(), `msg="rejoin after heal"`) {
			return fmt.Errorf("no rejoin line yet")
		}
		return nil
	})
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "rejoin after heal") && !strings.Contains(line, "failed to join "+dead) {
			t.Errorf("rejoin line does not say why: %s", line)
		}
	}
	if out := logs.String(); strings.Contains(out, "error occurred") || strings.Contains(out, "\t* ") {
		t.Errorf("a multi-line serf error in the log:\n%s", out)
	}
}
