package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/cluster"
)

// benchCluster is one repetition's cluster: N agents started through the
// launcher, each logging to DIR/nodeI.log, reached through one shared
// keep-alive HTTP client. Its methods are safe for concurrent use unless
// noted.
type benchCluster struct {
	o     *benchOpts
	l     *cluster.Launcher
	dir   string
	nodes []cluster.Node
	names []string
	extra []string // agent flags after those of agentArgs, also on restart
	hc    *http.Client
	cs    []*api.Client // by node index

	stopWatch context.CancelFunc // ends the member event watchers (events.go)
	watchWG   sync.WaitGroup

	mu      sync.Mutex         // guards the fields below
	procs   []*cluster.Child   // by node index, the latest process
	logs    []*os.File         // every log file opened
	events  []benchMemberEvent // membership events from the nodes' event streams, in arrival order
	started []time.Time        // by node index, when the latest process was started
}

// benchHTTPClient is a client for many concurrent requests to a few
// hosts: idle connections are kept per host for every concurrent client.
func benchHTTPClient() *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        8192,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// newBenchCluster lays out n nodes on free loopback ports in a new
// directory. extra is appended to every agent's flags.
func newBenchCluster(o *benchOpts, n int, extra ...string) (*benchCluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("--nodes %d: want at least 1", n)
	}
	if o.dir != "" {
		if err := os.MkdirAll(o.dir, 0o755); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(o.dir, "peerctl-bench-")
	if err != nil {
		return nil, err
	}
	base, err := cluster.FreePortRange(2 * n)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cl := &benchCluster{
		o:     o,
		l:     &cluster.Launcher{Exe: o.exe, Grace: 5 * time.Second},
		dir:   dir,
		nodes: cluster.Layout(n, base, dir),
		extra: append(append([]string{"--log-level", "info"}, o.agentArgs...), extra...),
		hc:    benchHTTPClient(),
		procs: make([]*cluster.Child, n), started: make([]time.Time, n),
	}
	for _, nd := range cl.nodes {
		cl.names = append(cl.names, nd.Name)
		cl.cs = append(cl.cs, api.NewClientWith(nd.API, cl.hc))
	}
	cl.watchMembers()
	return cl, nil
}

// start starts every node: node1 first, then, once it serves, the others
// joining it. It returns once all processes have started, not once they
// have formed a cluster (waitAlive).
func (cl *benchCluster) start(ctx context.Context) error {
	if err := cl.startNode(0, nil); err != nil {
		return err
	}
	if err := cl.waitServing(ctx, 0, 30*time.Second); err != nil {
		return err
	}
	for i := 1; i < len(cl.nodes); i++ {
		if err := cl.startNode(i, []string{cl.nodes[0].Gossip}); err != nil {
			return err
		}
	}
	return nil
}

// startNode starts node i for the first time, joining join.
func (cl *benchCluster) startNode(i int, join []string) error {
	return cl.run(i, cl.nodes[i].AgentArgs(cl.o.profile, "", join, cl.extra...))
}

// restart starts node i again on its data dir, with the flags it saved
// there (name, addresses, profile, join) and the cluster's extra flags.
func (cl *benchCluster) restart(i int) error {
	return cl.run(i, append([]string{"agent", "--data-dir", cl.nodes[i].DataDir}, cl.extra...))
}

