// Package browser tests the dashboard (internal/ui) in a real browser:
// Debian's chromium, headless, driven with chromedp, against five real
// `peerctl agent` daemons of the built binary on loopback. Each step takes
// a screenshot: into the test's temporary directory, or, with
// PEERCTL_SCREENSHOTS=DIR (`just screenshots` sets docs/screenshots, which
// the README shows), into DIR, so a test run leaves the checkout as it was.
//
// Without a chromium (or Chrome) binary the test skips with one line
// saying so; .ci/run installs chromium with apt-get where it can. `go test
// -short` skips it too. PEERCTL_CHROMIUM names the browser to use.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/peerctl/peerctl/e2e/internal/procs"
	"github.com/peerctl/peerctl/internal/cluster"
)

// peerctl is the binary under test, built by TestMain; nil in -short mode.
var peerctl *procs.Binary

func TestMain(m *testing.M) {
	os.Exit(procs.Main(m, "browser", "../..", &peerctl))
}

// Deadlines. They hold on a loaded 2-core machine running the whole suite.
const (
	formTimeout   = 30 * time.Second // five agents see each other alive
	pageTimeout   = 15 * time.Second // the page shows what the API says
	detectTimeout = 10 * time.Second // the page shows a killed node failed (the bound)
	splitTimeout  = 30 * time.Second // both sides of a partition see the other down
	healTimeout   = 30 * time.Second // after a heal every survivor sees every survivor alive
	poll          = 50 * time.Millisecond
)

