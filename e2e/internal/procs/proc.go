package procs

import (
	"errors"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Proc is a running, or finished, peerctl process. Its methods are safe
// for concurrent use.
type Proc struct {
	Name    string    // for messages
	Log     string    // file with its stdout and stderr
	Started time.Time // when it was started

	cmd    *exec.Cmd
	done   chan struct{} // closed once it has exited and been reaped
	err    error         // exit status, set before done is closed
	termed atomic.Bool   // SIGTERM sent: a second one would kill an agent at once
}

// Start runs the binary with args in the background, its stdout and
// stderr written to the file log, in a process group of its own: a Ctrl-C
// meant for `go test` is not a signal to the agents. A goroutine reaps the
// process when it exits and then calls exited, if not nil, with its exit
// status, before Done is closed. The caller must stop the process, with
// Stop, when the test ends.
func (b *Binary) Start(tb testing.TB, name, log string, exited func(p *Proc, err error), args ...string) *Proc {
	tb.Helper()
	f, err := os.Create(log)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(b.Path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = CleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, Log: log, Started: time.Now(), cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if exited != nil {
			exited(p, p.err)
		}
		close(p.done)
	}()
	return p
}

// PID returns the process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns the exit status, as exec.Cmd.Wait does, or nil while the
// process runs.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Wait waits up to timeout for the process to exit and returns its exit
// status; it fails the test if the process still runs then.
func (p *Proc) Wait(tb testing.TB, timeout time.Duration) error {
	tb.Helper()
	select {
	case <-p.done:
		return p.err
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

// Term sends SIGTERM once: the agent leaves the cluster and exits. A
// second SIGTERM would make it exit at once.
func (p *Proc) Term() {
	if !p.termed.Swap(true) {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// Termed reports whether Term has been called.
func (p *Proc) Termed() bool { return p.termed.Load() }

// Kill sends SIGKILL. It does not wait: see Done.
func (p *Proc) Kill() error { return p.cmd.Process.Signal(syscall.SIGKILL) }

// Stop stops the process by PID, SIGTERM then SIGKILL after StopGrace,
// and returns once it has been reaped. Needing SIGKILL fails the test.
func (p *Proc) Stop(tb testing.TB) {
	tb.Helper()
	if p.Exited() {
		return
	}
	p.Term()
	select {
	case <-p.done:
		return
	case <-time.After(StopGrace):
	}
	tb.Errorf("%s (pid %d) did not stop within %s of SIGTERM; killing it", p.Name, p.PID(), StopGrace)
	p.cmd.Process.Kill()
	<-p.done
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