func (cl *benchCluster) run(i int, args []string) error {
	nd := cl.nodes[i]
	f, err := os.OpenFile(filepath.Join(cl.dir, nd.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	at := time.Now()
	ch, err := cl.l.Start(nd.Name, args, f)
	if err != nil {
		f.Close()
		return err
	}
	cl.mu.Lock()
	cl.procs[i], cl.started[i] = ch, at
	cl.logs = append(cl.logs, f)
	cl.mu.Unlock()
	return nil
}

// eventsSince returns the membership events read at or after t.
func (cl *benchCluster) eventsSince(t time.Time) []benchMemberEvent {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var out []benchMemberEvent
	for _, ev := range cl.events {
		if !ev.At.Before(t) {
			out = append(out, ev)
		}
	}
	return out
}

func (cl *benchCluster) proc(i int) *cluster.Child {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.procs[i]
}

// startedAt returns when node i's latest process was started.
func (cl *benchCluster) startedAt(i int) time.Time {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.started[i]
}

// exited returns an error naming a node whose process exited without
// being asked to, with the end of its log; nil if none did.
func (cl *benchCluster) exited() error {
	for i := range cl.nodes {
		p := cl.proc(i)
		if p == nil || p.Stopping() {
			continue
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s (pid %d) exited: %v; its log ends:\n  %s", p.Name, p.PID(), p.Err(),
				strings.Join(cluster.TailFile(filepath.Join(cl.dir, p.Name+".log"), 5), "\n  "))
		default:
		}
	}
	return nil
}

// kill kills node i as kill -9 does and waits until it is reaped. It
// returns when the signal was sent.
func (cl *benchCluster) kill(i int) (time.Time, error) {
	p := cl.proc(i)
	at := time.Now()
	if err := p.Kill(); err != nil {
		return at, err
	}
	<-p.Done()
	return at, nil
}

// close kills every process it started (by PID, SIGKILL: the data is
// thrown away) and waits until all are reaped, then removes the directory
// unless asked to keep it or the repetition failed.
func (cl *benchCluster) close(failed bool) {
	cl.stopWatch()
	cl.watchWG.Wait()
	cl.l.KillAll()
	cl.hc.CloseIdleConnections()
	cl.mu.Lock()
	for _, f := range cl.logs {
		f.Close()
	}
	cl.mu.Unlock()
	if cl.o.keep || failed {
		cl.o.say("data dirs and logs kept in %s", cl.dir)
		return
	}
	os.RemoveAll(cl.dir)
}

// waitServing waits until node i's API answers.
func (cl *benchCluster) waitServing(ctx context.Context, i int, timeout time.Duration) error {
	return cluster.WaitFor(ctx, timeout, 5*time.Millisecond, func(ctx context.Context) (bool, string) {
		if err := cl.exited(); err != nil {
			return true, ""
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := cl.cs[i].Info(rctx, ""); err != nil {
			return false, fmt.Sprintf("%s does not answer: %v", cl.names[i], err)
		}
		return true, ""
	})
}

// waitAlive waits until every node in idx sees every node in want alive.
// It polls less often for large clusters.
func (cl *benchCluster) waitAlive(ctx context.Context, idx []int, want []string, timeout time.Duration) error {
	interval := max(100*time.Millisecond, time.Duration(len(idx)*len(want))*50*time.Microsecond)
	var exitErr error
	err := cluster.WaitFor(ctx, timeout, interval, func(ctx context.Context) (bool, string) {
		if exitErr = cl.exited(); exitErr != nil {
			return true, ""
		}
		views, errs := cl.members(ctx, idx)
		for k, i := range idx {
			if errs[k] != nil {
				return false, fmt.Sprintf("%s does not answer: %v", cl.names[i], errs[k])
			}
			for _, w := range want {
				if st := cluster.StatusIn(views[k], w); st != "alive" {
					return false, fmt.Sprintf("%s sees %s as %s", cl.names[i], w, st)
				}
			}
		}
		return true, ""
	})
	if exitErr != nil {
		return exitErr
	}
	return err
}

// all returns the indexes of every node.
func (cl *benchCluster) all() []int {
	idx := make([]int, len(cl.nodes))
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// except returns the indexes of every node but i.
func (cl *benchCluster) except(i int) []int {
	return slices.DeleteFunc(cl.all(), func(j int) bool { return j == i })
}

// eachNode calls fn for every node in idx concurrently, at most 32 at a
// time, and returns the errors by position in idx.
func (cl *benchCluster) eachNode(idx []int, fn func(k, i int) error) []error {
	errs := make([]error, len(idx))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for k, i := range idx {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[k] = fn(k, i)
		}()
	}
	wg.Wait()
	return errs
}

// members asks each node in idx for its member list.
func (cl *benchCluster) members(ctx context.Context, idx []int) ([][]api.Member, []error) {
	views := make([][]api.Member, len(idx))
	errs := cl.eachNode(idx, func(k, i int) error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		views[k], err = cl.cs[i].Members(rctx, "")
		return err
	})
	return views, errs
}

// infos asks each node in idx for its Info.
func (cl *benchCluster) infos(ctx context.Context, idx []int) ([]*api.Info, error) {
	out := make([]*api.Info, len(idx))
	errs := cl.eachNode(idx, func(k, i int) error {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var err error
		out[k], err = cl.cs[i].Info(rctx, "")
		if err != nil {
			return fmt.Errorf("%s: info: %w", cl.names[i], err)
		}
		return nil
	})
	return out, errors.Join(errs...)
}

// converged reports whether every node in idx has the same store digest
// and, if not, which differ.
func (cl *benchCluster) converged(ctx context.Context, idx []int) (bool, string, error) {
	infos, err := cl.infos(ctx, idx)
	if err != nil {
		return false, "", err
	}
	d0 := infos[0].Store.Digest
	for k, in := range infos {
		if in.Store.Digest != d0 {
			return false, fmt.Sprintf("%s has digest %s (%d keys), %s has %s (%d keys)",
				cl.names[idx[k]], in.Store.Digest, in.Store.Keys, cl.names[idx[0]], d0, infos[0].Store.Keys), nil
		}
	}
	return true, "", nil
}

// waitConverged polls the digests of the nodes in idx every interval
// until they are equal. It returns when the check that first saw them
// equal returned, and how many checks that took: if it was the first, the
// nodes may have agreed before it began.
func (cl *benchCluster) waitConverged(ctx context.Context, idx []int, interval, timeout time.Duration) (time.Time, int, error) {
	var at time.Time
	checks := 0
	var exitErr error
	err := cluster.WaitFor(ctx, timeout, interval, func(ctx context.Context) (bool, string) {
		if exitErr = cl.exited(); exitErr != nil {
			return true, ""
		}
		checks++
		ok, why, err := cl.converged(ctx, idx)
		if err != nil {
			return false, err.Error()
		}
		if ok {
			at = time.Now()
		}
		return ok, why
	})
	if exitErr != nil {
		return at, checks, exitErr
	}
	return at, checks, err
}

// promSample is one scrape of /metrics: series ("name{labels}") to value.
type promSample map[string]float64

// metrics scrapes node i's /metrics.
func (cl *benchCluster) metrics(ctx context.Context, i int) (promSample, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, "GET", "http://"+cl.nodes[i].API+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: metrics: %w", cl.names[i], err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: metrics: %s", cl.names[i], resp.Status)
	}
	return parseProm(resp.Body)
}

