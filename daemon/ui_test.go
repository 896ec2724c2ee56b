package daemon

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/peerctl/peerctl/internal/ui"
)

// TestDashboardServed checks that the API serves the dashboard at / and
// /ui/ with its policy, also through ?node= forwarding, that unknown paths
// stay 404, and that Info reports RSS and writes.
func TestDashboardServed(t *testing.T) {
	nodes := startCluster(t, 2)
	base := "http://" + nodes[0].APIAddr()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, p := range []string{"/", "/ui/", "/?node=n2", "/ui/app.js"} {
		resp, body := get(p)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != ui.CSP {
			t.Errorf("GET %s: %d, CSP %q", p, resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
		}
		if !strings.Contains(body, "data-status") && !strings.Contains(body, "/ui/app.js") {
			t.Errorf("GET %s: not the dashboard: %.100q", p, body)
		}
	}
	for _, p := range []string{"/nothing", "/ui/nothing.js", "/v1/nothing"} {
		if resp, _ := get(p); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d; want 404", p, resp.StatusCode)
		}
	}
	info := nodes[0].Info()
	if info.RSSBytes <= 0 && runtime.GOOS == "linux" {
		t.Errorf("Info.RSSBytes = %d on Linux; want > 0", info.RSSBytes)
	}
}
