package cli

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestReorderArgs(t *testing.T) {
	app := NewApp()
	tests := []struct{ in, want string }{
		{"get greeting --all", "get --all greeting"},
		{"get --all greeting", "get --all greeting"},
		{"get greeting --node n2 --json", "get --node n2 --json greeting"},
		{"members --addr 127.0.0.1:7951", "--addr 127.0.0.1:7951 members"},
		{"get greeting --addr=127.0.0.1:1 --all", "--addr=127.0.0.1:1 get --all greeting"},
		{"--addr 127.0.0.1:7951 get greeting", "--addr 127.0.0.1:7951 get greeting"},
		{"put key -- -v", "put -- key -v"},
		{"put key - --node n2", "put --node n2 key -"},
		{"put key -- --node n2", "put -- key --node n2"},
		{"put k v -- plain", "put k v plain"},
		{"delay n5 --by 100ms --jitter 20ms", "delay --by 100ms --jitter 20ms n5"},
		{"delay n1 --by -5ms", "delay --by -5ms n1"},
		{"partition n1,n2 / n3,n4,n5 --for 5s", "partition --for 5s n1,n2 / n3,n4,n5"},
		{"heal n5", "heal n5"},
		{"partition n1 n2 --for", "partition n1 n2 --for"}, // the missing value is reported
		{"get k --bogus", "get --bogus k"},                 // reported as undefined
		{"delay n1 --help", "delay --help"},
		{"check --wait 30s", "check --wait 30s"},
		{"memebrs --all", "memebrs --all"},     // unknown command: as typed
		{"--bogus members", "--bogus members"}, // unknown global flag: as typed
		{"agent --data-dir /tmp/pc/n3", "agent --data-dir /tmp/pc/n3"},
		{"get k --generate-bash-completion", "get k --generate-bash-completion"},
		// A command's own switch before its name, as if global.
		{"--json members", "members --json"},
		{"--addr 127.0.0.1:1 --json get k", "--addr 127.0.0.1:1 get --json k"},
		{"--json get k --all", "get --json --all k"},
		{"--node n2 get k", "--node n2 get k"}, // takes a value: as typed, reported
		{"--json version", "version --json"},
		{"--json agent --data-dir d", "--json agent --data-dir d"}, // not a switch of agent: as typed
	}
	for _, tt := range tests {
		in := append([]string{"peerctl"}, strings.Fields(tt.in)...)
		got := strings.Join(ReorderArgs(app, in)[1:], " ")
		if got != tt.want {
			t.Errorf("ReorderArgs(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
	// Subcommands: the subcommand's own flags move before its arguments.
	sub := &cli.App{Commands: []*cli.Command{{Name: "bench", Flags: []cli.Flag{&cli.IntFlag{Name: "n"}},
		Subcommands: []*cli.Command{{Name: "w", Flags: []cli.Flag{&cli.BoolFlag{Name: "x"}}}}}}}
	if got := ReorderArgs(sub, []string{"p", "bench", "--n", "3", "w", "a", "--x"}); !slices.Equal(got, []string{"p", "bench", "--n", "3", "w", "--x", "a"}) {
		t.Errorf("ReorderArgs(subcommand) = %q", got)
	}
}

func TestSuggest(t *testing.T) {
	cmds := NewApp().Commands
	for in, want := range map[string]string{"memebrs": "members", "member": "members", "chek": "check",
		"partiton": "partition", "hael": "heal", "xyzzy": "", "": "", "k": ""} {
		if got := suggest(cmds, in); got != want {
			t.Errorf("suggest(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestNormalizeAddr(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:7947": "127.0.0.1:7947", "http://127.0.0.1:7947": "127.0.0.1:7947",
		"http://127.0.0.1:7947/": "127.0.0.1:7947", "http://[::1]:7947": "[::1]:7947", "https://127.0.0.1:7947/": "https://127.0.0.1:7947"} {
		if got, err := normalizeAddr(in); got != want || err != nil {
			t.Errorf("normalizeAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"ftp://h:1": `scheme "ftp" is not supported`,
		"http://h:1/v1/members": "no path", "http://u@h:1": "no path, query or user"} {
		if _, err := normalizeAddr(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("normalizeAddr(%q) = %v; want an error containing %q", in, err, want)
		}
	}
}

// Every duration flag of every command says "add a unit" for a bare number.
func TestDurationWithoutUnit(t *testing.T) {
	f := newFakeDaemon(t)
	n := 0
	for _, c := range NewApp().Commands {
		for _, fl := range c.Flags {
			d, ok := fl.(*cli.DurationFlag)
			if !ok {
				continue
			}
			n++
			args := []string{c.Name, "--" + d.Name, "100"}
			r := run(t, f.addr(), "", args...)
			if r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), "--"+d.Name+" 100: a duration needs a unit: add a unit, e.g. 100ms") {
				t.Errorf("peerctl %q: code %d, err %v; want exit 1, add a unit, e.g. 100ms", args, r.code, r.err)
			}
		}
	}
	if n < 5 {
		t.Errorf("found %d duration flags; want at least 5 (check, pause --for, delay --by, agent...)", n)
	}
	if err := durationHint(nil, errors.New(`invalid value "soon" for flag -for: parse error`)); !strings.Contains(err.Error(), "soon") || strings.Contains(err.Error(), "unit") {
		t.Errorf("durationHint of a non-number = %v; want it unchanged", err)
	}
}

func TestAddrFlagForms(t *testing.T) {
	f := newFakeDaemon(t)
	for _, args := range [][]string{
		{"--addr", "http://" + f.addr(), "members"},
		{"members", "--addr", f.addr()},
		{"members", "--addr", "http://" + f.addr() + "/"},
	} {
		if r := run(t, "", "", args...); r.code != 0 {
			t.Errorf("peerctl %q: code %d, err %v; want 0", args, r.code, r.err)
		}
	}
	r := run(t, "", "", "members", "--addr", "https://"+f.addr())
	if r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), "the daemon serves plain HTTP: use --addr http://") {
		t.Errorf("members --addr https://... to a plain daemon: code %d, err %v; want 1, the daemon serves plain HTTP", r.code, r.err)
	}
	if r := run(t, "", "", "memebrs"); r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), "Did you mean members?") {
		t.Errorf("peerctl memebrs: code %d, err %v; want 1, Did you mean members?", r.code, r.err)
	}
}

// HLC timestamps are JSON strings in every --json output: JavaScript
// numbers lose precision above 2^53, and an HLC timestamp is above it.
func TestJSONTimestampsAreStrings(t *testing.T) {
	f := newFakeDaemon(t)
	mustRun(t, f.addr(), "", "put", "txt", "v")
	for _, args := range [][]string{{"get", "txt", "--json"}, {"put", "k2", "v", "--json"}, {"del", "k2", "--json"}} {
		var got map[string]any
		out := mustRun(t, f.addr(), "", args...)
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		if s, ok := got["ts"].(string); !ok || s == "" || s == "0" {
			t.Errorf("peerctl %q: ts = %#v; want a non-zero JSON string: %s", args, got["ts"], out)
		}
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, f.addr(), "", "keys", "--json")), &list); err != nil || len(list) == 0 {
		t.Fatalf("keys --json: %v, %v", list, err)
	}
	if _, ok := list[0]["ts"].(string); !ok {
		t.Errorf("keys --json: ts = %#v; want a JSON string", list[0]["ts"])
	}
}
