// Package demo_test runs every chapter of `peerctl demo` end to end, in
// its quick form (internal/demo Options.Quick: fewer nodes or a shorter
// workload, the same steps and checks), against real agent processes of
// a freshly built peerctl. A chapter whose check does not hold fails its
// test. Each chapter's directory must be gone when it returns, and
// TestMain fails the run if any process of the binary is left.
package demo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerctl/peerctl/e2e/internal/procs"
	"github.com/peerctl/peerctl/internal/demo"
)

// peerctl is the binary under test, built by TestMain; nil under -short.
var peerctl *procs.Binary

func TestMain(m *testing.M) {
	os.Exit(procs.Main(m, "demo", "../..", &peerctl))
}

// chapterTimeout bounds one quick chapter on a loaded CI machine; a full
// chapter takes under 90 s on a laptop.
const chapterTimeout = 120 * time.Second

func needBinary(t *testing.T) {
	t.Helper()
	if peerctl == nil {
		t.Skip("-short: the demo chapters start real agent processes of a built peerctl")
	}
}

// logWriter sends each line of narration to t.Log, so only failures print
// it.
type logWriter struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	for {
		i := bytes.IndexByte(w.b.Bytes(), '\n')
		if i < 0 {
			return len(p), nil
		}
		w.t.Log(string(w.b.Next(i + 1)[:i]))
	}
}

// TestChapters runs every chapter, in parallel, and checks its report.
func TestChapters(t *testing.T) {
	needBinary(t)
	for _, ch := range demo.Chapters() {
		t.Run(ch.Name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			var out bytes.Buffer
			o := demo.Options{Out: &out, Err: &logWriter{t: t}, JSON: true, Quick: true, Exe: peerctl.Path, TempDir: tmp}
			if ch.Name == "scale" {
				o.SVG = filepath.Join(t.TempDir(), "scale.svg")
			}
			ctx, cancel := context.WithTimeout(context.Background(), chapterTimeout)
			defer cancel()
			start := time.Now()
			err := ch.Run(ctx, o)
			t.Logf("demo %s --quick took %s", ch.Name, time.Since(start).Round(time.Millisecond))
			var rep demo.Report
			if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
				t.Fatalf("--json output does not decode: %v\n%s", jerr, out.String())
			}
			if err != nil {
				t.Fatalf("demo %s: %v (report: failed step %q)", ch.Name, err, rep.FailedStep)
			}
			if !rep.OK || rep.Chapter != ch.Name || !rep.Quick || len(rep.Figures) == 0 {
				t.Errorf("report = %+v; want ok, chapter %s, quick, with figures", rep, ch.Name)
			}
			if left, _ := os.ReadDir(tmp); len(left) > 0 {
				t.Errorf("demo %s left %s in its temporary directory", ch.Name, left[0].Name())
			}
			if left := procs.Leftovers(tmp); len(left) > 0 {
				t.Errorf("demo %s left processes running: %s", ch.Name, strings.Join(left, ", "))
			}
			if o.SVG != "" {
				b, err := os.ReadFile(o.SVG)
				if err != nil || !bytes.Contains(b, []byte("<svg")) {
					t.Errorf("scale plot %s: %v, %d bytes", o.SVG, err, len(b))
				}
			}
		})
	}
}

// TestInterrupt runs `peerctl demo spof` as a user would and presses
// Ctrl-C (SIGINT) in the middle: it must exit non-zero saying so, with no
// agent left running and its directory removed.
func TestInterrupt(t *testing.T) {
	needBinary(t)
	tmp := t.TempDir()
	cmd := exec.Command(peerctl.Path, "demo", "spof")
	cmd.Env = append(procs.CleanEnv(), "TMPDIR="+tmp)
	var mu sync.Mutex
	var out bytes.Buffer
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second // a grandchild holding a pipe must not hang Wait
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}) // closed once waitErr is set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
	_, err := procs.WaitFor(60*time.Second, 20*time.Millisecond, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(out.String(), "2. The seed dies"), "the chapter has not reached step 2"
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		err = waitErr
	case <-time.After(30 * time.Second):
		t.Fatal("peerctl demo spof still runs 30s after SIGINT")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("exit after SIGINT: %v; want a non-zero status", err)
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr = %q; want it to say the demo was interrupted", stderr.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("interrupted demo left %s in TMPDIR", left[0].Name())
	}
	if left := procs.Leftovers(tmp); len(left) > 0 {
		t.Errorf("interrupted demo left agents running: %s", strings.Join(left, ", "))
	}
}

// TestCommandLine checks `demo --list` and an unknown chapter.
func TestCommandLine(t *testing.T) {
	needBinary(t)
	r := peerctl.CLI(t, "127.0.0.1:1", "demo", "--list")
	if r.Code != 0 {
		t.Fatalf("demo --list: %v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != len(demo.Chapters()) {
		t.Errorf("demo --list printed %d lines; want one per chapter (%d):\n%s", len(lines), len(demo.Chapters()), r.Stdout)
	}
	for i, ch := range demo.Chapters() {
		if i < len(lines) && !strings.HasPrefix(lines[i], ch.Name+" ") {
			t.Errorf("line %d = %q; want chapter %s first", i+1, lines[i], ch.Name)
		}
	}
	r = peerctl.CLI(t, "127.0.0.1:1", "demo", "nosuch")
	if r.Code == 0 || !strings.Contains(r.Stderr, "no demo chapter") {
		t.Errorf("demo nosuch: %v; want an error naming the chapters", r)
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
