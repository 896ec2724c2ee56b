package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

// faultDaemon adds the fault and check endpoints of daemon/faultsapi.go and
// daemon/check.go to a fakeDaemon, which serves the rest. It records every
// fault request and heal target.
type faultDaemon struct {
	*fakeDaemon
	srv *httptest.Server

	mu       sync.Mutex // guards the fields below
	injected []api.FaultRequest
	result   func(api.FaultRequest) api.FaultResult // POST /v1/faults; nil: every named node gets a rule
	reject   string                                 // if set, POST /v1/faults answers 400 with it
	faults   api.FaultsView                         // GET /v1/faults?all=1
	local    map[string][]api.Rule                  // GET /v1/faults[?node=], by node ("" the daemon)
	healed   api.HealResult                         // DELETE /v1/faults answer
	healErr  string                                 // if set, DELETE /v1/faults answers 404 with it
	targets  []string                               // ?target= of each heal
	checks   []api.CheckResult                      // GET /v1/check answers in turn; the last repeats
	checked  int                                    // GET /v1/check calls
	calls    int                                    // requests to the fault and check endpoints
}

func newFaultDaemon(tb testing.TB) *faultDaemon {
	tb.Helper()
	f := &faultDaemon{fakeDaemon: newFakeDaemon(tb), local: map[string][]api.Rule{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		var req api.FaultRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		f.injected = append(f.injected, req)
		if f.reject != "" {
			reply(w, http.StatusBadRequest, map[string]string{"error": f.reject})
			return
		}
		if f.result != nil {
			reply(w, http.StatusOK, f.result(req))
			return
		}
		res := api.FaultResult{ID: "f-0000beef"}
		for _, n := range append(req.Nodes, flatten(req.Groups)...) {
			res.Nodes = append(res.Nodes, api.NodeFaults{Node: n,
				Rules: []api.Rule{{ID: res.ID, Kind: api.FaultPause, Reason: req.Reason}}})
		}
		reply(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("all") == "1" {
			reply(w, http.StatusOK, f.faults)
			return
		}
		reply(w, http.StatusOK, f.local[r.URL.Query().Get("node")])
	})
	mux.HandleFunc("DELETE /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		f.targets = append(f.targets, r.URL.Query().Get("target"))
		if f.healErr != "" {
			reply(w, http.StatusNotFound, map[string]string{"error": f.healErr})
			return
		}
		reply(w, http.StatusOK, f.healed)
	})
	mux.HandleFunc("GET /v1/check", func(w http.ResponseWriter, r *http.Request) {
		i := min(f.checked, len(f.checks)-1)
		f.checked++
		reply(w, http.StatusOK, f.checks[i])
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.calls++
			mux.ServeHTTP(w, r)
			return
		}
		f.fakeDaemon.srv.Config.Handler.ServeHTTP(w, r)
	}))
	tb.Cleanup(f.srv.Close)
	return f
}

func (f *faultDaemon) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// requests counts the requests to every endpoint.
func (f *faultDaemon) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls + f.fakeDaemon.requests()
}

// lastFault is the latest fault request; it fails the test if there was
// none.
func (f *faultDaemon) lastFault(tb testing.TB) api.FaultRequest {
	tb.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.injected) == 0 {
		tb.Fatal("no fault request reached the daemon")
	}
	return f.injected[len(f.injected)-1]
}

// timesChecked is how many GET /v1/check requests the fake answered.
func (f *faultDaemon) timesChecked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checked
}

// healTargets is the ?target= of each heal request.
func (f *faultDaemon) healTargets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.targets...)
}

