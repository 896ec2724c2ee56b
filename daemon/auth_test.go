package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/store"
)

const (
	clusterKey  = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s="
	strangerKey = "3Ho4fK1YkUTmV2PoAbp+A6zH2UEv6MUnTDfMJUy/ZKk="
)

// strangerTransport is a replication transport as a process outside the
// cluster would run it: sealed with key (nil: not sealed).
func strangerTransport(tb testing.TB, key string) *httpTransport {
	tb.Helper()
	tr := newHTTPTransport("evil", Limits{}, slog.New(slog.DiscardHandler))
	var seal *sealer
	if key != "" {
		k, err := decodeKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		kr, _ := memberlist.NewKeyring(nil, k)
		seal = newSealer(kr)
	}
	if err := tr.secure(seal, func(b *http.Transport) (http.RoundTripper, error) { return b, nil }); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tr.close)
	return tr
}

func refusedTotal(a *Agent) uint64 { return a.authStats().ReplicationRefused }

// With --encrypt, a process without the key that reaches the API port can
// neither inject entries (pushes on a stream or by call, sync requests
// carrying entries) nor read any (digest, sync): each attempt is refused
// with 403 and counted. Reference: issue 10, item 1.
func TestStrangerCannotReplicate(t *testing.T) {
	pair := startClusterWith(t, 2, func(c *Config) { c.EncryptKey = clusterKey })
	n1, n2 := pair[0], pair[1]
	if _, err := n1.Put("real", []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "sealed replication", func() error {
		_, err := n2.Store().Get("real")
		return err
	})
	if n := refusedTotal(n1.Agent) + refusedTotal(n2.Agent); n != 0 {
		t.Fatalf("members refused %d of each other's messages; want 0", n)
	}

	// A far-future entry would win on every node for ever.
	evil := store.Entry{Key: "evil", Value: []byte("pwned"), Version: store.Version{TS: store.MakeTimestamp(time.Now().Add(time.Hour).UnixMilli(), 0), Node: "evil"}}
	push := store.EncodeBatch([]store.Entry{evil})
	d := n1.Store().Digest()
	digest := store.EncodeDigest(&d)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, key := range []string{"", strangerKey} {
		tr := strangerTransport(t, key)
		before := refusedTotal(n1.Agent)
		for _, kind := range []string{kindPush, kindDigest, kindSync} {
			body := push
			if kind == kindDigest {
				body = digest
			}
			reply, err := tr.Call(ctx, "n1", n1.APIAddr(), kind, body)
			if err == nil || !strings.Contains(err.Error(), "403") || reply != nil {
				t.Errorf("stranger (key %q) calls %s: %d bytes, %v; want 403 and nothing", key, kind, len(reply), err)
			}
		}
		// One-way pushes on a stream: refused at its opening.
		for i := 0; i < 3; i++ {
			tr.Send("n1", n1.APIAddr(), kindPush, push)
		}
		waitFor(t, 10*time.Second, "stranger's stream refused and counted", func() error {
			if got := refusedTotal(n1.Agent) - before; got < 4 {
				return errors.New("fewer than 4 refusals counted")
			}
			return nil
		})
	}
	// The fault table is for members only: unsealed, or sealed with another
	// key, it is refused; members exchange it sealed.
	for _, key := range []string{"", strangerKey} {
		c := NewClientWith(n1.APIAddr(), &http.Client{Transport: &peerRoundTripper{next: http.DefaultTransport, seal: strangerTransport(t, key).seal, peers: new(sync.Map)}})
		err := c.Do(ctx, "POST", "/v1/faults/table", strings.NewReader(`{}`), nil)
		var se *api.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusForbidden {
			t.Errorf("stranger (key %q) posts a fault table: %v; want 403", key, err)
		}
	}
	if _, err := api.NewClient(n1.APIAddr()).InjectFault(ctx, FaultRequest{Kind: ReqPause, Nodes: []string{"n2"}, For: time.Minute}); err != nil {
		t.Fatalf("pause n2: %v", err)
	}
	waitFor(t, 10*time.Second, "the sealed fault table reaches n2", func() error {
		if len(n2.faults.Rules()) == 0 {
			return errors.New("n2 has no rule")
		}
		return nil
	})
	if _, err := n1.Store().Get("evil"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("n1 holds the stranger's entry: %v", err)
	}
	st := n1.Info().Auth
	t.Logf("n1 refused: %v", st.RefusedBy)
	if st.RefusedBy["unsealed"] < 5 || st.RefusedBy["unknown_key"] < 5 {
		t.Errorf("refusals by reason = %v; want at least 5 unsealed and 5 unknown_key counted", st.RefusedBy)
	}

	// A member's sealed request, captured and sent again, is refused.
	kr, _ := memberlist.NewKeyring(nil, mustKey(t, clusterKey))
	s := newSealer(kr)
	sealed, _, _ := s.seal(nil, bindCall(kindDigest, "n9"), digest)
	post := func() int {
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+n1.APIAddr()+"/v1/internal/digest", bytes.NewReader(sealed))
		req.Header.Set(headerClient, "1")
		req.Header.Set(headerFrom, "n9")
		req.Header.Set(headerSealed, "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(); code != http.StatusOK {
		t.Fatalf("sealed digest with the cluster key: %d; want 200", code)
	}
	if code := post(); code != http.StatusForbidden {
		t.Errorf("the same sealed digest replayed: %d; want 403", code)
	}
	if n := n1.Info().Auth.RefusedBy["replay"]; n != 1 {
		t.Errorf("replays counted = %d; want 1", n)
	}
}

