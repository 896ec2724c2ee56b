package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest sends one request with exactly the given headers (Host
// included, if set) and returns the status and body.
func rawRequest(t *testing.T, method, url string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stillServes checks that the node answers and has not been stopped.
func stillServes(t *testing.T, nd *testNode) {
	t.Helper()
	if _, err := NewClient(nd.APIAddr()).Info(context.Background(), ""); err != nil {
		t.Fatalf("node no longer serves: %v", err)
	}
	select {
	case <-nd.stopCh:
		t.Fatal("node was stopped")
	default:
	}
}

// A web page may make the browser send "simple" requests anywhere: a form
// POST (urlencoded, multipart, text/plain) with its Origin, and no custom
// header. The API refuses them all, whatever the path. Reference: issue 7,
// "Any web page can kill your nodes".
func TestCrossSiteRequestsRefused(t *testing.T) {
	nodes := startCluster(t, 2)
	nd := nodes[0]
	base := "http://" + nd.APIAddr()
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}
	plain := map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": "http://evil.example"}
	noOrigin := map[string]string{"Content-Type": "text/plain"} // e.g. a page whose Origin the browser withholds
	for _, tt := range []struct {
		method, path string
		hdr          map[string]string
		body         string
	}{
		{"POST", "/v1/kill", form, "a=b"},
		{"POST", "/v1/kill", noOrigin, ""},
		{"POST", "/v1/leave", form, "a=b"},
		{"POST", "/v1/kv/x", plain, "pwned"},
		{"PUT", "/v1/kv/x", noOrigin, "pwned"},
		{"DELETE", "/v1/kv/x", map[string]string{}, ""},
		{"POST", "/v1/internal/push", plain, "\x00"},
		{"POST", "/v1/internal/stream", plain, "\x00\x00"},
		{"POST", "/v1/faults", plain, `{"kind":"pause","nodes":["*"]}`},
		{"POST", "/v1/faults/table", noOrigin, `{"faults":[]}`},
		{"DELETE", "/v1/faults", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, ""},
		// Through the forwarding: refused at the first node.
		{"POST", "/v1/kill?node=n2", form, "a=b"},
		// A foreign Origin is refused even with an allowed content type.
		{"POST", "/v1/kv/x", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, `"v"`},
		{"GET", "/v1/kv", map[string]string{"Origin": "null"}, ""},
	} {
		code, body := rawRequest(t, tt.method, base+tt.path, tt.hdr, tt.body)
		if code != http.StatusForbidden || !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s %v: %d %s; want 403 with a JSON error", tt.method, tt.path, tt.hdr, code, body)
		}
	}
	stillServes(t, nodes[0])
	stillServes(t, nodes[1])
	if _, err := nd.Store().Get("x"); err == nil {
		t.Error("a refused request stored key x")
	}
	if n := len(nd.faults.Rules()) + len(nodes[1].faults.Rules()); n != 0 {
		t.Errorf("a refused request installed %d fault rules", n)
	}

	// What peerctl sends is served: the header, or a non-simple type, and
	// the API's own origin.
	code, body := rawRequest(t, "PUT", base+"/v1/kv/ok1", map[string]string{"X-Peerctl-Client": "1"}, "v")
	if code != http.StatusOK {
		t.Errorf("PUT with X-Peerctl-Client: %d %s", code, body)
	}
	code, body = rawRequest(t, "PUT", base+"/v1/kv/ok2", map[string]string{"Content-Type": "application/octet-stream", "Origin": base}, "v")
	if code != http.StatusOK {
		t.Errorf("PUT octet-stream from the API's own origin: %d %s", code, body)
	}
	if _, err := NewClient(nd.APIAddr()).Put(context.Background(), "n2", "ok3", []byte("v")); err != nil {
		t.Errorf("Client.Put forwarded to n2: %v", err)
	}
}