func flatten(groups [][]string) []string {
	var out []string
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// The three ways to write a partition's sides give the same groups; flags
// work before and after the sides; Reason is the command as typed.
func TestPartitionSyntaxes(t *testing.T) {
	two := [][]string{{"n1", "n2"}, {"n3", "n4", "n5"}}
	tests := []struct {
		args   []string
		groups [][]string
		reason string
	}{
		{[]string{"n1,n2", "/", "n3,n4,n5"}, two, "partition n1,n2 / n3,n4,n5"},
		{[]string{"n1,n2", "n3,n4,n5"}, two, "partition n1,n2 n3,n4,n5"},
		{[]string{"n1,n2/n3,n4,n5"}, two, "partition n1,n2/n3,n4,n5"},
		{[]string{"n1,n2 / n3,n4,n5"}, two, "partition n1,n2 / n3,n4,n5"},
		{[]string{"n1,", "n2", "/", "n3", "n4,n5"}, two, "partition n1, n2 / n3 n4,n5"},
		{[]string{"n1,n2/", "n3,n4,n5"}, two, "partition n1,n2/ n3,n4,n5"},
		{[]string{"n1", "/", "n2", "/", "n3"}, [][]string{{"n1"}, {"n2"}, {"n3"}}, "partition n1 / n2 / n3"},
		{[]string{"n1", "n2", "n3"}, [][]string{{"n1"}, {"n2"}, {"n3"}}, "partition n1 n2 n3"},
	}
	for _, tt := range tests {
		f := newFaultDaemon(t)
		mustRun(t, f.addr(), "", append([]string{"partition"}, tt.args...)...)
		req := f.lastFault(t)
		if req.Kind != api.ReqPartition || !reflect.DeepEqual(req.Groups, tt.groups) || req.Nodes != nil {
			t.Errorf("partition %q sent kind %q groups %q nodes %q; want partition %q", tt.args, req.Kind, req.Groups, req.Nodes, tt.groups)
		}
		if req.Reason != tt.reason {
			t.Errorf("partition %q sent reason %q; want %q", tt.args, req.Reason, tt.reason)
		}
	}

	// Flags before and after the sides.
	for _, args := range [][]string{
		{"partition", "--for", "30s", "--seed", "7", "n1,n2", "/", "n3,n4,n5"},
		{"partition", "n1,n2", "/", "n3,n4,n5", "--for", "30s", "--seed=7"},
		{"partition", "--for=30s", "n1,n2/n3,n4,n5", "--seed", "7"},
	} {
		f := newFaultDaemon(t)
		mustRun(t, f.addr(), "", args...)
		req := f.lastFault(t)
		if !reflect.DeepEqual(req.Groups, two) || req.For != 30*time.Second || req.Seed != 7 {
			t.Errorf("peerctl %q sent groups %q for %v seed %d; want %q, 30s, 7", args, req.Groups, req.For, req.Seed, two)
		}
		if want := strings.Join(args, " "); req.Reason != want {
			t.Errorf("peerctl %q sent reason %q; want %q", args, req.Reason, want)
		}
	}
}

// Each fault command sends the request its flags describe.
func TestFaultRequests(t *testing.T) {
	tests := []struct {
		args []string
		want api.FaultRequest
	}{
		{[]string{"pause", "n2"}, api.FaultRequest{Kind: "pause", Nodes: []string{"n2"}}},
		{[]string{"pause", "n2", "n3", "--for", "10s"}, api.FaultRequest{Kind: "pause", Nodes: []string{"n2", "n3"}, For: 10 * time.Second}},
		{[]string{"pause", "--seed", "9", "n2,n3"}, api.FaultRequest{Kind: "pause", Nodes: []string{"n2", "n3"}, Seed: 9}},
		{[]string{"isolate", "n3", "--for", "1m"}, api.FaultRequest{Kind: "isolate", Nodes: []string{"n3"}, For: time.Minute}},
		{[]string{"delay", "n1", "--by", "100ms"}, api.FaultRequest{Kind: "delay", Nodes: []string{"n1"}, Delay: 100 * time.Millisecond}},
		{[]string{"delay", "--by", "100ms", "--jitter", "20ms", "--to", "n2,n3", "--for", "30s", "--seed", "42", "n1"},
			api.FaultRequest{Kind: "delay", Nodes: []string{"n1"}, Peers: []string{"n2", "n3"},
				Delay: 100 * time.Millisecond, Jitter: 20 * time.Millisecond, For: 30 * time.Second, Seed: 42}},
		{[]string{"delay", "n1", "--by", "50ms", "--to", "n2", "--to", "n3"},
			api.FaultRequest{Kind: "delay", Nodes: []string{"n1"}, Peers: []string{"n2", "n3"}, Delay: 50 * time.Millisecond}},
		{[]string{"delay", "--all", "--by", "30ms"}, api.FaultRequest{Kind: "delay", Nodes: []string{"*"}, Delay: 30 * time.Millisecond}},
		{[]string{"loss", "n2", "--rate", "0.2"}, api.FaultRequest{Kind: "loss", Nodes: []string{"n2"}, Rate: 0.2}},
		{[]string{"loss", "n2", "--rate", "0.5", "--to", "n1", "--seed", "3", "--for", "5s"},
			api.FaultRequest{Kind: "loss", Nodes: []string{"n2"}, Peers: []string{"n1"}, Rate: 0.5, Seed: 3, For: 5 * time.Second}},
		{[]string{"loss", "--rate", "1", "--all"}, api.FaultRequest{Kind: "loss", Nodes: []string{"*"}, Rate: 1}},
	}
	for _, tt := range tests {
		f := newFaultDaemon(t)
		mustRun(t, f.addr(), "", tt.args...)
		got := f.lastFault(t)
		tt.want.Reason = strings.Join(tt.args, " ")
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("peerctl %q sent\n%+v; want\n%+v", tt.args, got, tt.want)
		}
	}
}

