package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/daemon"
)

// fakeAgent stands in for daemon.Create and the *daemon.Agent it returns.
// Unless err is set, create calls OnLeave at once, as the daemon does after
// a leave requested over the API, so the agent command returns.
type fakeAgent struct {
	cfgs            []*daemon.Config // each config create was given
	err             error            // returned by create
	noLeave         bool             // create does not call OnLeave
	leaves, shutdns int
}

func (f *fakeAgent) create(cfg *daemon.Config) (agent, error) {
	f.cfgs = append(f.cfgs, cfg)
	if f.err != nil {
		return nil, f.err
	}
	if !f.noLeave {
		cfg.OnLeave()
	}
	return f, nil
}

func (f *fakeAgent) Leave() error    { f.leaves++; return nil }
func (f *fakeAgent) Shutdown() error { f.shutdns++; return nil }

func (f *fakeAgent) last(tb testing.TB) *daemon.Config {
	tb.Helper()
	if len(f.cfgs) == 0 {
		tb.Fatal("the agent was not created")
	}
	return f.cfgs[len(f.cfgs)-1]
}

func runAgentCmd(tb testing.TB, f *fakeAgent, ctx context.Context, args ...string) result {
	tb.Helper()
	return runApp(tb, newApp(f.create), ctx, "", "", append([]string{"agent"}, args...)...)
}

// Bad flag values fail with one line naming the flag, before anything
// starts or is written.
func TestAgentBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--profile", "moon"}, `--profile "moon": want local, lan or wan`},
		{[]string{"--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"--log-format", "xml"}, `--log-format "xml"`},
		{[]string{"--bind", "nope"}, `--bind "nope"`},
		{[]string{"--encrypt", "short"}, "--encrypt"},
		{[]string{"--tombstone-ttl", "-1h"}, "--tombstone-ttl"},
		{[]string{"--tombstone-ttl", "soon"}, "tombstone-ttl"},
		{[]string{"--api", "0.0.0.0:17999"}, "no --token is set"},
		{[]string{"--api", "0.0.0.0:17999", "--token", "a b"}, "--token contains white space"},
		{[]string{"--api-tls-cert", "c.pem"}, "--api-tls-cert and --api-tls-key go together"},
		{[]string{"--api-tls-cert", "none.pem", "--api-tls-key", "none.pem"}, "--api-tls-cert none.pem"},
	} {
		dir := t.TempDir()
		f := &fakeAgent{}
		r := runAgentCmd(t, f, context.Background(), append([]string{"--data-dir", dir}, tt.args...)...)
		if r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), tt.want) || strings.Contains(r.err.Error(), "\n") {
			t.Errorf("agent %q: code %d, err %v; want 1 and one line containing %q", tt.args, r.code, r.err, tt.want)
		}
		if len(f.cfgs) != 0 {
			t.Errorf("agent %q started the daemon", tt.args)
		}
		if _, err := os.Stat(filepath.Join(dir, savedFile)); err == nil {
			t.Errorf("agent %q wrote %s", tt.args, savedFile)
		}
	}
	r := runAgentCmd(t, &fakeAgent{}, context.Background())
	if r.err == nil || !strings.Contains(r.err.Error(), "--data-dir is required") {
		t.Errorf("agent without --data-dir: err %v", r.err)
	}
}

// Create's error (port in use, locked dir) is returned as it is, and
// nothing is saved.
func TestAgentCreateError(t *testing.T) {
	dir := t.TempDir()
	want := errors.New(`--api 127.0.0.1:7947: address already in use`)
	r := runAgentCmd(t, &fakeAgent{err: want}, context.Background(), "--data-dir", dir)
	if r.err != want {
		t.Errorf("agent: err %v; want %v", r.err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, savedFile)); err == nil {
		t.Errorf("a failed start wrote %s", savedFile)
	}
}

// The flags reach the daemon's config.
func TestAgentConfig(t *testing.T) {
	dir := t.TempDir()
	f := &fakeAgent{}
	key := strings.TrimSpace(mustRun(t, "", "", "keygen"))
	mustRunAgent(t, f, "--data-dir", dir, "--name", "n1", "--bind", "127.0.0.1:17946",
		"--advertise", "10.0.0.1:17946", "--api", "127.0.0.1:17947", "--join", "127.0.0.1:1", "--join", "127.0.0.1:2",
		"--encrypt", key, "--profile", "lan", "--sync-writes", "--tombstone-ttl", "1h")
	cfg := f.last(t)
	if cfg.Name != "n1" || cfg.Bind != "127.0.0.1:17946" || cfg.Advertise != "10.0.0.1:17946" ||
		cfg.API != "127.0.0.1:17947" || !slices.Equal(cfg.Join, []string{"127.0.0.1:1", "127.0.0.1:2"}) ||
		cfg.EncryptKey != key || cfg.Profile != "lan" || !cfg.SyncWrites || cfg.TombstoneTTL != time.Hour ||
		cfg.DataDir != dir || cfg.Logger == nil {
		t.Errorf("config = %+v", cfg)
	}
	def := daemon.DefaultConfig()
	if cfg.SyncInterval != def.SyncInterval || cfg.ReconnectInterval != def.ReconnectInterval {
		t.Errorf("config lost DefaultConfig's intervals: %+v", cfg)
	}
}