// A page at a name the attacker controls, re-pointed at 127.0.0.1 (DNS
// rebinding), is same-origin with the API as far as the browser knows; its
// requests carry its own name in Host. A loopback API refuses them.
func TestRebindingHostRefused(t *testing.T) {
	nd := startNode(t, testConfig(t, "n1", t.TempDir()))
	_, port, _ := net.SplitHostPort(nd.APIAddr())
	base := "http://" + nd.APIAddr()
	for _, host := range []string{"evil.example:" + port, "evil.example", "attacker.localhost.evil.example:" + port, "10.1.2.3:" + port, "0.0.0.0:" + port} {
		code, body := rawRequest(t, "GET", base+"/v1/info", map[string]string{"Host": host}, "")
		if code != http.StatusForbidden || !strings.Contains(body, "Host") {
			t.Errorf("GET with Host %q: %d %s; want 403 naming Host", host, code, body)
		}
		// Same-origin from the rebinding page's view: Origin matches Host.
		code, _ = rawRequest(t, "POST", base+"/v1/kill", map[string]string{"Host": host, "Origin": "http://" + host, "X-Peerctl-Client": "1"}, "")
		if code != http.StatusForbidden {
			t.Errorf("POST /v1/kill with Host %q: %d; want 403", host, code)
		}
	}
	stillServes(t, nd)
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST.:" + port, "[::1]:" + port, "n1.localhost:" + port} {
		if code, body := rawRequest(t, "GET", base+"/v1/info", map[string]string{"Host": host}, ""); code != http.StatusOK {
			t.Errorf("GET with Host %q: %d %s; want 200", host, code, body)
		}
	}
}

// A page elsewhere (another site, or another port of this host) can make
// the browser send GETs without Origin (<img src>); the browser marks them
// Sec-Fetch-Site, and the API refuses them but for the dashboard's files,
// which a link may open. The dashboard's own calls are same-origin.
func TestFetchMetadataCrossSiteRefused(t *testing.T) {
	nd := startNode(t, testConfig(t, "n1", t.TempDir()))
	base := "http://" + nd.APIAddr()
	for _, site := range []string{"cross-site", "same-site"} {
		for _, path := range []string{"/v1/info", "/v1/check", "/v1/events?cluster=1", "/v1/kv/k", "/ui/?node=n1"} {
			code, body := rawRequest(t, "GET", base+path, map[string]string{"Sec-Fetch-Site": site}, "")
			if code != http.StatusForbidden || !strings.Contains(body, "Sec-Fetch-Site") {
				t.Errorf("GET %s marked %s: %d %s; want 403 naming Sec-Fetch-Site", path, site, code, body)
			}
		}
		for _, path := range []string{"/", "/ui/app.js"} {
			if code, _ := rawRequest(t, "GET", base+path, map[string]string{"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate"}, ""); code != http.StatusOK {
				t.Errorf("GET %s marked %s: %d; want 200 (the dashboard's files)", path, site, code)
			}
		}
	}
	for _, site := range []string{"same-origin", "none"} {
		if code, body := rawRequest(t, "GET", base+"/v1/info", map[string]string{"Sec-Fetch-Site": site}, ""); code != http.StatusOK {
			t.Errorf("GET /v1/info marked %s: %d %s; want 200", site, code, body)
		}
	}
}

