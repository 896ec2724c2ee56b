package nemesis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// cmdTimeout bounds one client command.
const cmdTimeout = 30 * time.Second

// result is a finished client command.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// cli runs `peerctl --addr addr args...` to completion.
func cli(tb testing.TB, addr string, args ...string) result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, peerctl, append([]string{"--addr", addr}, args...)...)
	cmd.Env = cleanEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		tb.Fatalf("peerctl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustCLI runs a command that must succeed and returns its stdout.
func mustCLI(tb testing.TB, addr string, args ...string) string {
	tb.Helper()
	r := cli(tb, addr, args...)
	if r.code != 0 {
		tb.Fatalf("peerctl --addr %s %s: %v", addr, strings.Join(args, " "), r)
	}
	return r.stdout
}

// memberRow is a row of `members --json`.
type memberRow struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Fault  string `json:"fault"`
}

// members returns `members --json` at addr by name.
func members(tb testing.TB, addr string) (map[string]memberRow, error) {
	tb.Helper()
	r := cli(tb, addr, "members", "--json")
	if r.code != 0 {
		return nil, fmt.Errorf("members at %s: %v", addr, r)
	}
	var rows []memberRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		return nil, fmt.Errorf("members --json at %s: %v", addr, err)
	}
	out := map[string]memberRow{}
	for _, m := range rows {
		out[m.Name] = m
	}
	return out, nil
}

// TestPauseSuspectThenAlive pauses a node with `peerctl pause NODE --for`
// and checks what the issue promises (issue 3, item 1, pause): while it is
// frozen every other node suspects it (or has declared it failed); when
// the pause ends it refutes and is alive to all again, the same process
// without a restart, holding the write it missed; and no fault remains.
func TestPauseSuspectThenAlive(t *testing.T) {
	needBinary(t)
	const pauseFor = 4 * time.Second
	c := newCluster(t, 3, 1)
	n1, n2, n3 := c.byName("n1"), c.byName("n2"), c.byName("n3")
	p2 := n2.current()

	mustCLI(t, n1.api, "pause", "n2", "--for", pauseFor.String())
	paused := time.Now()
	resumes := paused.Add(pauseFor)

	// n2 itself says what it does to its traffic.
	if ms, err := members(t, n2.api); err != nil {
		t.Fatal(err)
	} else if f := ms["n1"].Fault; !strings.Contains(f, "paused") {
		t.Errorf("members at n2 during its pause: fault toward n1 %q; want \"paused\"", f)
	}
	// A write n2 misses while it is frozen.
	mustCLI(t, n1.api, "put", "during-pause", "missed by n2")

	// Every other node sees n2 suspect or failed before the pause ends
	// (plus a little slack for the polling itself).
	seen := map[string]string{} // observer -> first status other than alive, and when
	_, err := waitFor(pauseFor+2*time.Second, func() (bool, string) {
		for _, a := range []*agent{n1, n3} {
			if seen[a.name] != "" {
				continue
			}
			ms, err := members(t, a.api)
			if err != nil {
				return false, err.Error()
			}
			if st := ms["n2"].Status; st == "suspect" || st == "failed" {
				seen[a.name] = fmt.Sprintf("%s after %s", st, time.Since(paused).Round(time.Millisecond))
			}
		}
		return len(seen) == 2, fmt.Sprintf("seen so far: %v", seen)
	})
	if err != nil {
		t.Fatalf("n2 paused: suspect or failed to n1 and n3: %v", err)
	}
	t.Logf("while n2 was paused: n1 saw it %s, n3 saw it %s", seen["n1"], seen["n3"])

	// After the pause, alive again to everyone, refuted, no restart.
	_, err = waitFor(30*time.Second, func() (bool, string) {
		for _, a := range []*agent{n1, n2, n3} {
			ms, err := members(t, a.api)
			if err != nil {
				return false, err.Error()
			}
			for _, b := range []string{"n1", "n2", "n3"} {
				if ms[b].Status != "alive" {
					return false, fmt.Sprintf("%s sees %s as %q", a.name, b, ms[b].Status)
				}
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatalf("after the pause, every node alive to every node: %v", err)
	}
	t.Logf("all alive to all %s after the pause ended", time.Since(resumes).Round(time.Millisecond))
	if p2.exited() || n2.current() != p2 {
		t.Fatalf("n2 (pid %d) was restarted or died: %v", p2.pid(), p2.err)
	}
	var info struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, n2.api, "info", "--json")), &info); err != nil {
		t.Fatal(err)
	}
	if info.PID != p2.pid() {
		t.Errorf("n2 info pid = %d; want %d, the process paused", info.PID, p2.pid())
	}

	// Anti-entropy brings n2 the write it missed.
	if _, err := waitFor(15*time.Second, func() (bool, string) {
		r := cli(t, n2.api, "get", "during-pause")
		return r.code == 0 && r.stdout == "missed by n2\n", r.String()
	}); err != nil {
		t.Errorf("write made during the pause at n2: %v", err)
	}

	// The pause lifted itself: no fault remains anywhere.
	var nodes []struct {
		Node  string            `json:"node"`
		Rules []json.RawMessage `json:"rules"`
		Error string            `json:"error"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, n1.api, "faults", "--json")), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 {
		t.Errorf("faults --json lists %d nodes; want 3", len(nodes))
	}
	for _, n := range nodes {
		if len(n.Rules) > 0 || n.Error != "" {
			t.Errorf("faults at %s after the pause: %d rules, error %q; want none", n.Node, len(n.Rules), n.Error)
		}
	}
}
