package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/peerctl/peerctl/e2e/internal/procs"
)

// exampleTimeout bounds one examples/*/run.sh.
const exampleTimeout = 2 * time.Minute

// examples are the scenarios in examples/ that must exist, each a
// directory holding README.md and run.sh. Any other examples/*/run.sh runs
// too.
var examples = []string{
	"three-nodes",     // start, replicate, kill, restart from the data dir
	"split-brain",     // partition, writes on both sides, heal, last-writer-wins
	"rolling-restart", // every node restarted in turn under a client that sees no error
	"catch-up",        // a node down for thousands of writes catches up
}

// TestExamples runs each examples/*/run.sh against the built binary, on
// free ports, and checks that it succeeds, stops every process it started
// and removes its temporary files.
func TestExamples(t *testing.T) {
	scripts, err := filepath.Glob("../examples/*/run.sh")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no examples/*/run.sh found: %v", err)
	}
	var found []string
	for _, s := range scripts {
		found = append(found, filepath.Base(filepath.Dir(s)))
	}
	for _, name := range examples {
		if !slices.Contains(found, name) {
			t.Errorf("examples/%s/run.sh is missing", name)
		}
		if _, err := os.Stat(filepath.Join("..", "examples", name, "README.md")); err != nil {
			t.Errorf("examples/%s has no README.md: %v", name, err)
		}
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skipf("bash not found: %v", err)
	}
	for _, script := range scripts {
		t.Run(filepath.Base(filepath.Dir(script)), func(t *testing.T) {
			t.Parallel()
			runExample(t, bash, script)
		})
	}
}

// runExample runs one script in a process group of its own, with the
// agents' ports from BASE_PORT and its temporary files under a TMPDIR of
// its own.
func runExample(t *testing.T, bash, script string) {
	out := filepath.Join(t.TempDir(), "output")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tmp := t.TempDir()
	cmd := exec.Command(bash, script)
	cmd.Env = append(procs.CleanEnv(),
		"PEERCTL="+peerctl.Path,
		"BASE_PORT="+strconv.Itoa(procs.FreePorts(t, 20)),
		"TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = f, f
	// The script and the agents it starts share a new process group,
	// whose ID is the script's PID.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		// The script stops its agents on exit; anything left in its
		// group is a leak to report and kill.
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
		case <-time.After(procs.StopGrace):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
		err = errors.New("timed out after " + exampleTimeout.String())
	}
	took := time.Since(began).Round(100 * time.Millisecond)
	b, _ := os.ReadFile(out)
	if err != nil {
		t.Fatalf("%s: %v after %s; output:\n%s", script, err, took, b)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("%s left %s in its TMPDIR; want it removed at exit", script, left[0].Name())
	}
	t.Logf("%s passed in %s; output ends:\n%s", script, took, procs.Tail(string(b), 8))
}
