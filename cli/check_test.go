package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/peerctl/peerctl/internal/api"
)

var (
	converged = api.CheckResult{Converged: true, Nodes: []string{"n1", "n2", "n3"},
		Keys: map[string]int{"n1": 12, "n2": 12, "n3": 12}}
	diverged = api.CheckResult{Nodes: []string{"n1", "n2", "n3"},
		Keys: map[string]int{"n1": 12, "n2": 11, "n3": 12}, Divergent: 2, Buckets: 2,
		Sample: []api.Divergence{
			{Key: "a", Versions: map[string]string{"n1": "5@n1", "n2": "", "n3": "5@n1"}},
			{Key: "b", Versions: map[string]string{"n1": "7@n3", "n2": "6@n2", "n3": "deleted@7@n3"}},
		}}
)

func TestCheckConverged(t *testing.T) {
	f := newFaultDaemon(t)
	f.checks = []api.CheckResult{converged}
	r := run(t, f.addr(), "", "check")
	if r.code != 0 || r.stdout != "converged: 3 nodes hold identical data (12 keys)\n" {
		t.Errorf("check when converged: code %d, output %q", r.code, r.stdout)
	}
}

// Diverged exits 1 and shows a sample: KEY, then each node's version, "-"
// where the node lacks the key.
func TestCheckDiverged(t *testing.T) {
	f := newFaultDaemon(t)
	f.checks = []api.CheckResult{diverged}
	r := run(t, f.addr(), "", "check")
	if r.code != 1 {
		t.Errorf("check when diverged: code %d; want 1", r.code)
	}
	checkLines(t, r.stdout, []string{
		"diverged: 2 keys differ across nodes",
		"KEY n1 n2 n3",
		"a 5@n1 - 5@n1",
		"b 7@n3 6@n2 deleted@7@n3",
	})
	if r.stderr != "" || r.err.Error() != "" {
		t.Errorf("check when diverged: err %q, stderr %q; want the output alone to say why", r.err, r.stderr)
	}

	// More divergent keys than the sample shows.
	many := diverged
	many.Divergent = 57
	f.checks = []api.CheckResult{many}
	if r := run(t, f.addr(), "", "check"); !strings.Contains(r.stdout, "(showing 2 of 57 keys)") {
		t.Errorf("check with 57 divergent keys:\n%s", r.stdout)
	}
}

// A node that could not be asked is listed and means not converged.
func TestCheckUnreachable(t *testing.T) {
	f := newFaultDaemon(t)
	res := converged
	res.Converged, res.Nodes = false, []string{"n1", "n2"}
	res.Errors = map[string]string{"n3": "connection refused"}
	f.checks = []api.CheckResult{res}
	r := run(t, f.addr(), "", "check")
	if r.code != 1 {
		t.Errorf("check with n3 unreachable: code %d; want 1", r.code)
	}
	checkLines(t, r.stdout, []string{
		"not converged: 1 node was not compared (the 2 compared hold identical data)",
		"n3: could not be asked: connection refused",
	})
}

// The daemon compares the members it sees alive and reports a failed one
// (say, across a partition) as skipped: not converged.
func TestCheckFailedMember(t *testing.T) {
	f := newFaultDaemon(t)
	f.members = []api.Member{{Name: "n1", Status: "alive"}, {Name: "n2", Status: "alive"},
		{Name: "n3", Status: "failed"}, {Name: "n4", Status: "left"}}
	res := converged
	res.Nodes = []string{"n1", "n2"}
	res.Converged = false
	res.Skipped = map[string]string{"n3": "failed"}
	res.Reasons = []string{"n3 failed"}
	f.checks = []api.CheckResult{res}
	r := run(t, f.addr(), "", "check")
	if r.code != 1 {
		t.Errorf("check with n3 failed: code %d; want 1", r.code)
	}
	checkLines(t, r.stdout, []string{
		"not converged: n3 failed (the 2 compared hold identical data)",
	})
	var got checkResult
	if err := json.Unmarshal([]byte(run(t, f.addr(), "", "check", "--json").stdout), &got); err != nil {
		t.Fatal(err)
	}
	if got.Converged || len(got.Skipped) != 1 || got.Skipped["n3"] != "failed" {
		t.Errorf("check --json with n3 failed = %+v; want not converged, n3 skipped", got)
	}
}

