package browser

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestDashboardToken: on agents that want an API token the page itself
// loads (its files hold no data), says it needs the token, and once given
// it shows the cluster and streams events with fetch, sending the token.
func TestDashboardToken(t *testing.T) {
	ctx := newBrowser(t)
	const token = "s12ui-browser-token"
	nodes, _ := startNodes(t, 2, "--token", token)
	// The page is served without the token; the API answers 401 without it.
	waitAPI(t, formTimeout, "node1 serves the page", func(ctx context.Context) (bool, string) {
		for path, want := range map[string]int{"/": 200, "/v1/members": 401} {
			resp, err := http.Get("http://" + nodes[0].API + path)
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				return false, fmt.Sprintf("GET %s: %d, want %d", path, resp.StatusCode, want)
			}
		}
		return true, ""
	})
	do(t, ctx, chromedp.Navigate("http://"+nodes[0].API+"/"))
	waitPage(t, ctx, formTimeout, "the page asks for the token", `(() => {
		const c = document.getElementById('conn').textContent;
		return c.startsWith('API token required') ? '' : c;
	})()`)
	do(t, ctx, chromedp.SetValue(chromedp.CSS(`#token`), token))
	do(t, ctx, chromedp.Click(chromedp.CSS(`#token-save`)))
	waitPage(t, ctx, formTimeout, "two nodes alive, events through fetch", `(() => {
		const s = [...document.querySelectorAll('g[data-node]')];
		const alive = s.filter(e => e.dataset.status === 'alive').length;
		const ev = document.getElementById('stream').textContent;
		return alive === 2 && ev === 'events: live (fetch)' ? '' : alive + ' alive, ' + ev + ', ' + document.getElementById('conn').textContent;
	})()`)
	// A write from the page reaches node2 (the table polls ?all=1 with the token).
	do(t, ctx, chromedp.SetValue(chromedp.CSS(`#put-key`), "with-token"))
	do(t, ctx, chromedp.Click(chromedp.CSS(`#do-put`)))
	waitPage(t, ctx, pageTimeout, "with-token at node2", `(() => {
		const c = document.querySelector('tr[data-key="with-token"] td[data-node="node2"]');
		return c && c.dataset.version.endsWith('@node1') ? '' : 'not yet: ' + document.getElementById('result').textContent;
	})()`)
}