// Bad input is one line naming the problem, and nothing reaches the daemon.
func TestFaultBadInput(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"partition"}, "missing arguments: usage: peerctl partition"},
		{[]string{"partition", "n1,n2"}, `partition "n1,n2" has one side`},
		{[]string{"partition", "n1,n2/"}, `side 2 is empty`},
		{[]string{"partition", "n1", "/", "/", "n2"}, `side 2 is empty`},
		{[]string{"partition", "n1,n2", "/", "n2,n3"}, `node "n2" is on two sides`},
		{[]string{"partition", "n1,,n2", "n3"}, `empty node name in "n1,,n2"`},
		{[]string{"partition", "n1", "n2", "--for"}, "flag needs an argument: -for (see `peerctl partition --help`)"},
		{[]string{"partition", "n1", "n2", "--for", "soon"}, `invalid value "soon" for flag -for`},
		{[]string{"pause"}, "missing arguments: usage: peerctl pause NODE [NODE...]"},
		{[]string{"pause", "n1", "n1"}, `node "n1" is named twice`},
		{[]string{"pause", "--bogus", "n1"}, "flag provided but not defined: -bogus (see `peerctl pause --help`)"},
		{[]string{"pause", "n1", "--bogus"}, "flag provided but not defined: -bogus (see `peerctl pause --help`)"},
		{[]string{"pause", "n1", "--for", "-1s"}, "--for -1s: want a duration above 0 and at most 168h0m0s"},
		{[]string{"pause", "n1", "--for", "0s"}, "--for 0s: want a duration above 0"},
		{[]string{"pause", "n1", "--for", "10000h"}, "--for 10000h0m0s: want a duration above 0 and at most 168h0m0s"},
		{[]string{"isolate", "--for", "5s"}, "missing arguments: usage: peerctl isolate NODE"},
		{[]string{"delay", "n1"}, "delay needs --by DURATION"},
		{[]string{"delay", "n1", "--jitter", "5ms"}, "delay needs --by DURATION"},
		{[]string{"delay", "n1", "--by", "0s"}, "--by 0s: want a delay above 0 and at most 1m0s"},
		{[]string{"delay", "n1", "--by", "2m"}, "--by 2m0s: want a delay above 0 and at most 1m0s"},
		{[]string{"delay", "n1", "--by", "10ms", "--jitter", "20ms"}, "--jitter 20ms: want 0 to --by (10ms)"},
		{[]string{"delay", "--by", "10ms"}, "missing arguments: usage: peerctl delay"},
		{[]string{"delay", "--all", "n1", "--by", "10ms"}, "name nodes or give --all, not both"},
		{[]string{"delay", "n1", "--by", "10ms", "--to", "n2,,n3"}, `--to: empty node name`},
		{[]string{"loss", "n1", "--rate", "1.5"}, "--rate 1.5: want a probability above 0 and at most 1"},
		{[]string{"loss", "n1", "--rate", "0"}, "--rate 0: want a probability above 0 and at most 1"},
		{[]string{"loss", "n1", "--rate", "-0.1"}, "--rate -0.1: want a probability"},
		{[]string{"loss", "n1"}, "loss needs --rate RATE"},
		{[]string{"loss", "n1", "--rate", "lots"}, `invalid value "lots" for flag -rate`},
		{[]string{"heal", "n1", "--all"}, "give one, not both"},
		{[]string{"heal", "n1", "n2"}, `too many arguments ["n2"]`},
		{[]string{"heal", "--bogus"}, "flag provided but not defined: -bogus (see `peerctl heal --help`)"},
		{[]string{"faults", "n1"}, `too many arguments ["n1"]`},
	}
	for _, tt := range tests {
		f := newFaultDaemon(t)
		r := run(t, f.addr(), "", tt.args...)
		if r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), tt.want) || strings.Contains(r.err.Error(), "\n") {
			t.Errorf("peerctl %q: code %d, err %v; want 1 and one line containing %q", tt.args, r.code, r.err, tt.want)
		}
		if r.stdout != "" {
			t.Errorf("peerctl %q printed to stdout:\n%s", tt.args, r.stdout)
		}
		if n := f.requests(); n != 0 {
			t.Errorf("peerctl %q made %d requests to the daemon; want none", tt.args, n)
		}
	}
}

