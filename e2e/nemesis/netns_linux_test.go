package nemesis

// TestNetns runs five agents on five hosts of their own: Linux network
// namespaces, each with a veth to a bridge in a sixth "switch" namespace
// and its own address in a private 10.77.X.0/24 (X is free and locked for
// the run, so runs in parallel do not collide). Every daemon binds its
// host's address, not loopback, with --encrypt and --token, and joins by
// name (per-namespace /etc/hosts). The test process reaches the hosts
// through one more veth, in the root namespace, and runs the CLI inside
// the namespaces with `ip netns exec`. A partition is cut in the kernel
// (nftables in each host's namespace, or the host's link taken down where
// nft is missing), healed, and judged by the nemesis checker. A sixth host
// without the key reaches the ports and tries to join, read and inject.
// Everything (processes, namespaces, veths, the bridge, /etc/netns files)
// is removed at cleanup, pass or fail; namespaces left by a run that was
// killed are removed by the next.

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peerctl/peerctl/e2e/internal/procs"
	"github.com/peerctl/peerctl/internal/api"
	launch "github.com/peerctl/peerctl/internal/cluster"
	"github.com/peerctl/peerctl/store"
)

// bearer returns rt adding "Authorization: Bearer token" to every
// request; with no token, rt itself.
func bearer(token string, rt http.RoundTripper) http.RoundTripper {
	if token == "" {
		return rt
	}
	return bearerRT{token, rt}
}

type bearerRT struct {
	token string
	next  http.RoundTripper
}

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// netnsSeq tells apart the networks of one test process.
var netnsSeq atomic.Int32

// vnet is a virtual network of hosts, each a network namespace.
type vnet struct {
	tb     testing.TB
	prefix string   // "10.77.X."; host i (0-based) is prefix+(i+1)
	hosts  []string // namespace names
	sw     string   // the switch namespace, holding the bridge
	obs    string   // root-namespace veth, prefix+254
	lock   *os.File // held while the subnet is in use
}

func (n *vnet) ip(i int) string { return n.prefix + strconv.Itoa(i+1) }

