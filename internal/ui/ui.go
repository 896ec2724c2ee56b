// Package ui is the dashboard every daemon serves at / and /ui/: one page
// of plain JavaScript and SVG, embedded in the binary, with no build step
// and nothing fetched from elsewhere. The page draws the cluster as the node
// it is connected to sees it (or any other node, through ?node=
// forwarding), live from GET /v1/events, and drives the same API as the
// CLI: writes, kill, and every fault.
//
// The page is same-origin with the API and sends X-Peerctl-Client on every
// request, so the daemon's guard (daemon/guard.go) serves it like the CLI;
// with an API token it adds Authorization: Bearer (the token is kept in the
// tab's sessionStorage). Every response carries a strict
// Content-Security-Policy: scripts and styles only from this origin, no
// inline script, connections only to this origin, no framing.
package ui

import (
	"embed"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every dashboard response.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// types maps the served file extensions to their content types.
var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".txt":  "text/plain; charset=utf-8",
}

// Public reports whether r asks only for the dashboard's own files (GET or
// HEAD of / or /ui/..., not forwarded with ?node=): they hold no data, so
// an API that wants a token may serve them without one; the page then asks
// for the token and sends it on every API call. A browser cannot send a
// bearer token when it navigates to a page.
func Public(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.URL.Query().Has("node") {
		return false
	}
	p := r.URL.Path
	return p == "/" || strings.HasPrefix(p, "/ui/")
}

// Handler serves the dashboard: index.html at / and /ui/, the other files
// at /ui/NAME. Anything else is 404. It is safe for concurrent use.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "index.html"
		if p := r.URL.Path; p != "/" && p != "/ui/" {
			rest, ok := strings.CutPrefix(p, "/ui/")
			if !ok || rest == "" || strings.Contains(rest, "/") {
				http.NotFound(w, r)
				return
			}
			name = rest
		}
		ct, ok := types[path.Ext(name)]
		b, err := static.ReadFile("static/" + name)
		if !ok || err != nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", ct)
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		w.Write(b)
	})
}
