package browser

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/peerctl/peerctl/internal/cluster"
)

// TestDashboardLarge opens the dashboard on a larger cluster under a
// steady write load, kills a node, and reports what it costs the page: its
// slowest render, the event loop's longest stall, and the delay from the
// daemon's member event to the page. It is not part of the default run:
// PEERCTL_BROWSER_NODES=25 go test ./e2e/browser -run Large -v
// runs it (and, with PEERCTL_SCREENSHOTS, saves 7-25-nodes.png there for 25 nodes).
func TestDashboardLarge(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PEERCTL_BROWSER_NODES"))
	if n == 0 {
		t.Skip("browser: set PEERCTL_BROWSER_NODES=25 to run the dashboard on a large cluster")
	}
	if n < 3 || n > 60 {
		t.Fatalf("PEERCTL_BROWSER_NODES=%d: want 3 to 60", n)
	}
	ctx := newBrowser(t)
	nodes, started := startNodes(t, n)
	do(t, ctx, chromedp.Navigate("http://"+nodes[0].API+"/"))
	waitPage(t, ctx, pageTimeout, fmt.Sprintf("%d nodes alive", n), fmt.Sprintf(`(() => {
		const s = [...document.querySelectorAll('g[data-node]')];
		const alive = s.filter(e => e.dataset.status === 'alive').length;
		return s.length === %d && alive === %d ? '' : s.length + ' drawn, ' + alive + ' alive';
	})()`, n, n))
	// Watch the page's event loop: the longest a 50 ms timer was late.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		window.__stall = 0; let last = performance.now();
		setInterval(() => { const now = performance.now(); window.__stall = Math.max(window.__stall, now - last - 50); last = now; }, 50);
		return true;
	})()`)); err != nil {
		t.Fatal(err)
	}

	// 50 writes/s at random nodes for the rest of the test.
	wctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			nd := nodes[1+rand.IntN(len(nodes)-2)] // never the node killed below
			cluster.Client(nd.API).Put(wctx, "", fmt.Sprintf("load/%d", i%200), []byte("x"))
		}
	}()
	t.Cleanup(func() { stop(); wg.Wait() })

	do(t, ctx, chromedp.SetValue(chromedp.CSS(`#put-key`), "load/0"))
	waitPage(t, ctx, pageTimeout, "keys on the page", `document.querySelectorAll('#keys tbody tr').length >= 5 ? '' : 'fewer than 5 keys listed'`)
	screenshot(t, ctx, fmt.Sprintf("7-%d-nodes.png", n))

	last := nodes[n-1].Name
	if err := cluster.Client(nodes[0].API).Kill(ctx, last); err != nil {
		t.Fatal(err)
	}
	started[n-1].ExpectExit()
	waitPage(t, ctx, 2*detectTimeout, last+" failed on the page", statusIs(last, "failed"))
	reportDelay(t, ctx, last)
	screenshot(t, ctx, fmt.Sprintf("8-%d-nodes-killed.png", n))
	stats, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[document.body.dataset.renders, document.body.dataset.renderMaxMs, String(Math.round(window.__stall))]`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("page on %d nodes under 50 writes/s: %s renders, slowest %s ms; longest event-loop stall %s ms", n, stats[0], stats[1], stats[2])
}