// sh runs a command that must succeed.
func sh(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// needNetns skips, with one line, where namespaces cannot be made.
func needNetns(tb testing.TB) {
	tb.Helper()
	needBinary(tb)
	if os.Geteuid() != 0 {
		tb.Skip("SKIP: needs root to create network namespaces (ip netns); CI runs as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("SKIP: needs the ip command (iproute2) to create network namespaces")
	}
}

// sweepNetns removes namespaces (and their /etc/netns files) left by
// test processes that no longer run: ours are named pctl-PID-...
func sweepNetns(tb testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		parts := strings.Split(name, "-")
		if len(parts) < 3 || parts[0] != "pctl" {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			continue // its test still runs
		}
		tb.Logf("removing namespace %s left by a test process that is gone", name)
		exec.Command("ip", "netns", "del", name).Run()
		os.RemoveAll(filepath.Join("/etc/netns", name))
	}
}

// newVnet makes n hosts on a bridge, plus the root namespace's veth.
// hosts names the host-name to host-index entries every host's /etc/hosts
// gets.
func newVnet(tb testing.TB, n int, hosts map[string]int) *vnet {
	tb.Helper()
	sweepNetns(tb)
	v := &vnet{tb: tb}
	// A free subnet: a lock no other run holds, and no route to it here.
	for _, x := range rand.Perm(250) {
		x += 2
		f, err := os.OpenFile(fmt.Sprintf("%s/peerctl-netns-10.77.%d.lock", os.TempDir(), x), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			tb.Fatal(err)
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		if out, _ := exec.Command("ip", "-4", "route", "show", fmt.Sprintf("10.77.%d.0/24", x)).Output(); len(bytes.TrimSpace(out)) > 0 {
			f.Close()
			continue
		}
		v.prefix, v.lock = fmt.Sprintf("10.77.%d.", x), f
		v.obs = fmt.Sprintf("pctlo%d", x)
		break
	}
	if v.lock == nil {
		tb.Fatal("no free subnet in 10.77.0.0/16")
	}
	id := fmt.Sprintf("pctl-%d-%d", os.Getpid(), netnsSeq.Add(1))
	v.sw = id + "-sw"
	for i := range n {
		v.hosts = append(v.hosts, fmt.Sprintf("%s-h%d", id, i+1))
	}
	// Removed last: after every process in them has been stopped.
	tb.Cleanup(v.remove)
	exec.Command("ip", "link", "del", v.obs).Run() // a stale one, if any
	sh(tb, "ip", "netns", "add", v.sw)
	sh(tb, "ip", "-n", v.sw, "link", "add", "br0", "type", "bridge")
	sh(tb, "ip", "-n", v.sw, "link", "set", "br0", "up")
	var etcHosts strings.Builder
	etcHosts.WriteString("127.0.0.1 localhost\n")
	for name, i := range hosts {
		fmt.Fprintf(&etcHosts, "%s %s\n", v.ip(i), name)
	}
	for i, h := range v.hosts {
		port := fmt.Sprintf("p%d", i+1)
		sh(tb, "ip", "netns", "add", h)
		sh(tb, "ip", "link", "add", "eth0", "netns", h, "type", "veth", "peer", "name", port, "netns", v.sw)
		sh(tb, "ip", "-n", v.sw, "link", "set", port, "master", "br0", "up")
		sh(tb, "ip", "-n", h, "addr", "add", v.ip(i)+"/24", "dev", "eth0")
		sh(tb, "ip", "-n", h, "link", "set", "eth0", "up")
		sh(tb, "ip", "-n", h, "link", "set", "lo", "up")
		// ip netns exec bind-mounts /etc/netns/NS/hosts on /etc/hosts.
		dir := filepath.Join("/etc/netns", h)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(etcHosts.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	sh(tb, "ip", "link", "add", v.obs, "type", "veth", "peer", "name", "obs", "netns", v.sw)
	sh(tb, "ip", "-n", v.sw, "link", "set", "obs", "master", "br0", "up")
	sh(tb, "ip", "addr", "add", v.prefix+"254/24", "dev", v.obs)
	sh(tb, "ip", "link", "set", v.obs, "up")
	return v
}

// remove deletes the namespaces (their veths and the bridge go with
// them), the root veth, the /etc/netns files and the subnet lock.
func (v *vnet) remove() {
	exec.Command("ip", "link", "del", v.obs).Run()
	for _, ns := range append(slices.Clone(v.hosts), v.sw) {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			v.tb.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
		os.RemoveAll(filepath.Join("/etc/netns", ns))
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, ns := range append(slices.Clone(v.hosts), v.sw) {
		if strings.Contains(string(out), ns) {
			v.tb.Errorf("namespace %s still exists after cleanup", ns)
		}
	}
	os.Remove(v.lock.Name())
	v.lock.Close()
}

// cliIn runs `peerctl --addr addr args...` inside namespace ns.
func cliIn(tb testing.TB, ns, addr string, args ...string) procs.Result {
	tb.Helper()
	return procs.Run(tb, procs.CmdTimeout, procs.CleanEnv(), "ip", append([]string{"netns", "exec", ns, peerctl.Path, "--addr", addr}, args...)...)
}

// nsDialer dials from inside namespace ns: the socket is made on a thread
// switched into it (setns), which is switched back afterwards (or, if
// that fails, left locked so that it exits with its goroutine).
func nsDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			return nil, fmt.Errorf("setns %s: %w", ns, err)
		}
		defer func() {
			if setns(self) == nil {
				runtime.UnlockOSThread()
			}
		}()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

func randomKey(tb testing.TB) string {
	b := make([]byte, 32)
	if _, err := crand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestNetns(t *testing.T) {
	needNetns(t)
	began := time.Now()
	const n = 5
	v := newVnet(t, n+1, map[string]int{"seed1": 0, "seed2": 1})
	key, token := randomKey(t), randomKey(t)
	c := emptyCluster(t, &http.Client{Timeout: apiTimeout, Transport: bearer(token, &http.Transport{})}, token)
	for i := range n {
		a := &agent{name: fmt.Sprintf("n%d", i+1), gossip: v.ip(i) + ":7946", api: v.ip(i) + ":7947",
			dir: filepath.Join(c.root, fmt.Sprintf("n%d", i+1)), seed: uint64(i + 1)}
		c.agents = append(c.agents, a)
		// Every node gets the same --join names; n1 and n2 find themselves
		// among them and skip their own address.
		c.runIn(a, v.hosts[i], "agent", "--name", a.name, "--bind", a.gossip, "--api", a.api,
			"--data-dir", a.dir, "--profile", "local", "--encrypt", key, "--token", token,
			"--join", "seed1:7946", "--join", "seed2:7946")
	}
	took, err := c.waitFormed()
	if err != nil {
		t.Fatalf("cluster did not form across namespaces: %v", err)
	}
	t.Logf("5 daemons on %s1-5 (--encrypt, --token), joined by name, formed a cluster in %s", v.prefix, took.Round(time.Millisecond))

	// The used-by flow, through the CLI on the hosts themselves.
	tok := []string{"--token", token}
	if r := cliIn(t, v.hosts[1], c.agents[1].api, append(tok, "put", "greeting", "hello")...); r.Code != 0 {
		t.Fatalf("put on n2's host: %v", r)
	}
	if _, err := procs.WaitFor(formTimeout, poll, func() (bool, string) {
		r := cliIn(t, v.hosts[3], c.agents[3].api, append(tok, "get", "greeting")...)
		return r.Code == 0 && strings.TrimSpace(r.Stdout) == "hello", r.String()
	}); err != nil {
		t.Fatalf("get greeting on n4's host: %v", err)
	}
	r := cliIn(t, v.hosts[4], c.agents[4].api, append(tok, "members")...)
	if r.Code != 0 || strings.Count(r.Stdout, "alive") != n {
		t.Fatalf("members on n5's host: %v; want %d alive", r, n)
	}
	if r := cliIn(t, v.hosts[4], c.agents[0].api, "get", "greeting"); r.Code == 0 || !strings.Contains(r.Stderr, "token") {
		t.Errorf("get with no token from n5's host: %v; want refused, naming the token", r)
	}

	// A kernel-level partition under a workload, then a heal.
	partitionUnderLoad(t, c, v)

	// The stranger: host 6, which has the token but not the key.
	stranger(t, c, v, token)
	t.Logf("TestNetns took %s", time.Since(began).Round(time.Millisecond))
}

// partitionUnderLoad cuts {n1,n2} from {n3,n4,n5} with nftables (or
// takes n5's link down where nft is missing) while clients write at every
// node, waits until each side sees the other failed, heals, and checks
// with the nemesis checker that the five converge and nothing
// acknowledged was lost.
func partitionUnderLoad(t *testing.T, c *cluster, v *vnet) {
	keys := keyspace(20)
	w := workload{Clients: 3, Rate: 40, Keys: keys, DelProb: 0.05, Timeout: 2 * time.Second, Deadline: 2 * time.Minute}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	hist := make(chan []op, 1)
	go func() { hist <- runClients(ctx, c, w, 1) }()

	var sides [2][]int
	var cut, heal func()
	// NETNS_PARTITION=link forces the link-down partition where nft exists.
	if nft, err := exec.LookPath("nft"); err == nil && os.Getenv("NETNS_PARTITION") != "link" {
		sides = [2][]int{{0, 1}, {2, 3, 4}}
		rules := func(other []int) string {
			var ips []string
			for _, i := range other {
				ips = append(ips, v.ip(i))
			}
			set := "{ " + strings.Join(ips, ", ") + " }"
			return "table inet pctl {\n" +
				" chain in { type filter hook input priority 0; policy accept; ip saddr " + set + " drop; }\n" +
				" chain out { type filter hook output priority 0; policy accept; ip daddr " + set + " drop; }\n}\n"
		}
		cut = func() {
			for s, side := range sides {
				for _, i := range side {
					f := filepath.Join(c.root, fmt.Sprintf("cut-%d.nft", i))
					if err := os.WriteFile(f, []byte(rules(sides[1-s])), 0o600); err != nil {
						t.Fatal(err)
					}
					sh(t, "ip", "netns", "exec", v.hosts[i], nft, "-f", f)
				}
			}
		}
		heal = func() {
			for _, side := range sides {
				for _, i := range side {
					sh(t, "ip", "netns", "exec", v.hosts[i], nft, "delete", "table", "inet", "pctl")
				}
			}
		}
	} else {
		t.Logf("nft not found (or NETNS_PARTITION=link): partitioning by taking n5's link down instead")
		sides = [2][]int{{0, 1, 2, 3}, {4}}
		cut = func() { sh(t, "ip", "-n", v.hosts[4], "link", "set", "eth0", "down") }
		heal = func() { sh(t, "ip", "-n", v.hosts[4], "link", "set", "eth0", "up") }
	}
	// The workload runs for a while on each side of every change: this
	// is the workload's schedule, not a wait for a condition.
	phase := func() { time.Sleep(2 * time.Second) }
	phase()
	cutAt := time.Now()
	cut()
	what := fmt.Sprintf("%v | %v", names(c, sides[0]), names(c, sides[1]))
	if _, err := procs.WaitFor(60*time.Second, poll, func() (bool, string) {
		// Only the side that can still be asked; with a link down, n5's
		// API is cut from the test too.
		for s, side := range sides {
			for _, i := range side {
				if len(side) == 1 {
					continue
				}
				ms, err := c.client(c.agents[i]).Members(context.Background(), "")
				if err != nil {
					return false, err.Error()
				}
				for _, j := range sides[1-s] {
					if st := launch.StatusIn(ms, c.agents[j].name); st != "failed" {
						return false, fmt.Sprintf("%s sees %s %s", c.agents[i].name, c.agents[j].name, st)
					}
				}
			}
		}
		return true, ""
	}); err != nil {
		t.Fatalf("partition %s not detected: %v", what, err)
	}
	detected := time.Since(cutAt)
	phase()
	heal()
	healAt := time.Now()
	if took, err := c.waitAllAlive(formTimeout); err != nil {
		t.Fatalf("no rejoin after healing %s: %v", what, err)
	} else {
		t.Logf("kernel partition %s: detected (each side sees the other failed) in %s, all alive %s after heal",
			what, detected.Round(time.Millisecond), took.Round(time.Millisecond))
	}
	phase()
	stop()
	ops := <-hist
	// Converged: the digests of all five agree.
	if _, err := procs.WaitFor(formTimeout, poll, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		defer cancel()
		res, err := c.client(c.agents[0]).Check(ctx)
		if err != nil {
			return false, err.Error()
		}
		return res.Converged && len(res.Nodes) == len(c.agents), fmt.Sprintf("converged %v, nodes %v", res.Converged, res.Nodes)
	}); err != nil {
		t.Fatalf("no convergence after heal: %v", err)
	}
	final, err := readState(context.Background(), c, keys)
	if err != nil {
		t.Fatal(err)
	}
	probs := check(keys, ops, final)
	acked, failed := 0, 0
	for _, o := range ops {
		switch o.Outcome {
		case outOK:
			acked++
		case outFail:
			failed++
		}
	}
	t.Logf("workload: %d operations, %d acknowledged, %d failed, %d unknown; converged %s after heal; %d problems",
		len(ops), acked, failed, len(ops)-acked-failed, time.Since(healAt).Round(time.Millisecond), len(probs))
	for _, p := range probs {
		t.Errorf("checker: %s", p)
	}
	if acked == 0 {
		t.Errorf("no write was acknowledged: the workload did not run")
	}
	if d := c.unexpectedDeaths(); len(d) > 0 {
		t.Errorf("daemons died: %v", d)
	}
}

func names(c *cluster, idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, c.agents[i].name)
	}
	return out
}

// stranger runs host 6 without the key: its agent (another key, the
// token) cannot join; without the token it cannot read the API; with the
// token but no key it can neither read nor inject over the replication
// endpoints. Every attempt must be refused and counted at n1.
func stranger(t *testing.T, c *cluster, v *vnet, token string) {
	n1 := c.agents[0]
	before, err := c.client(n1).Info(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	s := &agent{name: "stranger", gossip: v.ip(5) + ":7946", api: v.ip(5) + ":7947", dir: filepath.Join(c.root, "stranger")}
	p := c.runIn(s, v.hosts[5], "agent", "--name", s.name, "--bind", s.gossip, "--api", s.api, "--data-dir", s.dir,
		"--profile", "local", "--encrypt", randomKey(t), "--token", token, "--join", n1.gossip)
	t.Cleanup(func() { p.Stop(t) }) // before the cluster's: it is not in c.agents
	if err := c.waitReady(s); err != nil {
		t.Fatal(err)
	}
	if _, err := procs.WaitFor(formTimeout, poll, func() (bool, string) {
		k := strings.Count(p.Output(), "join failed")
		return k >= 2, fmt.Sprintf("%d failed join attempts so far", k)
	}); err != nil {
		t.Fatalf("stranger: %v", err)
	}
	for _, a := range append(slices.Clone(c.agents), s) {
		ms, err := c.client(a).Members(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if (a == s) != (m.Name == "stranger") {
				t.Errorf("%s lists member %s (%s): the stranger without the key joined", a.name, m.Name, m.Status)
			}
		}
	}

	// Reads without the token, from host 6.
	if r := cliIn(t, v.hosts[5], n1.api, "get", "greeting"); r.Code == 0 || !strings.Contains(r.Stderr, "token") {
		t.Errorf("stranger get without token: %v; want refused", r)
	}
	// Replication with the token but without the key: an unsealed push
	// of an entry versioned a day ahead, and an unsealed sync request.
	hc := &http.Client{Timeout: apiTimeout, Transport: &http.Transport{DialContext: nsDialer(v.hosts[5])}}
	evil := store.Entry{Key: "evil", Value: []byte("injected"),
		Version: store.Version{TS: store.MakeTimestamp(time.Now().Add(24*time.Hour).UnixMilli(), 0), Node: "n1"}}
	sync := store.SyncReq{Buckets: []int{store.BucketOf("greeting")}}
	for _, try := range []struct {
		kind string
		body []byte
	}{{"push", store.EncodeBatch([]store.Entry{evil})}, {"sync", sync.Encode()}} {
		req, _ := http.NewRequest("POST", "http://"+n1.api+"/v1/internal/"+try.kind, bytes.NewReader(try.body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Peerctl-From", "n9")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("stranger %s from host 6: %v (the port must be reachable)", try.kind, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode < 400 || bytes.Contains(b, []byte("greeting")) {
			t.Errorf("stranger unsealed %s with the token: %s %q; want refused", try.kind, resp.Status, b)
		} else {
			t.Logf("stranger unsealed %s: %s %s", try.kind, resp.Status, strings.TrimSpace(string(b)))
		}
	}
	after, err := c.client(n1).Info(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if after.Auth.TokenRefused <= before.Auth.TokenRefused || after.Auth.ReplicationRefused < before.Auth.ReplicationRefused+2 {
		t.Errorf("n1 counted token refusals %d -> %d, replication refusals %d -> %d; want both up (>= 2 for replication)",
			before.Auth.TokenRefused, after.Auth.TokenRefused, before.Auth.ReplicationRefused, after.Auth.ReplicationRefused)
	} else {
		t.Logf("n1 refused and counted: token %d -> %d, replication %d -> %d %v", before.Auth.TokenRefused, after.Auth.TokenRefused,
			before.Auth.ReplicationRefused, after.Auth.ReplicationRefused, after.Auth.RefusedBy)
	}
	for _, a := range c.agents {
		if _, err := c.client(a).Get(context.Background(), "", "evil"); !errors.Is(err, api.ErrKeyNotFound) {
			t.Errorf("injected key at %s: %v; want not found", a.name, err)
		}
	}
}
