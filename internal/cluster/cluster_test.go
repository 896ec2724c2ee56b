package cluster

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tests of the local-cluster launcher that `up`, `demo` and bench share. They
// run ordinary programs (sleep, sh) through the same start and stop paths
// as agents, so they need no daemon.

func TestLocalNodesLayout(t *testing.T) {
	nodes := Layout(5, 7946, ".peerctl")
	// node1's API from base 7946 is peerctl's default --addr (cli.DefaultAddr).
	if got, want := nodes[0].API, "127.0.0.1:7947"; got != want {
		t.Errorf("node1 API = %s; want the client default %s", got, want)
	}
	seen := map[string]bool{}
	for i, n := range nodes {
		if want := "node" + string(rune('1'+i)); n.Name != want {
			t.Errorf("node %d name = %s; want %s", i, n.Name, want)
		}
		for _, a := range []string{n.Gossip, n.API} {
			if seen[a] {
				t.Errorf("address %s used twice", a)
			}
			seen[a] = true
		}
	}
	if got, want := nodes[2].Gossip, "127.0.0.1:7950"; got != want {
		t.Errorf("node3 gossip = %s; want %s", got, want)
	}
	if got, want := nodes[2].DataDir, ".peerctl/node3"; got != want {
		t.Errorf("node3 data dir = %s; want %s", got, want)
	}
}

func TestLocalAgentArgs(t *testing.T) {
	n := Layout(2, 7946, "d")[1]
	got := strings.Join(n.AgentArgs("local", "", []string{"127.0.0.1:7946"}), " ")
	want := "agent --name node2 --bind 127.0.0.1:7948 --api 127.0.0.1:7949 --data-dir d/node2 --profile local --join 127.0.0.1:7946"
	if got != want {
		t.Errorf("AgentArgs = %q; want %q", got, want)
	}
}

func TestLocalFreePortRange(t *testing.T) {
	// Two ranges taken at once must not overlap while both are held.
	var held [][]int
	for range 2 {
		base, err := FreePortRange(10)
		if err != nil {
			t.Fatal(err)
		}
		if base < portLow || base+10 > portHigh {
			t.Fatalf("FreePortRange(10) = %d; want within %d..%d", base, portLow, portHigh)
		}
		var ports []int
		for p := base; p < base+10; p++ {
			cs, err := holdPort(p)
			if err != nil {
				t.Fatalf("port %d from FreePortRange is not free: %v", p, err)
			}
			t.Cleanup(func() { closeAll(cs) })
			ports = append(ports, p)
		}
		held = append(held, ports)
	}
	seen := map[int]bool{}
	for _, ports := range held {
		for _, p := range ports {
			if seen[p] {
				t.Errorf("port %d handed out twice", p)
			}
			seen[p] = true
		}
	}
}

func TestLocalBusyPort(t *testing.T) {
	base, err := FreePortRange(4)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := BusyPort(base, 4); p != 0 {
		t.Fatalf("BusyPort(%d, 4) = %d, %v on a free range; want 0", base, p, err)
	}
	cs, err := holdPort(base + 2)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(cs)
	p, err := BusyPort(base, 4)
	if p != base+2 || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("BusyPort(%d, 4) = %d, %v; want %d, address in use", base, p, err, base+2)
	}
}

// testLauncher returns a launcher of exe whose children are all stopped
// at cleanup.
func testLauncher(t *testing.T, exe string, grace time.Duration) *Launcher {
	t.Helper()
	path, err := exec.LookPath(exe)
	if err != nil {
		t.Skipf("%s not found: %v", exe, err)
	}
	l := &Launcher{Exe: path, Grace: grace}
	t.Cleanup(func() {
		if err := l.StopAll(); err != nil {
			t.Log(err)
		}
	})
	return l
}