// TestGuardHostRule checks the Host rule for APIs bound to loopback and
// elsewhere (0.0.0.0, a container reached by its service name).
func TestGuardHostRule(t *testing.T) {
	lo := newGuard(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7947}, "localhost:7947", "127.0.0.1:7947")
	any := newGuard(&net.TCPAddr{IP: net.IPv4zero, Port: 7947}, "0.0.0.0:7947", "node2:7947")
	named := newGuard(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7947}, "127.0.0.1:7947", "api.internal:7947")
	for _, tt := range []struct {
		g    *guard
		host string
		want bool
	}{
		{lo, "127.0.0.1:7947", true},
		{lo, "127.9.9.9:7947", true},
		{lo, "[::1]:7947", true},
		{lo, "localhost:7947", true},
		{lo, "", true},
		{lo, "evil.example:7947", false},
		{lo, "192.168.1.5:7947", false},
		{lo, "0.0.0.0:7947", false},
		{lo, "node2:7947", false},
		{any, "node2:7947", true},
		{any, "evil.example:7947", true}, // not decidable: README says the token guards it
		{any, "10.0.0.7:7947", true},
		{named, "api.internal:7947", true},
		{named, "API.INTERNAL.:7947", true},
		{named, "other.internal:7947", false},
	} {
		if got := tt.g.hostOK(tt.host); got != tt.want {
			t.Errorf("hostOK(%q) on %v = %v; want %v", tt.host, tt.g, got, tt.want)
		}
	}
	for _, tt := range []struct {
		origin, host string
		want         bool
	}{
		{"http://127.0.0.1:7947", "127.0.0.1:7947", true},
		{"http://LOCALHOST:7947", "localhost:7947", true},
		{"http://127.0.0.1:7948", "127.0.0.1:7947", false},
		{"https://127.0.0.1:7947", "127.0.0.1:7947", false},
		{"null", "127.0.0.1:7947", false},
		{"http://evil.example", "127.0.0.1:7947", false},
		{"%zz", "127.0.0.1:7947", false},
	} {
		if got := originOK(tt.origin, tt.host); got != tt.want {
			t.Errorf("originOK(%q, %q) = %v; want %v", tt.origin, tt.host, got, tt.want)
		}
	}
}

func TestQueryParseErrorIs400(t *testing.T) {
	nd := startNode(t, testConfig(t, "n1", t.TempDir()))
	if _, err := nd.Put("k1", []byte("v")); err != nil {
		t.Fatal(err)
	}
	base := "http://" + nd.APIAddr()
	for _, q := range []string{"prefix=%ZZ", "prefix=a;b", "node=%"} {
		code, body := rawRequest(t, "GET", base+"/v1/kv?"+q, nil, "")
		if code != http.StatusBadRequest || !strings.Contains(body, "bad query") || strings.Contains(body, "k1") {
			t.Errorf("GET /v1/kv?%s: %d %s; want 400 without keys", q, code, body)
		}
	}
	if code, body := rawRequest(t, "GET", base+"/v1/kv?prefix=%6B", nil, ""); code != http.StatusOK || !strings.Contains(body, `"k1"`) {
		t.Errorf("GET /v1/kv?prefix=%%6B: %d %s; want 200 listing k1", code, body)
	}
}

func TestPprofOnlyWithFlag(t *testing.T) {
	off := startNode(t, testConfig(t, "n1", t.TempDir()))
	cfg := testConfig(t, "n2", t.TempDir())
	cfg.Pprof = true
	on := startNode(t, cfg)
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1"} {
		if code, _ := rawRequest(t, "GET", "http://"+off.APIAddr()+p, nil, ""); code != http.StatusNotFound {
			t.Errorf("GET %s without --pprof: %d; want 404", p, code)
		}
		if code, _ := rawRequest(t, "GET", "http://"+on.APIAddr()+p, nil, ""); code != http.StatusOK {
			t.Errorf("GET %s with --pprof: %d; want 200", p, code)
		}
	}
}

// A flood of warnings about one host logs one line per message and
// interval, and the next line says how many it stood for.
func TestLogLimiter(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := newLogLimiter(time.Hour)
	for i := 0; i < 100; i++ {
		l.warn(log, fmt.Sprintf("10.0.0.1:%d", 1000+i), "bad frame", "i", i)
	}
	l.warn(log, "10.0.0.2:1", "bad frame")
	l.warn(log, "10.0.0.1:1", "refused")
	if got := strings.Count(buf.String(), "\n"); got != 3 {
		t.Fatalf("%d lines logged; want 3:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "remote=10.0.0.1:1000") {
		t.Errorf("first line lacks the remote address:\n%s", buf.String())
	}
	buf.Reset()
	l = newLogLimiter(20 * time.Millisecond)
	l.warn(log, "10.0.0.1:1", "bad frame")
	l.warn(log, "10.0.0.1:2", "bad frame")
	waitFor(t, 5*time.Second, "a second line after the interval", func() error {
		l.warn(log, "10.0.0.1:3", "bad frame")
		if !strings.Contains(buf.String(), "suppressed_since_last=") {
			return fmt.Errorf("logged:\n%s", buf.String())
		}
		return nil
	})
}
