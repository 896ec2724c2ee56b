package cli

import (
	"net"
	"strings"
	"testing"

	"github.com/peerctl/peerctl/internal/api"
)

// health exits 0 with one line when the daemon answers, and non-zero when
// it is down or does not answer in time: the container health check.
func TestHealth(t *testing.T) {
	f := newFakeDaemon(t)
	f.info = api.Info{Name: "n1", Members: map[string]int{"alive": 4, "failed": 1}}
	out := mustRun(t, f.addr(), "", "health")
	if want := "ok: n1 serves its API at " + f.addr() + ", 4 members alive\n"; out != want {
		t.Errorf("health = %q; want %q", out, want)
	}

	// Nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	if r := run(t, down, "", "health"); r.code == 0 || r.err == nil || !strings.Contains(r.err.Error(), "unhealthy: cannot reach a peerctl daemon") {
		t.Errorf("health with no daemon: code %d, err %v; want non-zero, unhealthy", r.code, r.err)
	}

	// A hung daemon: accepts, never answers.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	if r := run(t, hung.Addr().String(), "", "health", "--timeout", "300ms"); r.code == 0 || r.err == nil || !strings.Contains(r.err.Error(), "unhealthy") {
		t.Errorf("health of a hung daemon: code %d, err %v; want non-zero, unhealthy", r.code, r.err)
	}
	if r := run(t, f.addr(), "", "health", "--timeout", "0s"); r.code == 0 || r.err == nil || !strings.Contains(r.err.Error(), "--timeout 0s") {
		t.Errorf("health --timeout 0s: code %d, err %v; want an error naming --timeout", r.code, r.err)
	}
}
