package cli

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/daemon"
	"github.com/peerctl/peerctl/internal/api"
)

// Wrong argument counts and bad flags are one-line errors that point at help.
func TestBadArgs(t *testing.T) {
	f := newFakeDaemon(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get"}, "missing arguments: usage: peerctl get KEY"},
		{[]string{"put", "k"}, "missing arguments: usage: peerctl put KEY VALUE|-"},
		{[]string{"get", "a", "b"}, `too many arguments ["b"]`},
		{[]string{"put", "k", "v", "w"}, `too many arguments ["w"]`},
		{[]string{"del"}, "missing arguments: usage: peerctl del KEY"},
		{[]string{"kill"}, "missing arguments: usage: peerctl kill NODE"},
		{[]string{"leave"}, "missing arguments: usage: peerctl leave NODE"},
		{[]string{"get", "--bogus", "k"}, "flag provided but not defined: -bogus (see `peerctl get --help`)"},
		{[]string{"--bogus", "members"}, "flag provided but not defined: -bogus (see `peerctl --help`)"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"completion", "tcsh"}, `unknown shell "tcsh"`},
	}
	for _, tt := range tests {
		r := run(t, f.addr(), "", tt.args...)
		if r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), tt.want) || strings.Contains(r.err.Error(), "\n") {
			t.Errorf("peerctl %q: code %d, err %v; want 1 and one line containing %q", tt.args, r.code, r.err, tt.want)
		}
		if r.stdout != "" {
			t.Errorf("peerctl %q printed to stdout:\n%s", tt.args, r.stdout)
		}
	}
	if n := f.requests(); n != 0 {
		t.Errorf("bad arguments made %d requests to the daemon; want none", n)
	}
}

// With no daemon at --addr, the error says so.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := run(t, addr, "", "members")
	if r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), "cannot reach a peerctl daemon at "+addr) {
		t.Errorf("members with no daemon: code %d, err %v", r.code, r.err)
	}
}

func TestKeygen(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		out := mustRun(t, "", "", "keygen")
		key := strings.TrimSuffix(out, "\n")
		b, err := base64.StdEncoding.DecodeString(key)
		if err != nil || len(b) != 32 {
			t.Fatalf("keygen = %q: decodes to %d bytes, err %v; want 32 bytes", out, len(b), err)
		}
		if seen[key] {
			t.Errorf("keygen printed %q twice", key)
		}
		seen[key] = true
		// The key is one agent --encrypt accepts.
		cfg := daemon.DefaultConfig()
		cfg.DataDir, cfg.EncryptKey = t.TempDir(), key
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate with keygen's key: %v", err)
		}
	}
	var got struct{ Key string }
	if err := json.Unmarshal([]byte(mustRun(t, "", "", "keygen", "--json")), &got); err != nil || got.Key == "" {
		t.Errorf("keygen --json: %+v, %v", got, err)
	}
}

func TestVersion(t *testing.T) {
	out := mustRun(t, "", "", "version")
	if !strings.HasPrefix(out, "peerctl "+api.Version+" (go") || !strings.Contains(out, "/") {
		t.Errorf("version = %q; want peerctl %s (goX, os/arch)", out, api.Version)
	}
	if out := mustRun(t, "", "", "--version"); !strings.Contains(out, api.Version) {
		t.Errorf("--version = %q; want it to contain %s", out, api.Version)
	}
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "complete -o bashdefault -o default -F _peerctl_complete peerctl",
		"zsh":  "compdef _peerctl peerctl",
		"fish": "complete -c peerctl",
	} {
		if out := mustRun(t, "", "", "completion", shell); !strings.Contains(out, want) {
			t.Errorf("completion %s lacks %q:\n%s", shell, want, out)
		}
	}
	// The scripts ask peerctl for candidates; for kill they are member
	// names. (urfave's default command and flag candidates read os.Args,
	// so they cannot be checked in-process.)
	f := newFakeDaemon(t)
	threeMembers(f)
	if out := mustRun(t, f.addr(), "", "kill", "--generate-bash-completion"); out != "n2\nn1\nn3\n" {
		t.Errorf("kill completion candidates = %q; want the member names", out)
	}
	if n := len(f.killed); n != 0 {
		t.Errorf("completion killed %d nodes", n)
	}
}

func TestKillLeave(t *testing.T) {
	f := newFakeDaemon(t)
	if out := mustRun(t, f.addr(), "", "kill", "n2"); out != "killed n2 (it exits at once, without leaving; the others will mark it failed)\n" {
		t.Errorf("kill n2 = %q", out)
	}
	if out := mustRun(t, f.addr(), "", "leave", "--json", "n3"); !strings.Contains(out, `"leaving"`) {
		t.Errorf("leave --json n3 = %q", out)
	}
	if len(f.killed) != 1 || f.killed[0] != "n2" || len(f.leaving) != 1 || f.leaving[0] != "n3" {
		t.Errorf("daemon saw kill %q, leave %q; want [n2], [n3]", f.killed, f.leaving)
	}
}

func TestInfo(t *testing.T) {
	f := newFakeDaemon(t)
	f.info = api.Info{
		Name: "n1", Addr: "127.0.0.1:7946", API: "127.0.0.1:7947", Version: "0.1.0", Profile: "local",
		StartedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Uptime: "1m0s",
		Members:     map[string]int{"alive": 3, "failed": 1},
		Store:       api.StoreStats{Keys: 12, Tombstones: 1, DiskBytes: 3 << 20, Digest: "abcd"},
		Replication: api.ReplicationStats{PushesSent: 7},
	}
	out := mustRun(t, f.addr(), "", "info")
	for _, want := range []string{"n1", "127.0.0.1:7946", "local", "3 alive, 1 failed", "12 live, 1 tombstone", "3.0 MiB", "abcd", "7 sent"} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, f.addr(), "", "info", "--json")), &got); err != nil {
		t.Fatal(err)
	}
	if got["name"] != "n1" || got["store"].(map[string]any)["keys"] != 12.0 || got["replication"].(map[string]any)["pushes_sent"] != 7.0 {
		t.Errorf("info --json = %v", got)
	}
}

func TestPreview(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", `""`},
		{"plain", "plain"},
		{"a\nb", `a\nb`},
		{strings.Repeat("é", 50), strings.Repeat("é", 37) + "..."},
		{"\xff\xfe", "(2 bytes, binary)"},
	} {
		if got := preview([]byte(tt.in)); got != tt.want {
			t.Errorf("preview(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