// findBrowser returns the path of a chromium or Chrome binary, or "".
func findBrowser() string {
	if p := os.Getenv("PEERCTL_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// shotsDir returns where this test's screenshots go: PEERCTL_SCREENSHOTS,
// else a temporary directory removed after the test.
func shotsDir(t *testing.T) string {
	if d := os.Getenv("PEERCTL_SCREENSHOTS"); d != "" {
		return d
	}
	return t.TempDir()
}

// TestDashboard drives the dashboard through what a person would do: look
// at a healthy cluster, kill a node, partition the rest and look from
// each side, heal, and write a key.
func TestDashboard(t *testing.T) {
	ctx := newBrowser(t)
	nodes, started := startNodes(t, 5)

	page := "http://" + nodes[0].API + "/"
	do(t, ctx, chromedp.Navigate(page))
	start := time.Now()
	waitPage(t, ctx, pageTimeout, "five nodes alive", `(() => {
		const s = [...document.querySelectorAll('[data-node][data-status]')].filter(e => e.tagName === 'g');
		return s.length === 5 && s.every(e => e.dataset.status === 'alive') ? '' :
			'nodes: ' + s.map(e => e.dataset.node + '=' + e.dataset.status).join(' ');
	})()`)
	t.Logf("page shows five alive nodes %v after loading", time.Since(start).Round(time.Millisecond))
	// The raft group forms after the agents see each other (three alive
	// members by default); the Nodes table then shows its roles as node1
	// sees them: exactly one leader, every node a role.
	waitPage(t, ctx, formTimeout, "one raft leader in the Nodes table", `(() => {
		const c = [...document.querySelectorAll('#stats tbody tr[data-node] td[data-role]')];
		const roles = c.map(e => e.closest('tr').dataset.node + '=' + (e.dataset.role || '?')).join(' ');
		if (c.length !== 5) return c.length + ' role cells: ' + roles;
		const leaders = c.filter(e => e.dataset.role === 'leader').length;
		return leaders === 1 && c.every(e => e.dataset.role !== '') ? '' : leaders + ' leaders: ' + roles;
	})()`)
	t.Logf("page shows one raft leader %v after loading", time.Since(start).Round(time.Millisecond))
	screenshot(t, ctx, "1-cluster.png")

	// Kill node5 from the page: select it in the picture, press kill.
	do(t, ctx, chromedp.Click(chromedp.CSS(`g[data-node="node5"] circle`)))
	waitPage(t, ctx, pageTimeout, "node5 selected", `document.querySelector('g[data-node="node5"]').classList.contains('selected') ? '' : 'not selected'`)
	do(t, ctx, chromedp.Click(chromedp.CSS(`#do-kill`)))
	started[4].ExpectExit()
	start = time.Now()
	waitPage(t, ctx, detectTimeout, "node5 failed on the page", statusIs("node5", "failed"))
	t.Logf("page shows node5 failed %v after the kill was clicked", time.Since(start).Round(time.Millisecond))
	reportDelay(t, ctx, "node5")
	screenshot(t, ctx, "2-killed.png")

	// Partition node1,node2 / node3,node4 from the page: each click on a
	// name moves it – → A → B.
	for _, c := range []struct {
		node   string
		clicks int
		side   string
	}{{"node1", 1, "A"}, {"node2", 1, "A"}, {"node3", 2, "B"}, {"node4", 2, "B"}} {
		for range c.clicks {
			do(t, ctx, chromedp.Click(chromedp.CSS(`button[data-side-node="`+c.node+`"]`)))
		}
		waitPage(t, ctx, pageTimeout, c.node+" on side "+c.side, fmt.Sprintf(`(() => {
			const b = document.querySelector('button[data-side-node=%q]');
			return b.dataset.side === %q ? '' : 'side ' + b.dataset.side;
		})()`, c.node, c.side))
	}
	do(t, ctx, chromedp.Click(chromedp.CSS(`#do-partition`)))
	waitPage(t, ctx, pageTimeout, "the partition ordered", `(() => {
		const r = document.getElementById('result');
		return r.dataset.ok === '1' && r.textContent.includes('partition') ? '' : 'result: ' + r.textContent;
	})()`)
	waitPage(t, ctx, splitTimeout, "node1 sees node3 and node4 down", downIs([]string{"node3", "node4"}, []string{"node1", "node2"}))
	screenshot(t, ctx, "3-partition-from-node1.png")
	view(t, ctx, "node3")
	waitPage(t, ctx, splitTimeout, "node3 sees node1 and node2 down", downIs([]string{"node1", "node2"}, []string{"node3", "node4"}))
	screenshot(t, ctx, "4-partition-from-node3.png")

	// Heal from the page; look from node3 until it sees node1..4 alive.
	do(t, ctx, chromedp.Click(chromedp.CSS(`#do-heal`)))
	waitPage(t, ctx, healTimeout, "node3 sees node1..node4 alive", downIs(nil, []string{"node1", "node2", "node3", "node4"}))
	view(t, ctx, "node1")
	waitPage(t, ctx, healTimeout, "node1 sees node1..node4 alive", downIs(nil, []string{"node1", "node2", "node3", "node4"}))
	screenshot(t, ctx, "5-healed.png")

	// Write a key at node2 from the page; the key table must show the same
	// version at node1..node4 (node5 is dead).
	do(t, ctx, chromedp.SetValue(chromedp.CSS(`#put-key`), "greeting"))
	do(t, ctx, chromedp.SetValue(chromedp.CSS(`#put-value`), "hello from the dashboard"))
	do(t, ctx, chromedp.SetValue(chromedp.CSS(`#put-node`), "node2"))
	do(t, ctx, chromedp.Click(chromedp.CSS(`#do-put`)))
	waitPage(t, ctx, pageTimeout, "greeting at node1..node4", `(() => {
		const row = document.querySelector('tr[data-key="greeting"]');
		if (!row) return 'no row for greeting: ' + document.getElementById('result').textContent;
		const cells = ['node1','node2','node3','node4'].map(n => row.querySelector('td[data-node="' + n + '"]'));
		const v = cells[1] && cells[1].dataset.version;
		if (!v || !v.endsWith('@node2')) return 'node2 has ' + v;
		const bad = cells.filter(c => !c || c.dataset.version !== v);
		return bad.length ? 'not yet: ' + cells.map(c => c ? c.dataset.node + '=' + c.dataset.version : '?').join(' ') : '';
	})()`)
	screenshot(t, ctx, "6-key.png")
	// With an API token the page streams events with fetch (EventSource
	// cannot send the header); a daemon without a token ignores it. A
	// write at node3 must reach the page through that stream.
	do(t, ctx, chromedp.SetValue(chromedp.CSS(`#token`), "page-token"))
	do(t, ctx, chromedp.Click(chromedp.CSS(`#token-save`)))
	waitPage(t, ctx, pageTimeout, "the fetch stream", `(() => {
		const s = document.getElementById('stream').textContent;
		return sessionStorage.getItem('peerctl-token') === 'page-token' && s === 'events: live (fetch)' ? '' : s;
	})()`)
	if _, err := cluster.Client(nodes[2].API).Put(ctx, "", "via-fetch", []byte("x")); err != nil {
		t.Fatalf("put via-fetch: %v", err)
	}
	waitPage(t, ctx, pageTimeout, "via-fetch written at node3", `(() => {
		const c = document.querySelector('tr[data-key="via-fetch"] td[data-node="node3"]');
		return c && c.dataset.version.endsWith('@node3') ? '' : 'no cell';
	})()`)

	// The page's table matches what the daemons hold.
	all, err := cluster.Client(nodes[0].API).GetAll(ctx, "greeting")
	if err != nil {
		t.Fatalf("get greeting ?all=1: %v", err)
	}
	for _, nk := range all {
		if nk.Node != "node5" && (nk.KV == nil || string(nk.KV.Value) != "hello from the dashboard") {
			t.Errorf("%s holds %+v, want the value written from the page", nk.Node, nk.KV)
		}
	}
}

// startNodes starts n agents node1..nodeN (node1 first, the others
// joining it) and waits until all see all alive. They are stopped when the
// test ends. It returns their addresses and processes, in node order.
// extra flags go to every agent; with them it does not wait (the API may
// want a token).
func startNodes(t *testing.T, n int, extra ...string) ([]cluster.Node, []*procs.Proc) {
	t.Helper()
	base := procs.FreePorts(t, 2*n)
	nodes := cluster.Layout(n, base, t.TempDir())
	logs := t.TempDir()
	var started []*procs.Proc
	t.Cleanup(func() {
		for _, p := range started {
			p.Stop(t)
		}
		if t.Failed() {
			for _, p := range started {
				t.Logf("%s log tail:\n%s", p.Name, procs.Tail(p.Output(), 15))
			}
		}
	})
	names := make([]string, n)
	for i, nd := range nodes {
		var join []string
		if i > 0 {
			join = []string{nodes[0].Gossip}
		}
		names[i] = nd.Name
		started = append(started, peerctl.Start(t, nd.Name, filepath.Join(logs, nd.Name+".log"), nil, nd.AgentArgs("local", "", join, extra...)...))
	}
	if len(extra) > 0 {
		return nodes, started
	}
	waitAPI(t, formTimeout+time.Duration(n)*time.Second, fmt.Sprintf("all %d alive", n), func(ctx context.Context) (bool, string) {
		return cluster.AllAlive(ctx, nodes, names)
	})
	return nodes, started
}

// newBrowser starts a headless browser for the test, or skips the test
// with one line saying why there is none. Uncaught exceptions and
// Content-Security-Policy violations in its pages fail the test: the page
// must run clean under its own policy.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if peerctl == nil {
		t.Skip("browser: starts daemons and a browser: skipped in -short mode")
	}
	exe := findBrowser()
	if exe == "" {
		t.Skip("browser: SKIPPED: no chromium found (apt-get install chromium, or set PEERCTL_CHROMIUM): the dashboard was not tested in a browser")
	}
	// Headless, no sandbox (CI runs as root), its own profile, and its
	// own TMPDIR: chromium leaves its singleton socket's directory there,
	// which the test's temporary directory then removes.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.WindowSize(1500, 1150), chromedp.UserDataDir(t.TempDir()),
		chromedp.Env("TMPDIR="+t.TempDir()))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Skipf("browser: SKIPPED: %s does not start: %v", exe, err)
	}
	ctx, tcancel := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(tcancel)
	shots := shotsDir(t)
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	shotDirs.Store(t.Name(), shots)
	var problems struct {
		sync.Mutex
		list []string
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		var p string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			p = fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, d.Text)
			if d.Exception != nil {
				p += " " + d.Exception.Description
			}
		case *log.EventEntryAdded:
			if strings.Contains(e.Entry.Text, "Content Security Policy") {
				p = "csp: " + e.Entry.Text
			}
		}
		if p != "" {
			problems.Lock()
			if len(problems.list) < 20 && !slices.Contains(problems.list, p) {
				problems.list = append(problems.list, p)
			}
			problems.Unlock()
		}
	}); err != nil {
		t.Fatalf("browser: listen: %v", err)
	}
	t.Cleanup(func() {
		problems.Lock()
		defer problems.Unlock()
		for _, p := range problems.list {
			t.Errorf("page: %s", p)
		}
	})
	return ctx
}