// --help after the arguments prints the command's help and sends nothing.
func TestFaultHelpAfterArgs(t *testing.T) {
	f := newFaultDaemon(t)
	want := mustRun(t, f.addr(), "", "delay", "--help")
	if got := mustRun(t, f.addr(), "", "delay", "n1", "--help"); got != want {
		t.Errorf("delay n1 --help printed\n%s\nwant the same as delay --help:\n%s", got, want)
	}
	if !strings.Contains(want, "both directions") {
		t.Errorf("delay --help does not explain that it acts in both directions:\n%s", want)
	}
	if n := f.requests(); n != 0 {
		t.Errorf("--help made %d requests; want none", n)
	}
}

// A request the daemon rejects (say, an unknown node) is one line.
func TestFaultDaemonRejects(t *testing.T) {
	f := newFaultDaemon(t)
	f.reject = `unknown node "n9": ` + "`peerctl members` lists the nodes"
	r := run(t, f.addr(), "", "pause", "n9")
	if r.code != 1 || r.err == nil || r.err.Error() != "pause: "+f.reject {
		t.Errorf("pause n9: code %d, err %v; want 1 and %q", r.code, r.err, "pause: "+f.reject)
	}
}

func partitionResult(req api.FaultRequest) api.FaultResult {
	rule := func(peers ...string) []api.Rule {
		return []api.Rule{{ID: "f-1a2b3c4d", Kind: api.FaultDrop, Peers: peers, Reason: req.Reason,
			Since: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Nodes: []string{"n1", "n2", "n3"}}}
	}
	return api.FaultResult{ID: "f-1a2b3c4d", Nodes: []api.NodeFaults{
		{Node: "n2", Rules: rule("n3")},
		{Node: "n1", Rules: rule("n3")},
		{Node: "n3", Rules: rule("n1", "n2")},
	}}
}

