package ui

import (
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestHandler checks what the dashboard serves: each file with its
// content type, the policy headers on every answer, and 404 for anything
// else (no directory listing, no path outside static/).
func TestHandler(t *testing.T) {
	h := Handler()
	for _, c := range []struct {
		path, ctype, contains string
		code                  int
	}{
		{"/", "text/html; charset=utf-8", `<script src="/ui/app.js"`, 200},
		{"/ui/", "text/html; charset=utf-8", `<svg id="graph"`, 200},
		{"/ui/index.html", "text/html; charset=utf-8", "<title>peerctl</title>", 200},
		{"/ui/app.js", "text/javascript; charset=utf-8", "data-status", 200},
		{"/ui/style.css", "text/css; charset=utf-8", ".node", 200},
		{"/ui/missing.js", "", "", 404},
		{"/ui/../ui.go", "", "", 404},
		{"/ui/static/app.js", "", "", 404},
		{"/index.html", "", "", 404},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", c.path, nil))
		if rec.Code != c.code {
			t.Errorf("GET %s: %d; want %d", c.path, rec.Code, c.code)
			continue
		}
		if c.code != 200 {
			continue
		}
		if got := rec.Header().Get("Content-Type"); got != c.ctype {
			t.Errorf("GET %s: Content-Type %q; want %q", c.path, got, c.ctype)
		}
		if got := rec.Header().Get("Content-Security-Policy"); got != CSP {
			t.Errorf("GET %s: Content-Security-Policy %q; want %q", c.path, got, CSP)
		}
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q; want nosniff", c.path, got)
		}
		if !strings.Contains(rec.Body.String(), c.contains) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
	}
}

// TestNoInlineOrForeign checks what the policy would refuse: the page has
// no inline script, style attribute or event handler, and nothing refers
// to another origin (nothing is fetched from the internet).
func TestNoInlineOrForeign(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		b, err := static.ReadFile("static/" + name)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if name == "index.html" {
			for _, re := range []string{`<script>`, `<script(?:\s+[^>]*)?>\s*[^<\s]`, `\sstyle=`, `\son[a-z]+=`, `<style`} {
				if m := regexp.MustCompile(re).FindString(s); m != "" {
					t.Errorf("%s: inline content the policy refuses: %q", name, m)
				}
			}
		}
		for _, m := range regexp.MustCompile(`(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s'"]*`).FindAllString(s, -1) {
			if m != "http://www.w3.org/2000/svg" {
				t.Errorf("%s: refers to another origin: %q", name, m)
			}
		}
		if name == "app.js" && regexp.MustCompile(`\beval\(|new Function\(|innerHTML\s*=`).MatchString(s) {
			t.Errorf("%s: uses eval, new Function or innerHTML", name)
		}
	}
}

// TestPublic: only the page's own files may be served without a token.
func TestPublic(t *testing.T) {
	for _, c := range []struct {
		method, target string
		want           bool
	}{
		{"GET", "/", true},
		{"GET", "/?view=n3", true},
		{"HEAD", "/ui/app.js", true},
		{"GET", "/ui/", true},
		{"GET", "/?node=n2", false},
		{"GET", "/ui/app.js?node=n2", false},
		{"POST", "/", false},
		{"GET", "/v1/members", false},
		{"GET", "/v1/events", false},
		{"GET", "/metrics", false},
		{"GET", "/uix", false},
	} {
		if got := Public(httptest.NewRequest(c.method, c.target, nil)); got != c.want {
			t.Errorf("Public(%s %s) = %v; want %v", c.method, c.target, got, c.want)
		}
	}
}