func mustKey(tb testing.TB, s string) []byte {
	tb.Helper()
	k, err := decodeKey(s)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// With --token, every request needs the token: none or a wrong one gets
// 401 with a JSON error the client turns into a hint, and is counted; the
// daemons carry it to each other (replication, ?node= forwarding, the
// check fan-out, ?all, the fault table). Reference: issue 10, item 2.
func TestAPIToken(t *testing.T) {
	const token = "s3cret-token"
	pair := startClusterWith(t, 2, func(c *Config) { c.Token = token })
	n1, n2 := pair[0], pair[1]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, tc := range []struct{ token, want string }{
		{"", "the daemon wants a token: set --token or PEERCTL_TOKEN"},
		{"wrong", "the daemon refused the token"},
		{token + "x", "the daemon refused the token"},
	} {
		c, _ := api.NewClientOptions(n1.APIAddr(), api.Options{Token: tc.token})
		_, err := c.Info(ctx, "")
		var se *api.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("info with token %q = %v; want 401, %q", tc.token, err, tc.want)
		}
		if _, err := c.Put(ctx, "", "k", []byte("v")); err == nil {
			t.Errorf("put with token %q succeeded", tc.token)
		}
	}
	if n := n1.Info().Auth.TokenRefused; n != 6 {
		t.Errorf("token refusals counted = %d; want 6", n)
	}
	// A raw internal request without the token is refused before anything.
	resp, err := http.Post("http://"+n1.APIAddr()+"/v1/internal/push", "application/octet-stream", bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("internal push without token: %d; want 401", resp.StatusCode)
	}

	c, _ := api.NewClientOptions(n1.APIAddr(), api.Options{Token: token})
	if _, err := c.Put(ctx, "", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "replicated with tokens", func() error {
		_, err := n2.Store().Get("k")
		return err
	})
	if kv, err := c.Get(ctx, "n2", "k"); err != nil || string(kv.Value) != "v" {
		t.Errorf("get k through ?node=n2 = %v, %v; want v (forwarding carries the token)", kv, err)
	}
	all, err := c.GetAll(ctx, "k")
	if err != nil || len(all) != 2 || all[0].KV == nil || all[1].KV == nil {
		t.Errorf("get k ?all = %+v, %v; want both nodes' copies", all, err)
	}
	if res, err := c.Check(ctx); err != nil || !res.Converged || len(res.Nodes) != 2 {
		t.Errorf("check = %+v, %v; want 2 nodes converged (the fan-out carries the token)", res, err)
	}
	if _, err := c.InjectFault(ctx, FaultRequest{Kind: ReqPause, Nodes: []string{"n2"}, For: time.Minute}); err != nil {
		t.Fatalf("pause n2: %v", err)
	}
	waitFor(t, 10*time.Second, "the fault table reaches n2 with the token", func() error {
		if len(n2.faults.Rules()) == 0 {
			return errors.New("n2 has no rule")
		}
		return nil
	})
	if n := n2.Info().Auth.TokenRefused; n != 0 {
		t.Errorf("n2 refused %d requests from n1; want 0", n)
	}
}