// One line per node: NODE, fault ID, what it now does; then how to undo.
func TestFaultOutput(t *testing.T) {
	f := newFaultDaemon(t)
	f.result = partitionResult
	out := mustRun(t, f.addr(), "", "partition", "n1,n2", "/", "n3")
	want := []string{
		"n1 f-1a2b3c4d drops all traffic to n3",
		"n2 f-1a2b3c4d drops all traffic to n3",
		"n3 f-1a2b3c4d drops all traffic to n1,n2",
		"fault f-1a2b3c4d on 3 nodes until healed; undo with `peerctl heal f-1a2b3c4d`",
	}
	checkLines(t, out, want)

	out = mustRun(t, f.addr(), "", "partition", "n1,n2", "/", "n3", "--for", "30s")
	if !strings.Contains(out, "fault f-1a2b3c4d on 3 nodes for 30s;") {
		t.Errorf("partition --for 30s output lacks the duration:\n%s", out)
	}
}

// A node that is down is on its line and told about: the fault is cluster
// state, so the command succeeds (issue 8: "n1 is down: it will apply this
// when it returns").
func TestFaultDownNode(t *testing.T) {
	f := newFaultDaemon(t)
	f.result = func(req api.FaultRequest) api.FaultResult {
		res := partitionResult(req)
		res.Nodes[2].Error = "dial tcp 127.0.0.1:7967: connection refused"
		return res
	}
	r := run(t, f.addr(), "", "partition", "n1,n2", "/", "n3")
	if r.code != 0 || r.err != nil {
		t.Errorf("partition with n3 down: code %d, err %v; want 0", r.code, r.err)
	}
	checkLines(t, r.stdout, []string{
		"n1 f-1a2b3c4d drops all traffic to n3",
		"n2 f-1a2b3c4d drops all traffic to n3",
		"n3 f-1a2b3c4d when back: drops all traffic to n1,n2",
		"n3 is down: it will apply this when it returns",
		"fault f-1a2b3c4d on 3 nodes until healed; undo with `peerctl heal f-1a2b3c4d`",
	})

	r = run(t, f.addr(), "", "partition", "--json", "n1,n2", "/", "n3")
	var got faultResult
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("partition --json: %v\n%s", err, r.stdout)
	}
	if r.code != 0 || len(got.Nodes) != 3 || got.Nodes[2].Error == "" {
		t.Errorf("partition --json with n3 down: code %d, %+v", r.code, got)
	}
}

func TestFaultJSON(t *testing.T) {
	f := newFaultDaemon(t)
	f.result = partitionResult
	out := mustRun(t, f.addr(), "", "partition", "n1,n2", "/", "n3", "--json")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("partition --json: %v\n%s", err, out)
	}
	if got["id"] != "f-1a2b3c4d" || got["reason"] != "partition n1,n2 / n3 --json" {
		t.Errorf("partition --json = %v; want id f-1a2b3c4d and the command as reason", got)
	}
	nodes := got["nodes"].([]any)
	if len(nodes) != 3 || nodes[0].(map[string]any)["node"] != "n1" {
		t.Fatalf("partition --json nodes = %v; want n1, n2, n3", nodes)
	}
	r := nodes[2].(map[string]any)["rules"].([]any)[0].(map[string]any)
	if r["kind"] != "drop" || r["effect"] != "drops all traffic to n1,n2" || fmt.Sprint(r["peers"]) != "[n1 n2]" {
		t.Errorf("n3's rule = %v", r)
	}
	if _, ok := r["until"]; ok {
		t.Errorf("rule until healed has an until: %v", r)
	}
}