// metricsAll scrapes every node in idx.
func (cl *benchCluster) metricsAll(ctx context.Context, idx []int) ([]promSample, error) {
	out := make([]promSample, len(idx))
	errs := cl.eachNode(idx, func(k, i int) error {
		var err error
		out[k], err = cl.metrics(ctx, i)
		return err
	})
	return out, errors.Join(errs...)
}

// parseProm reads Prometheus text format, ignoring comments; a series'
// key is its name and labels as written.
func parseProm(r io.Reader) (promSample, error) {
	p := promSample{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		p[strings.TrimSpace(line[:i])] = v
	}
	return p, sc.Err()
}

// sum adds every series of the metric name.
func (p promSample) sum(name string) float64 {
	t := 0.0
	for k, v := range p {
		if k == name || strings.HasPrefix(k, name+"{") {
			t += v
		}
	}
	return t
}

// byKind returns the metric's series by their kind label.
func (p promSample) byKind(name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range p {
		rest, ok := strings.CutPrefix(k, name+"{")
		if !ok {
			continue
		}
		_, after, ok := strings.Cut(rest, `kind="`)
		if !ok {
			continue
		}
		kind, _, _ := strings.Cut(after, `"`)
		out[kind] += v
	}
	return out
}

// promDelta is after − before, summed over the nodes, for each series.
func promDelta(before, after []promSample) promSample {
	out := promSample{}
	for k := range after {
		for s, v := range after[k] {
			out[s] += v
			if k < len(before) && before[k] != nil {
				out[s] -= before[k][s]
			}
		}
	}
	return out
}