// statusIs is a page check: the element of node has data-status status.
func statusIs(node, status string) string {
	return fmt.Sprintf(`(() => {
		const e = document.querySelector('g[data-node=%q]');
		return e && e.dataset.status === %q ? '' : %q + ' is ' + (e ? e.dataset.status : 'not drawn');
	})()`, node, status, node)
}

// downIs is a page check: in the viewpoint's picture the nodes in down are
// suspect or failed and the nodes in up are alive.
func downIs(down, up []string) string {
	return fmt.Sprintf(`(() => {
		const st = n => { const e = document.querySelector('g[data-node="' + n + '"]'); return e ? e.dataset.status : 'missing'; };
		const down = %s, up = %s;
		const bad = down.filter(n => !['suspect', 'failed'].includes(st(n))).concat(up.filter(n => st(n) !== 'alive'));
		return bad.length ? 'from ' + document.getElementById('view').value + ': ' + bad.map(n => n + '=' + st(n)).join(' ') : '';
	})()`, jsList(down), jsList(up))
}

func jsList(ns []string) string {
	q := make([]string, len(ns))
	for i, n := range ns {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// view switches the page's viewpoint as the selector does.
func view(t *testing.T, ctx context.Context, node string) {
	t.Helper()
	do(t, ctx, chromedp.SetValue(chromedp.CSS(`#view`), node))
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('view').dispatchEvent(new Event('change')); true`)); err != nil {
		t.Fatalf("switch view to %s: %v", node, err)
	}
}

// reportDelay logs how long after the daemon's member event the page
// changed node's element, when the change came from the event stream.
func reportDelay(t *testing.T, ctx context.Context, node string) {
	t.Helper()
	d, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => {
		const e = document.querySelector('g[data-node=%q]');
		return [Number(e.dataset.eventTime || 0), Number(e.dataset.changedAt || 0)];
	})()`, node)))
	if err != nil {
		t.Fatalf("read %s's change times: %v", node, err)
	}
	if d[0] == 0 {
		t.Logf("page: %s's change came from polling /v1/members, not from an event: no event time to measure from", node)
		return
	}
	t.Logf("page: %s shown failed %.0f ms after the daemon's member event (event time %s)", node, d[1]-d[0],
		time.UnixMilli(int64(d[0])).UTC().Format("15:04:05.000"))
}

