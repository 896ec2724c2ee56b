package daemon

import (
	"os"
	"strconv"
	"strings"

	"github.com/peerctl/peerctl/internal/ui"
)

// uiRoutes registers the dashboard (internal/ui): the page at / and /ui/,
// its script and style sheet under /ui/. The page talks to this API from
// the same origin, so the guard (guard.go) needs no exception for it.
func (s *httpServer) uiRoutes() {
	h := ui.Handler()
	s.mux.Handle("GET /{$}", h)
	s.mux.Handle("GET /ui/", h)
}

// rssBytes returns the resident memory of this process from
// /proc/self/statm, or 0 where that file does not exist (not Linux) or
// cannot be read.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