func TestHeal(t *testing.T) {
	f := newFaultDaemon(t)
	part := api.FaultRecord{ID: "f-1", Request: api.FaultRequest{Kind: api.ReqPartition, Groups: [][]string{{"n1"}, {"n2", "n3"}}, Reason: "partition n1 / n2,n3"}}
	loss := api.FaultRecord{ID: "f-2", Request: api.FaultRequest{Kind: api.ReqLoss, Nodes: []string{"n1"}, Rate: 0.2}}
	f.healed = api.HealResult{Healed: []api.FaultRecord{part, loss},
		Nodes: []api.NodeFaults{{Node: "n1"}, {Node: "n2"}, {Node: "n4", Error: "connection refused"}}}
	out := mustRun(t, f.addr(), "", "heal", "n1")
	checkLines(t, out, []string{
		"healed f-1 partition n1 / n2,n3",
		"healed f-2 loss 20% n1",
		"n4 is down: it will lift this when it returns",
		"removed 2 faults that named n1 from the cluster; nodes that declared each other failed rejoin now",
	})
	mustRun(t, f.addr(), "", "heal", "--all")
	mustRun(t, f.addr(), "", "heal")
	mustRun(t, f.addr(), "", "heal", "f-1")
	if want := []string{"n1", "", "", "f-1"}; !reflect.DeepEqual(f.healTargets(), want) {
		t.Errorf("heal n1, heal --all, heal, heal f-1 sent targets %q; want %q", f.healTargets(), want)
	}

	f.healed = api.HealResult{Healed: []api.FaultRecord{loss}, Nodes: []api.NodeFaults{{Node: "n1"}}}
	checkLines(t, mustRun(t, f.addr(), "", "heal", "f-2"), []string{
		"healed f-2 loss 20% n1",
		"removed fault f-2 from the cluster; nodes that declared each other failed rejoin now",
	})

	f.healed = api.HealResult{Nodes: []api.NodeFaults{{Node: "n1"}, {Node: "n2"}}}
	if out := mustRun(t, f.addr(), "", "heal", "n2"); out != "no faults in force that named n2\n" {
		t.Errorf("heal with nothing to heal:\n%s", out)
	}
	f.healed = api.HealResult{Healed: []api.FaultRecord{part}, Nodes: []api.NodeFaults{{Node: "n3", Error: "refused"}}}
	var got healOutput
	if err := json.Unmarshal([]byte(mustRun(t, f.addr(), "", "heal", "--json")), &got); err != nil || len(got.Healed) != 1 ||
		got.Healed[0].Fault != "partition n1 / n2,n3" || !reflect.DeepEqual(got.Down, []string{"n3"}) {
		t.Errorf("heal --json = %+v, %v", got, err)
	}
}

// A heal the daemon refuses (an unknown node or ID) exits 1 with its reason.
func TestHealUnknown(t *testing.T) {
	f := newFaultDaemon(t)
	f.healErr = `no fault or node "n9": ` + "`peerctl faults` lists the faults, `peerctl members` the nodes"
	r := run(t, f.addr(), "", "heal", "n9")
	if r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), `no fault or node "n9"`) {
		t.Errorf("heal n9: code %d, err %v; want 1 naming n9", r.code, r.err)
	}
}

