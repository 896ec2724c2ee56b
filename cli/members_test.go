package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/peerctl/peerctl/internal/api"
)

func threeMembers(f *fakeDaemon) {
	f.members = []api.Member{
		{Name: "n2", Addr: "127.0.0.1:7956", API: "127.0.0.1:7957", Status: "failed",
			Tags: map[string]string{"api": "127.0.0.1:7957", "ver": "0.1.0"}},
		{Name: "n1", Addr: "127.0.0.1:7946", API: "127.0.0.1:7947", Status: "alive",
			Tags: map[string]string{"api": "127.0.0.1:7947", "ver": "0.1.0", "role": "db"}},
		{Name: "n3", Addr: "127.0.0.1:7966", API: "127.0.0.1:7967", Status: "alive"},
	}
}

// The table has a header, one row per member sorted by name, and tags as
// sorted k=v without api.
func TestMembersTable(t *testing.T) {
	f := newFakeDaemon(t)
	threeMembers(f)
	out := mustRun(t, f.addr(), "", "members")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("members printed %d lines; want header and 3 rows:\n%s", len(lines), out)
	}
	want := [][]string{
		{"NAME", "ADDR", "API", "STATUS", "TAGS"},
		{"n1", "127.0.0.1:7946", "127.0.0.1:7947", "alive", "role=db,ver=0.1.0"},
		{"n2", "127.0.0.1:7956", "127.0.0.1:7957", "failed", "ver=0.1.0"},
		{"n3", "127.0.0.1:7966", "127.0.0.1:7967", "alive"},
	}
	for i, l := range lines {
		if got := strings.Fields(l); strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("line %d = %q; want fields %q", i, l, want[i])
		}
	}
}

// --json is an array of {name, addr, api, status, tags}, status lower case.
func TestMembersJSON(t *testing.T) {
	f := newFakeDaemon(t)
	threeMembers(f)
	f.members[0].Status = "Failed" // lower-cased even if the daemon did not
	out := mustRun(t, f.addr(), "", "members", "--json")
	// --json before the command name, as if it were global, is the same.
	if before := mustRun(t, f.addr(), "", "--json", "members"); before != out {
		t.Errorf("--json members printed\n%s\nmembers --json printed\n%s", before, out)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("members --json: %v\n%s", err, out)
	}
	if len(got) != 3 {
		t.Fatalf("members --json has %d objects; want 3", len(got))
	}
	for _, m := range got {
		if len(m) != 5 {
			t.Errorf("member %v has keys other than name, addr, api, status, tags", m)
		}
		for _, k := range []string{"name", "addr", "api", "status", "tags"} {
			if _, ok := m[k]; !ok {
				t.Errorf("member %v lacks %q", m, k)
			}
		}
		if s := m["status"].(string); s != strings.ToLower(s) {
			t.Errorf("status %q is not lower case", s)
		}
		if _, ok := m["tags"].(map[string]any)["api"]; ok {
			t.Errorf("tags of %v include api", m["name"])
		}
	}
	if got[1]["name"] != "n2" || got[1]["status"] != "failed" {
		t.Errorf("second member = %v; want n2, failed", got[1])
	}
	if tags, ok := got[2]["tags"].(map[string]any); !ok || len(tags) != 0 {
		t.Errorf("n3 tags = %v; want {} (not null)", got[2]["tags"])
	}
}

func TestMembersStatusFilter(t *testing.T) {
	f := newFakeDaemon(t)
	threeMembers(f)
	out := mustRun(t, f.addr(), "", "members", "--status", "alive")
	if strings.Contains(out, "n2") || !strings.Contains(out, "n1") || !strings.Contains(out, "n3") {
		t.Errorf("members --status alive:\n%s\nwant n1 and n3 only", out)
	}
	out = mustRun(t, f.addr(), "", "members", "--status", "left", "--json")
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("members --status left --json = %q; want []", out)
	}
	r := run(t, f.addr(), "", "members", "--status", "dead")
	if r.err == nil || !strings.Contains(r.err.Error(), `--status "dead"`) {
		t.Errorf("members --status dead: err = %v; want one naming --status", r.err)
	}
}

// --node is passed to the daemon as ?node=.
func TestMembersNode(t *testing.T) {
	f := newFakeDaemon(t)
	threeMembers(f)
	mustRun(t, f.addr(), "", "members", "--node", "n2")
	if got := f.lastNode(); got != "n2" {
		t.Errorf("members --node n2 sent node=%q; want n2", got)
	}
}