// An API off loopback needs a token, unless --insecure-api.
func TestAPIOffLoopbackNeedsToken(t *testing.T) {
	for _, tc := range []struct {
		api      string
		token    string
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:0", "", false, true},
		{"localhost:0", "", false, true},
		{"[::1]:0", "", false, true},
		{"0.0.0.0:0", "", false, false},
		{":7947", "", false, false},
		{"10.1.2.3:7947", "", false, false},
		{"node1.example:7947", "", false, false},
		{"0.0.0.0:0", "t", false, true},
		{"0.0.0.0:0", "", true, true},
	} {
		cfg := testConfig(t, "n1", t.TempDir())
		cfg.API, cfg.Token, cfg.InsecureAPI = tc.api, tc.token, tc.insecure
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Validate(api %s, token %q, insecure %v) = %v; want ok %v", tc.api, tc.token, tc.insecure, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--insecure-api") {
			t.Errorf("Validate(api %s) = %v; want it to name --token and --insecure-api", tc.api, err)
		}
	}
	cfg := testConfig(t, "n1", t.TempDir())
	cfg.Token = "two words"
	if err := cfg.Validate(); err == nil {
		t.Error("Validate(token with a space) = nil; want an error")
	}
}

// The agent warns at start, in one line naming what is exposed, when it
// listens off loopback without --encrypt, or serves the API off loopback
// with no token (--insecure-api).
func TestWarnExposure(t *testing.T) {
	for _, tc := range []struct {
		bind, api string
		keyring   bool
		token     string
		want      []string
	}{
		{"127.0.0.1:7946", "127.0.0.1:7947", false, "", nil},
		{"0.0.0.0:7946", "127.0.0.1:7947", false, "", []string{"without --encrypt", "--bind 0.0.0.0:7946"}},
		{"10.0.0.1:7946", "10.0.0.1:7947", true, "t", nil},
		{"10.0.0.1:7946", "10.0.0.1:7947", true, "", []string{"--insecure-api"}},
	} {
		var buf bytes.Buffer
		cfg := &Config{Bind: tc.bind, API: tc.api, Token: tc.token, APITLSCert: "x"}
		a := &Agent{cfg: cfg, log: slog.New(slog.NewTextHandler(&buf, nil))}
		if tc.keyring {
			a.keyring, _ = memberlist.NewKeyring(nil, testKey1)
		}
		a.warnExposure()
		out := buf.String()
		if tc.want == nil && strings.Contains(out, "SECURITY") {
			t.Errorf("bind %s api %s: warned %q; want no warning", tc.bind, tc.api, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("bind %s api %s keyring %v token %q: log %q; want it to contain %q", tc.bind, tc.api, tc.keyring, tc.token, out, w)
			}
		}
	}
}

// With TLS the API's own origin is https://HOST:PORT; the cross-site
// rules are otherwise unchanged.
func TestGuardOriginWithTLS(t *testing.T) {
	g := &guard{tls: true}
	for origin, want := range map[string]bool{
		"https://127.0.0.1:7947": true, "http://127.0.0.1:7947": false,
		"https://evil.example": false, "null": false,
	} {
		if got := g.originOK(origin, "127.0.0.1:7947"); got != want {
			t.Errorf("originOK(%q) with TLS = %v; want %v", origin, got, want)
		}
	}
}
