package daemon

// Request guard: what keeps a web page from driving the API.
//
// A browser lets any page send "simple" cross-origin requests without
// asking the target first: GET, HEAD, and POST with an HTML form's content
// types (application/x-www-form-urlencoded, multipart/form-data,
// text/plain) and no custom header. The page cannot read the answer, but
// the request is served, so POST /v1/kill from a form would kill the node.
// Anything else (another content type, a custom header, PUT, DELETE) needs a
// CORS preflight, which this API never answers. So:
//
//  1. Every state-changing request (any method but GET, HEAD and OPTIONS)
//     must carry Content-Type application/json or application/octet-stream,
//     or the header X-Peerctl-Client, which Client and the replication
//     transport always send. A form cannot send either.
//  2. A request whose Origin header is present must come from the API's own
//     origin (http://HOST:PORT of the request; https:// with TLS): browsers send Origin on
//     cross-origin requests, so a page elsewhere is refused even where rule
//     1 would let it through.
//  3. The Host header must name this API (DNS rebinding: a page at
//     evil.example whose name is re-pointed to 127.0.0.1 becomes
//     "same-origin" with the API, and its requests carry Host: evil.example).
//     An API bound to loopback only accepts loopback IP literals, localhost
//     (and *.localhost, which browsers resolve to loopback themselves) and
//     the host names of --api and of the advertised API address. An API
//     bound elsewhere (0.0.0.0, a LAN address, a container reached by its
//     service name) accepts any host: the names it is reached by are not
//     known to it, and a rebinding page could then reach it. The API token
//     guards that case (auth.go): a page cannot know it, and the agent
//     refuses to start off loopback without one unless --insecure-api.
//  4. A request the browser marks Sec-Fetch-Site cross-site or same-site
//     (another port of the same host is same-site) is refused unless it
//     only asks for the dashboard's files (ui.Public): a page elsewhere can
//     make the browser send a GET without Origin (<img src>, <script src>)
//     and, though it cannot read the answer, start work: GET /v1/check asks
//     every member, GET /v1/events?cluster=1 holds event streams open.
//     Browsers send this header on every request; peerctl never does.
//
// The guard runs before anything else, ?node= forwarding included; the
// forwarding node drops Origin once it has checked it.

import (
	"fmt"
	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/ui"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// headerClient marks a request from a peerctl client (api.HeaderClient).
const headerClient = api.HeaderClient

// guard decides which requests the API serves (see the top of the file).
type guard struct {
	tls      bool     // the API serves HTTPS: its origin is https://
	loopback bool     // the API listens on loopback addresses only
	names    []string // host names accepted when loopback (lowercase)
}

// newGuard returns the guard for an API listening at listen (the bound
// address), configured as cfgAPI and advertised as adv.
func newGuard(listen net.Addr, cfgAPI, adv string) *guard {
	g := &guard{names: []string{"localhost"}}
	if ta, ok := listen.(*net.TCPAddr); ok {
		g.loopback = ta.IP.IsLoopback()
	}
	for _, hp := range []string{cfgAPI, adv} {
		if h, _, err := net.SplitHostPort(hp); err == nil && h != "" && net.ParseIP(h) == nil {
			g.names = append(g.names, strings.ToLower(strings.TrimSuffix(h, ".")))
		}
	}
	return g
}

// check returns nil if the request may be served, or why not.
func (g *guard) check(r *http.Request) error {
	if !g.hostOK(r.Host) {
		return fmt.Errorf("request refused: Host %q is not an address of this API (it listens on loopback; use 127.0.0.1, [::1] or localhost)", r.Host)
	}
	if o := r.Header.Get("Origin"); o != "" && !g.originOK(o, r.Host) {
		scheme := "http"
		if g.tls {
			scheme = "https"
		}
		return fmt.Errorf("cross-origin request refused: Origin %q is not this API (%s://%s); the API serves no web pages and takes no requests from them", o, scheme, r.Host)
	}
	if sfs := r.Header.Get("Sec-Fetch-Site"); (sfs == "cross-site" || sfs == "same-site") && !ui.Public(r) {
		return fmt.Errorf("cross-site request refused: the browser marks it Sec-Fetch-Site: %s; only this API's own dashboard may call it", sfs)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if r.Header.Get(headerClient) != "" {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && (mt == "application/json" || mt == "application/octet-stream") {
		return nil
	}
	return fmt.Errorf("%s refused: a state-changing request needs Content-Type application/json (application/octet-stream for raw values) or the header %s: 1, which an HTML form or a simple cross-site request cannot send (peerctl and its Client send it)", r.Method, headerClient)
}

// hostOK reports whether a Host header names this API.
func (g *guard) hostOK(host string) bool {
	if host == "" || !g.loopback {
		return true // HTTP/1.0 without Host; or see the top of the file
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
	if ip := net.ParseIP(h); ip != nil {
		return ip.IsLoopback()
	}
	if strings.HasSuffix(h, ".localhost") {
		return true
	}
	for _, n := range g.names {
		if h == n {
			return true
		}
	}
	return false
}

// originOK is the package's originOK for an API that serves HTTPS (its
// origin is then https://HOST:PORT).
func (g *guard) originOK(origin, host string) bool {
	if g.tls {
		return originOK(strings.Replace(origin, "https://", "http://", 1), host) && strings.HasPrefix(origin, "https://")
	}
	return originOK(origin, host)
}

// originOK reports whether an Origin header is the API's own origin, the
// one a page served from host would have.
func originOK(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return false // includes "null" (sandboxed frames, file:// pages)
	}
	return strings.EqualFold(u.Host, host)
}

// logLimiter lets each warning about one remote host through once per
// interval, so a peer or attacker sending garbage cannot flood the log. It
// keys on the host and the message, not on the name a peer claims (anyone
// can claim any name), so on loopback, where every peer is 127.0.0.1, one
// line stands for all local peers and says how many it stood for. It
// remembers at most logLimiterKeys keys. It is safe for concurrent use.
type logLimiter struct {
	every time.Duration

	mu   sync.Mutex // guards last, quiet
	last map[string]time.Time
	// quiet counts the warnings suppressed per address since its last line.
	quiet map[string]int
}

const logLimiterKeys = 4096

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, last: make(map[string]time.Time), quiet: make(map[string]int)}
}

// warn logs msg with args and the remote address unless the same msg about
// the same host was logged less than every ago; the next line says how many
// were suppressed meanwhile.
func (l *logLimiter) warn(log *slog.Logger, remote, msg string, args ...any) {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	host += " " + msg
	now := time.Now()
	l.mu.Lock()
	if t, ok := l.last[host]; ok && now.Sub(t) < l.every {
		l.quiet[host]++
		l.mu.Unlock()
		return
	}
	if len(l.last) >= logLimiterKeys {
		for k, t := range l.last {
			if now.Sub(t) >= l.every {
				delete(l.last, k)
				delete(l.quiet, k)
			}
		}
		if len(l.last) >= logLimiterKeys {
			// Many addresses at once: keep the log bounded, forget them.
			clear(l.last)
			clear(l.quiet)
		}
	}
	l.last[host] = now
	n := l.quiet[host]
	delete(l.quiet, host)
	l.mu.Unlock()
	args = append(args, "remote", remote)
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	log.Warn(msg, args...)
}
