package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// exampleTimeout bounds one examples/*/run.sh.
const exampleTimeout = 2 * time.Minute

// TestExamples runs each examples/*/run.sh against the built binary, on
// free ports, and checks that it succeeds and leaves no process behind.
func TestExamples(t *testing.T) {
	scripts, err := filepath.Glob("../examples/*/run.sh")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no examples/*/run.sh found: %v", err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skipf("bash not found: %v", err)
	}
	for _, script := range scripts {
		t.Run(filepath.Base(filepath.Dir(script)), func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "output")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd := exec.Command(bash, script)
			cmd.Env = append(cleanEnv(),
				"PEERCTL="+peerctl,
				"BASE_PORT="+strconv.Itoa(freePorts(t, 20)),
				"TMPDIR="+t.TempDir())
			cmd.Stdout, cmd.Stderr = f, f
			// The script and the agents it starts share a new process
			// group, whose ID is the script's PID.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pgid := cmd.Process.Pid
			t.Cleanup(func() {
				// The script stops its agents on exit; anything left in
				// its group is a leak to report and kill.
				if syscall.Kill(-pgid, 0) == nil {
					t.Errorf("%s left processes running in group %d; killing them", script, pgid)
					syscall.Kill(-pgid, syscall.SIGKILL)
				}
			})
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err = <-done:
			case <-time.After(exampleTimeout):
				syscall.Kill(-pgid, syscall.SIGTERM) // the script's trap stops its agents
				select {
				case <-done:
				case <-time.After(stopGrace):
					syscall.Kill(-pgid, syscall.SIGKILL)
					<-done
				}
				err = errors.New("timed out after " + exampleTimeout.String())
			}
			b, _ := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%s: %v; output:\n%s", script, err, b)
			}
			t.Logf("%s output:\n%s", script, tail(string(b), 8))
		})
	}
}
