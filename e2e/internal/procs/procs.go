// Package procs runs the peerctl binary for the end-to-end tests: it
// builds the binary once, hands out free loopback ports, starts agent
// processes with their output in a log file, stops them by PID (SIGTERM,
// then SIGKILL after StopGrace) and always reaps them, runs client
// commands, and finds processes left running. Ports, processes and waiting
// are the local-cluster launcher's (internal/cluster), which `peerctl up`,
// `demo` and `bench` use too; this package adds what only tests need.
//
// It owns no process beyond what its caller starts, and stops none on its
// own: the tests decide when and in what order (e2e stops each process
// when its test ends; nemesis stops a cluster at once).
package procs

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/internal/cluster"
)

// Timeouts. They hold on a loaded 2-core CI machine running `go test
// -race ./...`, where several packages' tests run at once.
const (
	CmdTimeout = 30 * time.Second // one client command
	StopGrace  = 10 * time.Second // SIGTERM before SIGKILL
)

// Binary is the peerctl executable Main built.
type Binary struct {
	Path string // of the executable
	dir  string // temporary directory holding it

	l *cluster.Launcher // starts and stops its processes
}

// Main is the TestMain of a package whose tests run peerctl, and returns
// its exit code. Unless -short, it builds peerctl from the module at root
// (a path relative to the package) into a new temporary directory and
// stores it in *bin; runs the tests; fails the run if any process of the
// binary still runs after them (pgrep -f); and removes the directory.
// Under -short *bin stays nil: a test that needs the binary must skip.
// name prefixes its messages and the directory's name.
//
// The binary is built without -race even under `go test -race`:
// race-instrumented agents and clients run several times slower, which the
// tests' timing deadlines would then measure. The daemon's own tests run
// agents in-process under the race detector; what runs in the test binary
// (clients, the nemesis) is race-checked there.
func Main(m *testing.M, name, root string, bin **Binary) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	b, err := build(root, "peerctl-"+name+"-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	defer os.RemoveAll(b.dir)
	*bin = b
	code := m.Run()
	if left := Leftovers(b.Path); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "%s: processes of %s still running after the tests: %s\n", name, b.Path, strings.Join(left, ", "))
		return 1
	}
	return code
}

// build builds peerctl from the module at root into a new temporary
// directory whose name begins with prefix.
func build(root, prefix string) (*Binary, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	b := &Binary{Path: filepath.Join(dir, "peerctl"), dir: dir}
	b.l = &cluster.Launcher{Exe: b.Path, Grace: StopGrace, Env: CleanEnv()}
	cmd := exec.Command("go", "build", "-o", b.Path, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("build peerctl: %v\n%s", err, out)
	}
	return b, nil
}

// CleanEnv is the environment without PEERCTL_* variables, which would
// change the flags of the commands under test.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEERCTL_") {
			env = append(env, kv)
		}
	}
	return env
}

// WaitFor polls cond every interval until it holds or timeout passes
// (cluster.WaitFor), and returns how long it took, or an error with cond's
// last reason.
func WaitFor(timeout, interval time.Duration, cond func() (ok bool, why string)) (time.Duration, error) {
	start := time.Now()
	err := cluster.WaitFor(context.Background(), timeout, interval, func(context.Context) (bool, string) { return cond() })
	return time.Since(start), err
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Leftovers returns the PIDs of running processes whose command line
// contains pattern (pgrep -f): none if pgrep is missing.
func Leftovers(pattern string) []string {
	out, err := exec.Command("pgrep", "-f", pattern).Output()
	if err != nil {
		return nil // exit 1: none; pgrep missing: nothing to report
	}
	return strings.Fields(string(out))
}
