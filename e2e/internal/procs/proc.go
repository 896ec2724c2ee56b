package procs

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/peerctl/peerctl/internal/cluster"
)

// Proc is a running, or finished, peerctl process: a child of the
// local-cluster launcher (internal/cluster), which starts it in a process
// group of its own, reaps it, and stops it by PID. Its methods are safe for
// concurrent use.
type Proc struct {
	*cluster.Child
	Log     string    // file with its stdout and stderr
	Started time.Time // when it was started

	l *cluster.Launcher
}

// Start runs the binary with args in the background, its stdout and
// stderr written to the file log, in a process group of its own: a Ctrl-C
// meant for `go test` is not a signal to the agents. The launcher reaps
// the process when it exits and then calls exited, if not nil, with it and
// its exit status, before Done is closed. The caller must stop the
// process, with Stop, when the test ends.
func (b *Binary) Start(tb testing.TB, name, log string, exited func(c *cluster.Child, err error), args ...string) *Proc {
	tb.Helper()
	return start(tb, b.l, name, log, exited, args)
}

// start runs l's executable with argv as Start describes.
func start(tb testing.TB, l *cluster.Launcher, name, log string, exited func(c *cluster.Child, err error), argv []string) *Proc {
	tb.Helper()
	f, err := os.Create(log)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close() // the child has its own copy
	at := time.Now()
	c, err := l.StartNotify(name, argv, f, exited)
	if err != nil {
		tb.Fatal(err)
	}
	return &Proc{Child: c, Log: log, Started: at, l: l}
}

// Err returns the exit status, as exec.Cmd.Wait does, or nil while the
// process runs.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.Child.Err()
}

// Wait waits up to timeout for the process to exit and returns its exit
// status; it fails the test if the process still runs then.
func (p *Proc) Wait(tb testing.TB, timeout time.Duration) error {
	tb.Helper()
	select {
	case <-p.Done():
		return p.Child.Err()
	case <-time.After(timeout):
		tb.Fatalf("%s (pid %d) still runs after %s", p.Name, p.PID(), timeout)
		return nil
	}
}

// Output returns what the process has printed so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Stop stops the process by PID, SIGTERM then SIGKILL after StopGrace,
// and returns once it has been reaped. Needing SIGKILL fails the test.
func (p *Proc) Stop(tb testing.TB) {
	tb.Helper()
	if err := p.l.Stop(p.Child); err != nil {
		tb.Error(err)
	}
}

// DiedBySIGKILL reports whether the process exited from SIGKILL.
func (p *Proc) DiedBySIGKILL() bool {
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}