// benchTraffic is what nodes sent and received over an interval, from
// /metrics. A node counts every replication message it sends: requests,
// one-way pushes and the replies it serves; and every one it receives.
type benchTraffic struct {
	GossipPackets float64            `json:"gossip_packets"` // memberlist UDP packets sent
	GossipStreams float64            `json:"gossip_streams"` // memberlist TCP streams opened (push/pull, fallback probes)
	GossipBytes   float64            `json:"gossip_bytes"`   // UDP bytes sent; stream bytes are not counted
	ReplSent      map[string]float64 `json:"repl_sent"`      // replication messages sent, by kind
	ReplRecv      map[string]float64 `json:"repl_received"`  // replication messages received, by kind
	ReplBytesSent map[string]float64 `json:"repl_bytes_sent"`
	ReplBytesRecv map[string]float64 `json:"repl_bytes_received"`
}

func trafficOf(d promSample) benchTraffic {
	return benchTraffic{
		GossipPackets: d.sum("peerctl_gossip_packets_sent_total"),
		GossipStreams: d.sum("peerctl_gossip_streams_opened_total"),
		GossipBytes:   d.sum("peerctl_gossip_bytes_sent_total"),
		ReplSent:      d.byKind("peerctl_replication_messages_sent_total"),
		ReplRecv:      d.byKind("peerctl_replication_messages_received_total"),
		ReplBytesSent: d.byKind("peerctl_replication_bytes_sent_total"),
		ReplBytesRecv: d.byKind("peerctl_replication_bytes_received_total"),
	}
}

func sumMap(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

// messages counts every message sent: gossip packets and streams, and
// replication messages of every kind, replies included (as Maelstrom
// counts a reply as a message).
func (t benchTraffic) messages() float64 {
	return t.GossipPackets + t.GossipStreams + sumMap(t.ReplSent)
}

// bytes counts gossip UDP bytes and replication bytes sent.
func (t benchTraffic) bytes() float64 {
	return t.GossipBytes + sumMap(t.ReplBytesSent)
}

// rssBytes reads a process's resident set size from /proc.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read RSS of pid %d (Linux only): %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// benchRepeat runs body with a fresh cluster of n nodes and always closes
// it, keeping its directory if body failed.
func withCluster(ctx context.Context, o *benchOpts, n int, extra []string, body func(cl *benchCluster) error) error {
	cl, err := newBenchCluster(o, n, extra...)
	if err != nil {
		return err
	}
	failed := true
	defer func() { cl.close(failed) }()
	if err := body(cl); err != nil {
		return err
	}
	failed = false
	return nil
}

// form starts the cluster and waits until every node sees every node
// alive.
func (cl *benchCluster) form(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	if err := cl.start(ctx); err != nil {
		return 0, err
	}
	if err := cl.waitAlive(ctx, cl.all(), cl.names, timeout); err != nil {
		return 0, fmt.Errorf("cluster of %d did not form: %w", len(cl.nodes), err)
	}
	return time.Since(t0), nil
}

// getJSON GETs u with the cluster's client and decodes the JSON reply.
func getJSON(ctx context.Context, cl *benchCluster, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// procCPU is the launcher's reading of a process's CPU time.
var procCPU = cluster.ProcCPU

// cpuUsed returns the CPU time used so far by the agents' current
// processes and by this process.
func (cl *benchCluster) cpuUsed() (agents, harness time.Duration) {
	for i := range cl.nodes {
		if p := cl.proc(i); p != nil {
			if d, err := procCPU(p.PID()); err == nil {
				agents += d
			}
		}
	}
	harness, _ = procCPU(os.Getpid())
	return agents, harness
}