func TestFaultsList(t *testing.T) {
	f := newFaultDaemon(t)
	if out := mustRun(t, f.addr(), "", "faults"); out != "no faults in force\n" {
		t.Errorf("faults with none = %q; want %q", out, "no faults in force\n")
	}
	since := time.Now().Add(-time.Minute).Truncate(time.Second)
	until := since.Add(time.Hour)
	f.faults = api.FaultsView{
		Faults: []api.FaultStatus{
			{FaultRecord: api.FaultRecord{ID: "f-1", Created: since, Request: api.FaultRequest{Kind: api.ReqPause, Nodes: []string{"n1"}, Reason: "pause n1"}},
				Named: []string{"n1"}, Applied: []string{"n1"}},
			{FaultRecord: api.FaultRecord{ID: "f-2", Created: since, Until: until,
				Request: api.FaultRequest{Kind: api.ReqDelay, Nodes: []string{"n1"}, Delay: 100 * time.Millisecond, For: time.Hour, Reason: "delay n1 --by 100ms --for 1h"}},
				Named: []string{"n1"}, Applied: []string{"n2"}, Pending: []string{"n1", "n3"}},
		},
		Nodes: []api.NodeFaults{{Node: "n1"}, {Node: "n2"}, {Node: "n3", Error: "connection refused"}},
	}
	out := mustRun(t, f.addr(), "", "faults")
	s, u := clock(since, time.Now()), clock(until, time.Now())
	checkLines(t, out, []string{
		"ID FAULT SINCE UNTIL APPLIED PENDING REASON",
		"f-1 pause n1 " + s + " until healed n1 - pause n1",
		"f-2 delay n1 by 100ms " + s + " " + u + " n2 n1,n3 delay n1 --by 100ms --for 1h",
		"n3: could not be asked (down?): connection refused",
	})

	var got faultsList
	if err := json.Unmarshal([]byte(mustRun(t, f.addr(), "", "faults", "--json")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Faults) != 2 || got.Faults[0].Until != nil || got.Faults[1].Until == nil || got.Faults[1].Kind != "delay" ||
		!reflect.DeepEqual(got.Faults[1].Pending, []string{"n1", "n3"}) || got.Faults[0].Pending == nil || len(got.Nodes) != 3 || got.Nodes[2].Error == "" {
		t.Errorf("faults --json = %+v", got)
	}
}

// members shows a FAULT column, and --json a fault field, only when a
// member has faults.
func TestMembersFault(t *testing.T) {
	f := newFakeDaemon(t)
	threeMembers(f)
	f.members[0].Fault = "cut"
	out := mustRun(t, f.addr(), "", "members")
	checkLines(t, out, []string{
		"NAME ADDR API STATUS FAULT TAGS",
		"n1 127.0.0.1:7946 127.0.0.1:7947 alive - role=db,ver=0.1.0",
		"n2 127.0.0.1:7956 127.0.0.1:7957 failed cut ver=0.1.0",
		"n3 127.0.0.1:7966 127.0.0.1:7967 alive -",
	})
	var got []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, f.addr(), "", "members", "--json")), &got); err != nil {
		t.Fatal(err)
	}
	if got[1]["fault"] != "cut" {
		t.Errorf("n2 in members --json = %v; want fault cut", got[1])
	}
	if _, ok := got[0]["fault"]; ok {
		t.Errorf("n1 in members --json has a fault: %v", got[0])
	}
}

// info shows the node's own rules, asked of the same node as the rest.
func TestInfoFaults(t *testing.T) {
	f := newFaultDaemon(t)
	f.info = api.Info{Name: "n2"}
	if out := mustRun(t, f.addr(), "", "info"); !strings.Contains(out, "faults:") || !strings.Contains(out, "none") {
		t.Errorf("info with no faults:\n%s\nwant faults: none", out)
	}
	f.local["n2"] = []api.Rule{{ID: "f-9", Kind: api.FaultLoss, Rate: 0.2, Peers: []string{"n1"}, Reason: "loss n2 --rate 0.2 --to n1"}}
	out := mustRun(t, f.addr(), "", "info", "--node", "n2")
	if !strings.Contains(out, "f-9 loses 20% of traffic to n1, until healed (loss n2 --rate 0.2 --to n1)") {
		t.Errorf("info --node n2 lacks its fault:\n%s", out)
	}
	var got nodeInfo
	if err := json.Unmarshal([]byte(mustRun(t, f.addr(), "", "info", "--node", "n2", "--json")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Faults) != 1 || got.Faults[0].Kind != "loss" || got.Faults[0].Rate != 0.2 {
		t.Errorf("info --json faults = %+v", got.Faults)
	}

	// A daemon that cannot list faults still describes itself.
	plain := newFakeDaemon(t)
	out = mustRun(t, plain.addr(), "", "info")
	if !strings.Contains(out, "faults:") || !strings.Contains(out, "unknown (") {
		t.Errorf("info when faults cannot be read:\n%s", out)
	}
}

// checkLines compares out, line by line, with want, each line as
// space-separated fields.
func checkLines(tb testing.TB, out string, want []string) {
	tb.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(want) {
		tb.Errorf("got %d lines; want %d:\n%s", len(lines), len(want), out)
		return
	}
	for i, l := range lines {
		if got := strings.Join(strings.Fields(l), " "); got != want[i] {
			tb.Errorf("line %d = %q; want %q", i, got, want[i])
		}
	}
}
