package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// fenceLine is what the locked commands below print.
var fenceLine = regexp.MustCompile(`fence=(\d+) pid=(\d+)`)

// fenceOf returns the fencing token and the shell's PID that a locked
// command printed, if it has yet.
func fenceOf(out string) (fence uint64, pid int, ok bool) {
	m := fenceLine.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, false
	}
	fence, _ = strconv.ParseUint(m[1], 10, 64)
	pid, _ = strconv.Atoi(m[2])
	return fence, pid, true
}

// `peerctl lock` between real processes: the holder (the peerctl lock
// process, TTL 3 s) is killed with SIGKILL while its command still runs;
// a second `peerctl lock` waiting on the same name through another node
// gets the lock within the TTL and a margin, and sees a larger fencing
// token.
func TestLockHolderKilled(t *testing.T) {
	ns := startJoined(t, "l", 3)
	waitUntil(t, 2*formTimeout, "a leader", func() (bool, string) {
		l, err := leaderOf(t, ns[2])
		if err != nil {
			return false, err.Error()
		}
		return l.Leader != "", fmt.Sprintf("%+v", l)
	})

	// The command execs sleep, so the PID it prints is the sleep's: left
	// running (orphaned) by the kill, it is killed by the test at the end.
	const script = `echo fence=$PEERCTL_FENCE pid=$$; exec sleep 60`
	holder := start(t, "holder", "--addr", ns[0].api, "lock", "--ttl", "3s", "job", "--", "sh", "-c", script)
	var fence1 uint64
	waitUntil(t, formTimeout, "the holder runs its command", func() (bool, string) {
		f, pid, ok := fenceOf(holder.Output())
		if ok {
			fence1 = f
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) }) // the orphaned sleep
		}
		return ok, holder.Output()
	})

	waiter := start(t, "waiter", "--addr", ns[1].api, "lock", "job", "--", "sh", "-c", `echo fence=$PEERCTL_FENCE pid=$$`)
	// Mutual exclusion, observed over a window: while the holder lives,
	// the waiter must not run its command. (No condition marks "waiting";
	// a second is enough for its first request to reach the leader.)
	time.Sleep(time.Second)
	if _, _, ok := fenceOf(waiter.Output()); ok || waiter.Exited() {
		t.Fatalf("the waiter ran while the holder held the lock: %q (exited %v)", waiter.Output(), waiter.Exited())
	}

	killed := time.Now()
	if err := holder.Kill(); err != nil {
		t.Fatal(err)
	}
	<-holder.Done()
	var fence2 uint64
	// TTL 3 s, then the leader's expiry check and the waiter's retry; the
	// margin is generous for a loaded CI machine.
	waitUntil(t, 3*time.Second+15*time.Second, "the waiter gets the lock after the holder's kill -9", func() (bool, string) {
		f, _, ok := fenceOf(waiter.Output())
		fence2 = f
		return ok, waiter.Output()
	})
	t.Logf("waiter got the lock %v after the holder's kill -9 (TTL 3s); fences %d then %d", time.Since(killed).Round(time.Millisecond), fence1, fence2)
	if fence2 <= fence1 {
		t.Errorf("waiter's PEERCTL_FENCE %d; want more than the holder's %d", fence2, fence1)
	}
	if err := waiter.Wait(t, formTimeout); err != nil {
		t.Errorf("waiter: %v\n%s", err, waiter.Output())
	}
}
