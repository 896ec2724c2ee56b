package daemon

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDNS maps names to addresses; a name it lacks is "no such host".
func fakeDNS(m map[string][]string) lookupFunc {
	return func(_ context.Context, host string) ([]string, error) {
		if a, ok := m[host]; ok {
			return a, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
}

func TestResolveJoin(t *testing.T) {
	many := make([]string, 20)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.1.%d", i+1)
	}
	dns := fakeDNS(map[string][]string{
		"node1":           {"172.18.0.2"},
		"node2":           {"172.18.0.3"},
		"svc":             {"172.18.0.2", "172.18.0.3", "172.18.0.4"},
		"big":             many,
		"v6":              {"fd00::5"},
		"peerctl-0.peers": {"10.1.0.7"},
	})
	cases := []struct {
		name     string
		addrs    []string
		self     []string
		want     []string
		onlySelf bool
		errs     []string // substrings, in order
	}{
		{"IP kept as is", []string{"10.0.0.1:7946"}, nil, []string{"10.0.0.1:7946"}, false, nil},
		{"names resolved", []string{"node1:7946", "node2:7946"}, nil, []string{"172.18.0.2:7946", "172.18.0.3:7946"}, false, nil},
		{"every address of a name, no duplicates", []string{"svc:7946", "node1:7946"}, nil,
			[]string{"172.18.0.2:7946", "172.18.0.3:7946", "172.18.0.4:7946"}, false, nil},
		{"self left out", []string{"svc:7946"}, []string{"172.18.0.3:7946"},
			[]string{"172.18.0.2:7946", "172.18.0.4:7946"}, false, nil},
		{"only self", []string{"peerctl-0.peers:7946"}, []string{"10.1.0.7:7946"}, nil, true, nil},
		{"self on another port is a peer", []string{"node1:7950"}, []string{"172.18.0.2:7946"}, []string{"172.18.0.2:7950"}, false, nil},
		{"unknown name is an error, others kept", []string{"nope:7946", "node1:7946"}, nil,
			[]string{"172.18.0.2:7946"}, false, []string{`"nope:7946": lookup nope: no such host`}},
		{"self and an unknown name is not only self", []string{"node1:7946", "peerctl-1.peers:7946"}, []string{"172.18.0.2:7946"},
			nil, false, []string{"peerctl-1.peers"}},
		{"addresses per name bounded", []string{"big:1"}, nil, addrs(many[:maxAddrsPerName], "1"), false, nil},
		{"IPv6", []string{"v6:7946", "[fd00::6]:7946"}, nil, []string{"[fd00::5]:7946", "[fd00::6]:7946"}, false, nil},
		{"bad port", []string{"node1:http", "node1:0", "node1"}, nil, nil, false,
			[]string{`port "http"`, `port "0"`, "want HOST:PORT"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, onlySelf, errs := resolveJoin(context.Background(), dns, c.addrs, c.self...)
			if !slices.Equal(got, c.want) || onlySelf != c.onlySelf {
				t.Errorf("resolveJoin(%q, self %q) = %q, only self %v; want %q, %v", c.addrs, c.self, got, onlySelf, c.want, c.onlySelf)
			}
			if len(errs) != len(c.errs) {
				t.Fatalf("resolveJoin(%q) errors = %v; want %d containing %q", c.addrs, errs, len(c.errs), c.errs)
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), c.errs[i]) {
					t.Errorf("resolveJoin(%q) error %d = %q; want it to contain %q", c.addrs, i, e, c.errs[i])
				}
			}
		})
	}
}

func addrs(ips []string, port string) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip, port))
	}
	return out
}

// TestJoinResolvesNameOnEveryAttempt: a --join name that does not resolve
// yet (a container whose DNS record appears only once it starts) is looked
// up again on each retry, and the node joins once it resolves.
func TestJoinResolvesNameOnEveryAttempt(t *testing.T) {
	a := startNode(t, testConfig(t, "a", t.TempDir()))
	var calls atomic.Int32
	cfg := testConfig(t, "b", t.TempDir(), "seed.peerctl.test:"+portOf(t, a.gossip))
	cfg.LookupHost = func(_ context.Context, host string) ([]string, error) {
		if host != "seed.peerctl.test" {
			return nil, fmt.Errorf("unexpected look-up of %q", host)
		}
		if calls.Add(1) <= 2 {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return []string{"127.0.0.1"}, nil
	}
	b := startNode(t, cfg)
	nodes := []*testNode{a, b}
	waitFor(t, 20*time.Second, "b joins a through the name", func() error { return allAlive(nodes, 2) })
	if n := calls.Load(); n < 3 {
		t.Errorf("name looked up %d times; want at least 3 (two failures, then success)", n)
	}
}

// TestJoinSystemResolver joins through "localhost", resolved by the
// system resolver, and a node given only its own address does not retry.
func TestJoinSystemResolver(t *testing.T) {
	if _, err := net.DefaultResolver.LookupHost(context.Background(), "localhost"); err != nil {
		t.Skipf("SKIP: this machine cannot resolve localhost: %v", err)
	}
	a := startNode(t, testConfig(t, "a", t.TempDir()))
	b := startNode(t, testConfig(t, "b", t.TempDir(), "localhost:"+portOf(t, a.gossip)))
	waitFor(t, 20*time.Second, "b joins a through localhost", func() error { return allAlive([]*testNode{a, b}, 2) })

	// The join loop gives up at once when the only address is the node's
	// own: it resolves to self and nothing else.
	targets, onlySelf, err := b.joinTargets([]string{b.gossip})
	if len(targets) != 0 || !onlySelf || err != nil {
		t.Errorf("joinTargets(own address %s) = %q, only self %v, %v; want none, true, nil", b.gossip, targets, onlySelf, err)
	}
}

func portOf(tb testing.TB, hostport string) string {
	tb.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestAPIOnGossipIP: an agent listening on 0.0.0.0 for both gossip and
// API with no --advertise (a container) advertises its API on the private
// IP memberlist advertises for gossip, not on 127.0.0.1, which peers could
// not reach.
func TestAPIOnGossipIP(t *testing.T) {
	cfg := testConfig(t, "a", t.TempDir())
	cfg.Bind, cfg.API = "0.0.0.0:0", "0.0.0.0:0"
	cfg.Token = "test-token"
	a := startNode(t, cfg)
	m := a.serf.LocalMember()
	h, _, err := net.SplitHostPort(a.apiAddr)
	if err != nil {
		t.Fatal(err)
	}
	if h != m.Addr.String() || h == "127.0.0.1" {
		t.Errorf("advertised API %s; want it on the gossip IP %s", a.apiAddr, m.Addr)
	}
	if got := m.Tags[tagAPI]; got != a.apiAddr {
		t.Errorf("api tag %q; want %q", got, a.apiAddr)
	}
}
