package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCheckWaitDeadlineWithHungNode: a member whose process is stopped
// (SIGSTOP: it accepts connections and never answers) must not hold
// `check --wait D` past its deadline. On the code before the fix each ask
// waited 5 s for the member list and 5 s more for the digest, so
// `check --wait 2s` took 10 s. It must exit 1 near the deadline and name
// the hung member; plain `check` answers within the daemon's budget (5 s).
func TestCheckWaitDeadlineWithHungNode(t *testing.T) {
	t.Parallel()
	n1, n2, n3 := newNode(t, "n1"), newNode(t, "n2"), newNode(t, "n3")
	start(t, "n1", n1.args()...)
	start(t, "n2", n2.args(n1.gossip)...)
	p3 := start(t, "n3", n3.args(n1.gossip)...)
	all := []node{n1, n2, n3}
	waitStatus(t, formTimeout, all, "alive", "n1", "n2", "n3")
	peerctl.MustCLI(t, n1.api, "check", "--wait", "10s")

	if err := syscall.Kill(p3.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Registered after start's cleanups, so it runs first: a stopped
	// agent cannot act on the SIGTERM that stops it.
	t.Cleanup(func() { syscall.Kill(p3.PID(), syscall.SIGCONT) })

	const wait = 2 * time.Second
	begin := time.Now()
	r := peerctl.CLI(t, n1.api, "check", "--wait", wait.String())
	took := time.Since(begin)
	t.Logf("check --wait %s with n3 stopped: %s, %v", wait, took, r)
	if r.Code != 1 {
		t.Errorf("check --wait %s with n3 stopped: %v; want exit 1", wait, r)
	}
	if !strings.Contains(r.Stdout, "n3") {
		t.Errorf("check --wait %s output does not name n3: %v", wait, r)
	}
	// The last ask may start just before the deadline and take checkMinAsk
	// (500ms); allow as much again for process start on a loaded machine.
	if limit := wait + 2*time.Second; took > limit {
		t.Errorf("check --wait %s took %s; want at most %s", wait, took, limit)
	}

	begin = time.Now()
	r = peerctl.CLI(t, n1.api, "check")
	took = time.Since(begin)
	if r.Code != 1 || !strings.Contains(r.Stdout, "n3") {
		t.Errorf("check with n3 stopped: %v; want exit 1 naming n3", r)
	}
	if limit := 5*time.Second + 2*time.Second; took > limit {
		t.Errorf("check with n3 stopped took %s; want at most %s", took, limit)
	}
}