func mustRunAgent(tb testing.TB, f *fakeAgent, args ...string) {
	tb.Helper()
	if r := runAgentCmd(tb, f, context.Background(), args...); r.err != nil {
		tb.Fatalf("agent %q: %v", args, r.err)
	}
}

// A node restarted with only --data-dir comes back with the name, ports,
// profile and join list of its last start, but not the key; explicit flags
// and environment variables override, and the file follows them.
func TestAgentRestartFromSavedConfig(t *testing.T) {
	dir := t.TempDir()
	f := &fakeAgent{}
	key := strings.TrimSpace(mustRun(t, "", "", "keygen"))
	mustRunAgent(t, f, "--data-dir", dir, "--name", "n2", "--bind", "127.0.0.1:17956",
		"--api", "127.0.0.1:17957", "--join", "127.0.0.1:17946", "--profile", "lan", "--encrypt", key)

	b, err := os.ReadFile(filepath.Join(dir, savedFile))
	if err != nil {
		t.Fatalf("first start saved no config: %v", err)
	}
	if strings.Contains(string(b), key) || strings.Contains(string(b), "encrypt") {
		t.Errorf("%s holds the key:\n%s", savedFile, b)
	}
	var saved savedConfig
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	want := savedConfig{Name: "n2", Bind: "127.0.0.1:17956", API: "127.0.0.1:17957", Profile: "lan", Join: []string{"127.0.0.1:17946"}}
	if !saved.equal(&want) {
		t.Errorf("saved %+v; want %+v", saved, want)
	}

	mustRunAgent(t, f, "--data-dir", dir)
	cfg := f.last(t)
	got := savedConfig{Name: cfg.Name, Bind: cfg.Bind, Advertise: cfg.Advertise, API: cfg.API, Profile: cfg.Profile, Join: cfg.Join}
	if !got.equal(&want) || cfg.EncryptKey != "" {
		t.Errorf("restart with --data-dir only: config %+v, key %q; want %+v and no key", got, cfg.EncryptKey, want)
	}

	mustRunAgent(t, f, "--data-dir", dir, "--api", "127.0.0.1:18000")
	if cfg := f.last(t); cfg.API != "127.0.0.1:18000" || cfg.Name != "n2" || cfg.Bind != "127.0.0.1:17956" {
		t.Errorf("restart with --api: config %+v; want the new API, the saved rest", cfg)
	}
	t.Setenv("PEERCTL_BIND", "127.0.0.1:18001")
	mustRunAgent(t, f, "--data-dir", dir)
	if cfg := f.last(t); cfg.API != "127.0.0.1:18000" || cfg.Bind != "127.0.0.1:18001" {
		t.Errorf("restart after --api, with PEERCTL_BIND: config %+v; want both new addresses", cfg)
	}
}

func TestAgentCorruptSavedConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, savedFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &fakeAgent{}
	r := runAgentCmd(t, f, context.Background(), "--data-dir", dir)
	if r.err == nil || !strings.Contains(r.err.Error(), "is corrupt") || len(f.cfgs) != 0 {
		t.Errorf("agent with a corrupt %s: err %v, started %d", savedFile, r.err, len(f.cfgs))
	}
}

// Whether a signal (the context) or a leave over the API ends it, the agent
// leaves, shuts down and returns nil: exit status 0.
func TestAgentStops(t *testing.T) {
	f := &fakeAgent{}
	mustRunAgent(t, f, "--data-dir", t.TempDir())
	if f.leaves != 1 || f.shutdns != 1 {
		t.Errorf("after a leave over the API: %d leaves, %d shutdowns; want 1, 1", f.leaves, f.shutdns)
	}

	f = &fakeAgent{noLeave: true}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // as SIGINT would
	if r := runAgentCmd(t, f, ctx, "--data-dir", t.TempDir()); r.err != nil {
		t.Errorf("agent after a signal: %v", r.err)
	}
	if f.leaves != 1 || f.shutdns != 1 {
		t.Errorf("after a signal: %d leaves, %d shutdowns; want 1, 1", f.leaves, f.shutdns)
	}
}