func TestCheckJSON(t *testing.T) {
	f := newFaultDaemon(t)
	f.checks = []api.CheckResult{diverged}
	r := run(t, f.addr(), "", "check", "--json")
	var got checkResult
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("check --json: %v\n%s", err, r.stdout)
	}
	if r.code != 1 || got.Converged || got.Divergent != 2 || len(got.Sample) != 2 || got.Sample[0].Versions["n2"] != "" || got.Waited != "" {
		t.Errorf("check --json: code %d, %+v", r.code, got)
	}
}

// --wait asks until converged and says how long it took.
func TestCheckWait(t *testing.T) {
	f := newFaultDaemon(t)
	f.checks = []api.CheckResult{diverged, diverged, converged}
	r := run(t, f.addr(), "", "check", "--wait", "1m")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "converged after ") || !strings.HasSuffix(r.stdout, ": 3 nodes hold identical data (12 keys)\n") {
		t.Errorf("check --wait: code %d, output %q; want converged after ...", r.code, r.stdout)
	}
	if n := f.timesChecked(); n != 3 {
		t.Errorf("check --wait asked %d times; want 3 (until converged)", n)
	}

	// Converged at once: one request.
	f.mu.Lock()
	f.checks, f.checked = []api.CheckResult{converged}, 0
	f.mu.Unlock()
	mustRun(t, f.addr(), "", "check", "--wait", "1m")
	if n := f.timesChecked(); n != 1 {
		t.Errorf("check --wait when converged asked %d times; want 1", n)
	}
}

// When --wait runs out, check reports the last result and exits 1.
func TestCheckWaitTimeout(t *testing.T) {
	f := newFaultDaemon(t)
	f.checks = []api.CheckResult{diverged}
	r := run(t, f.addr(), "", "check", "--wait", "300ms", "--json")
	var got checkResult
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("check --wait --json: %v\n%s", err, r.stdout)
	}
	if n := f.timesChecked(); r.code != 1 || got.Converged || got.Waited == "" || n < 2 {
		t.Errorf("check --wait 300ms when diverged: code %d, %d requests, %+v; want 1, at least 2, waited set", r.code, n, got)
	}
	r = run(t, f.addr(), "", "check", "--wait", "1ms")
	if r.code != 1 || !strings.Contains(r.stdout, "still not converged after ") {
		t.Errorf("check --wait 1ms when diverged: code %d, output:\n%s", r.code, r.stdout)
	}
}

func TestCheckBadInput(t *testing.T) {
	f := newFaultDaemon(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"check", "--wait", "-1s"}, "--wait -1s: want a positive duration"},
		{[]string{"check", "--wait", "soon"}, `invalid value "soon" for flag -wait`},
		{[]string{"check", "n1"}, `too many arguments ["n1"]`},
	} {
		r := run(t, f.addr(), "", tt.args...)
		if r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), tt.want) {
			t.Errorf("peerctl %q: code %d, err %v; want 1 and %q", tt.args, r.code, r.err, tt.want)
		}
	}
	if n := f.requests(); n != 0 {
		t.Errorf("bad check arguments made %d requests; want none", n)
	}
}

// A node that sees only itself across a partition compares only itself:
// the answer says so instead of "the 1 compared hold identical data".
func TestCheckOnlyOneCompared(t *testing.T) {
	f := newFaultDaemon(t)
	res := converged
	res.Converged, res.Nodes = false, []string{"n1"}
	res.Skipped = map[string]string{"n2": "unreachable from n1"}
	res.Reasons = []string{"n2 unreachable from n1: partitioned?"}
	f.checks = []api.CheckResult{res}
	r := run(t, f.addr(), "", "check")
	if r.code != 1 {
		t.Errorf("check through a cut-off n1: code %d; want 1", r.code)
	}
	checkLines(t, r.stdout, []string{
		"not converged: n2 unreachable from n1: partitioned? (only n1 could be compared)",
	})
}
