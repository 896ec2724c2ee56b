package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// fakeDaemon serves the HTTP API of internal/api from memory, for unit
// tests of argument handling and formatting. It records the ?node= of
// every request.
type fakeDaemon struct {
	srv *httptest.Server

	mu      sync.Mutex // guards the fields below
	members []api.Member
	info    api.Info
	kv      map[string]api.KV
	all     map[string][]api.NodeKV // GET ?all=1 answers, by key
	clock   uint64
	nodes   []string // ?node= of each request, "" if absent
	killed  []string
	leaving []string
}

// maxValue is the daemon's value size limit.
const maxValue = 64 << 10

func newFakeDaemon(tb testing.TB) *fakeDaemon {
	tb.Helper()
	f := &fakeDaemon{kv: map[string]api.KV{}, all: map[string][]api.NodeKV{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, f.members)
	})
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, f.info)
	})
	mux.HandleFunc("GET /v1/kv", func(w http.ResponseWriter, r *http.Request) {
		out := []api.KeyInfo{}
		for k, e := range f.kv {
			if strings.HasPrefix(k, r.URL.Query().Get("prefix")) {
				out = append(out, api.KeyInfo{Key: k, Version: e.Version, TS: e.TS, Origin: e.Origin})
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
		reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/kv/{key...}", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("key")
		if r.URL.Query().Get("all") == "1" {
			reply(w, http.StatusOK, f.all[key])
			return
		}
		e, ok := f.kv[key]
		if !ok {
			reply(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("key %q not found", key), "code": "key_not_found"})
			return
		}
		reply(w, http.StatusOK, e)
	})
	mux.HandleFunc("PUT /v1/kv/{key...}", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("key")
		value, _ := io.ReadAll(r.Body)
		if len(value) > maxValue {
			reply(w, http.StatusRequestEntityTooLarge, map[string]string{
				"error": fmt.Sprintf("value is %d bytes, over the 64 KiB limit", len(value))})
			return
		}
		e := f.write(key, value)
		f.kv[key] = e
		reply(w, http.StatusOK, api.WriteResult{Key: key, Version: e.Version, TS: e.TS, Origin: e.Origin})
	})
	mux.HandleFunc("DELETE /v1/kv/{key...}", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("key")
		_, existed := f.kv[key]
		delete(f.kv, key)
		e := f.write(key, nil)
		reply(w, http.StatusOK, api.WriteResult{Key: key, Version: e.Version, TS: e.TS, Origin: e.Origin, Existed: existed})
	})
	mux.HandleFunc("POST /v1/kill", func(w http.ResponseWriter, r *http.Request) {
		f.killed = append(f.killed, r.URL.Query().Get("node"))
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("POST /v1/leave", func(w http.ResponseWriter, r *http.Request) {
		f.leaving = append(f.leaving, r.URL.Query().Get("node"))
		w.WriteHeader(http.StatusAccepted)
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.nodes = append(f.nodes, r.URL.Query().Get("node"))
		mux.ServeHTTP(w, r)
	}))
	tb.Cleanup(f.srv.Close)
	return f
}

// write makes the next entry for key; the caller holds f.mu.
func (f *fakeDaemon) write(key string, value []byte) api.KV {
	f.clock++
	t := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(f.clock) * time.Millisecond)
	return api.KV{Key: key, Value: value, Version: fmt.Sprintf("v%d@n1", f.clock), TS: f.clock, Origin: "n1", Time: t}
}

// addr is the fake's host:port, for --addr.
func (f *fakeDaemon) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// lastNode is the ?node= of the latest request.
func (f *fakeDaemon) lastNode() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.nodes) == 0 {
		return "(no request)"
	}
	return f.nodes[len(f.nodes)-1]
}

func (f *fakeDaemon) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.nodes)
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// result is one in-process run of the App.
type result struct {
	stdout, stderr string
	err            error
	code           int // the exit status main.go would use
}

// run runs `peerctl --addr ADDR ARGS...` in-process with stdin as input,
// against the fake daemon at addr ("" for none).
func run(tb testing.TB, addr, stdin string, args ...string) result {
	tb.Helper()
	return runApp(tb, NewApp(), context.Background(), addr, stdin, args...)
}

func runApp(tb testing.TB, app *cli.App, ctx context.Context, addr, stdin string, args ...string) result {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	app.Writer, app.ErrWriter, app.Reader = &stdout, &stderr, strings.NewReader(stdin)
	app.ExitErrHandler = func(*cli.Context, error) {} // never os.Exit
	argv := []string{"peerctl"}
	if addr != "" {
		argv = append(argv, "--addr", addr)
	}
	err := Run(ctx, app, append(argv, args...))
	r := result{stdout: stdout.String(), stderr: stderr.String(), err: err}
	// As main.go's exitCode: a cli.ExitCoder's code, else 1.
	if err != nil {
		r.code = 1
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			r.code = ec.ExitCode()
		}
	}
	tb.Logf("peerctl %s: code %d, err %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, err, r.stdout, r.stderr)
	return r
}

// mustRun is run that fails the test unless the command succeeds.
func mustRun(tb testing.TB, addr, stdin string, args ...string) string {
	tb.Helper()
	r := run(tb, addr, stdin, args...)
	if r.err != nil {
		tb.Fatalf("peerctl %s: %v", strings.Join(args, " "), r.err)
	}
	return r.stdout
}
