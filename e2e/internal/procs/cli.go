package procs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Result is a finished client command.
type Result struct {
	Stdout, Stderr string
	Code           int // exit status
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
}

// CLI runs `peerctl --addr addr args...` to completion, for at most
// CmdTimeout. A non-zero exit is a Result; a command that cannot run
// fails the test.
func (b *Binary) CLI(tb testing.TB, addr string, args ...string) Result {
	tb.Helper()
	return Run(tb, CmdTimeout, CleanEnv(), b.Path, append([]string{"--addr", addr}, args...)...)
}

// Run runs the program name with args in the environment env to
// completion, for at most timeout. A non-zero exit is a Result; a command
// that cannot run fails the test.
func Run(tb testing.TB, timeout time.Duration, env []string, name string, args ...string) Result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		tb.Fatalf("%s %s: %v", filepath.Base(name), strings.Join(args, " "), err)
	}
	return r
}

// MustCLI runs a command that must succeed and returns its stdout.
func (b *Binary) MustCLI(tb testing.TB, addr string, args ...string) string {
	tb.Helper()
	r := b.CLI(tb, addr, args...)
	if r.Code != 0 {
		tb.Fatalf("peerctl --addr %s %s: %v", addr, strings.Join(args, " "), r)
	}
	return r.Stdout
}

// Member is a row of `members --json`.
type Member struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Fault  string `json:"fault"`
}

// Members returns `members --json` at addr by name.
func (b *Binary) Members(tb testing.TB, addr string) (map[string]Member, error) {
	tb.Helper()
	r := b.CLI(tb, addr, "members", "--json")
	if r.Code != 0 {
		return nil, fmt.Errorf("members at %s: %v", addr, r)
	}
	var rows []Member
	if err := json.Unmarshal([]byte(r.Stdout), &rows); err != nil {
		return nil, fmt.Errorf("members --json at %s: %v", addr, err)
	}
	out := map[string]Member{}
	for _, m := range rows {
		out[m.Name] = m
	}
	return out, nil
}