// processGone reports whether no process has pid: it was reaped, not a zombie.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestLocalStopTermsByPID(t *testing.T) {
	l := testLauncher(t, "sleep", 10*time.Second)
	c, err := l.Start("sleeper", []string{"60"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if processGone(c.PID()) {
		t.Fatal("child not running after start")
	}
	start := time.Now()
	if err := l.Stop(c); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop took %s: SIGTERM should end sleep at once", took)
	}
	if !processGone(c.PID()) {
		t.Errorf("pid %d still exists after stop", c.PID())
	}
	var ee *exec.ExitError
	if err := c.Err(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("exit status = %v; want killed by SIGTERM", err)
	}
	if err := l.Stop(c); err != nil {
		t.Errorf("second stop = %v; want nil for a child already gone", err)
	}
}

func TestLocalStopKillsAfterGrace(t *testing.T) {
	l := testLauncher(t, "sh", 200*time.Millisecond)
	ready := make(chan struct{})
	var once sync.Once
	out := &LineWriter{Fn: func(line string) {
		if line == "ready" {
			once.Do(func() { close(ready) })
		}
	}}
	// sleep inherits the ignored SIGTERM, so only SIGKILL ends it.
	c, err := l.Start("stubborn", []string{"-c", "trap '' TERM; echo ready; exec sleep 60"}, out)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("child did not start")
	}
	err = l.Stop(c)
	if err == nil || !strings.Contains(err.Error(), "did not stop") {
		t.Errorf("stop = %v; want an error saying it had to kill", err)
	}
	if !processGone(c.PID()) {
		t.Errorf("pid %d still exists after stop", c.PID())
	}
	var ee *exec.ExitError
	if err := c.Err(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("exit status = %v; want killed by SIGKILL", err)
	}
}

func TestLocalStopAllReapsEveryChild(t *testing.T) {
	l := testLauncher(t, "sh", 5*time.Second)
	var cs []*Child
	for _, script := range []string{"exec sleep 60", "exec sleep 60", "exit 3"} {
		c, err := l.Start("c", []string{"-c", script}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	// The one that exits on its own is reaped without being asked to stop.
	var ee *exec.ExitError
	if err := cs[2].Err(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("exit status = %v; want 3", err)
	}
	if cs[2].Stopping() {
		t.Error("a child that exited on its own is marked as stopping")
	}
	if err := l.StopAll(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		select {
		case <-c.Done():
		default:
			t.Errorf("pid %d not reaped after StopAll", c.PID())
		}
		if !processGone(c.PID()) {
			t.Errorf("pid %d still exists after StopAll", c.PID())
		}
	}
}

func TestLocalLineWriter(t *testing.T) {
	var lines []string
	w := &LineWriter{Fn: func(l string) { lines = append(lines, l) }}
	for _, s := range []string{"one\ntw", "o\r\n", "", "three\nfour"} {
		w.Write([]byte(s))
	}
	w.Close()
	if got, want := strings.Join(lines, "|"), "one|two|three|four"; got != want {
		t.Errorf("lines = %q; want %q", got, want)
	}
}

func TestLocalWaitFor(t *testing.T) {
	n := 0
	err := WaitFor(context.Background(), 10*time.Second, time.Millisecond, func(context.Context) (bool, string) {
		n++
		return n == 3, "not yet"
	})
	if err != nil || n != 3 {
		t.Errorf("WaitFor = %v after %d calls; want nil after 3", err, n)
	}

	err = WaitFor(context.Background(), 20*time.Millisecond, time.Millisecond, func(context.Context) (bool, string) {
		return false, "node2 sees node3 as alive"
	})
	if err == nil || err.Error() != "after 20ms: node2 sees node3 as alive" {
		t.Errorf("WaitFor on timeout = %v; want the last reason", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = WaitFor(ctx, 10*time.Second, time.Millisecond, func(context.Context) (bool, string) { return false, "" })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("WaitFor on a cancelled context = %v; want context.Canceled", err)
	}
}