func do(t *testing.T, ctx context.Context, a chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, a); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// waitPage evaluates check, a JavaScript expression that is "" when the
// page is as wanted and otherwise says what it shows, until it is "" or
// timeout passes.
func waitPage(t *testing.T, ctx context.Context, timeout time.Duration, what, check string) {
	t.Helper()
	err := cluster.WaitFor(ctx, timeout, poll, func(ctx context.Context) (bool, string) {
		why, err := chromedp.Run(ctx, chromedp.Evaluate[string](check))
		if err != nil {
			return false, err.Error()
		}
		return why == "", why
	})
	if err != nil {
		screenshot(t, ctx, "failed-"+strings.ReplaceAll(what, " ", "-")+".png")
		t.Fatalf("page: %s: %v", what, err)
	}
}

func waitAPI(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	if err := cluster.WaitFor(context.Background(), timeout, 100*time.Millisecond, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// shotDirs maps a test's name to its screenshot directory (newBrowser).
var shotDirs sync.Map

// screenshot saves the viewport as a PNG in the test's screenshot
// directory (shotsDir), or, for a failure's picture, in the system's
// temporary directory, kept for inspection.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	dir := os.TempDir()
	if d, ok := shotDirs.Load(t.Name()); ok {
		dir = d.(string)
	}
	if strings.HasPrefix(name, "failed-") {
		dir = os.TempDir()
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot %s", p)
}
