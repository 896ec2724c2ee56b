package badger

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
	"github.com/peerctl/peerctl/store/storetest"
)

// openTest opens a backend that logs Badger's messages to t.Log.
func openTest(tb testing.TB, dir string, opts Options) *Backend {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tlogWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	b, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("Open(%q): %v", dir, err)
	}
	return b
}

type tlogWriter struct{ tb testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestConformanceInMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend {
		return openTest(t, "", Options{InMemory: true})
	})
}

func TestConformanceOnDisk(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend {
		return openTest(t, t.TempDir(), Options{})
	})
}

func TestConformanceSyncWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("fsync per commit is slow on some disks")
	}
	storetest.Run(t, func(t *testing.T) store.Backend {
		return openTest(t, t.TempDir(), Options{SyncWrites: true})
	})
}

// TestReopen checks that an on-disk backend keeps everything across a
// clean close, and that store.Open rebuilds the same digest from it.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := store.Config{Node: "n1", Now: func() time.Time { return now }}
	s, err := store.Open(openTest(t, dir, Options{}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var want []store.Entry
	for i := 0; i < 2000; i++ {
		v := []byte(strconv.Itoa(i))
		if i%100 == 0 {
			v = bytes.Repeat([]byte{'b'}, 4<<10) // in the value log
		}
		e, err := s.Put(fmt.Sprintf("key/%04d", i), v)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
	}
	for i := 0; i < 2000; i += 3 {
		e, _, err := s.Delete(fmt.Sprintf("key/%04d", i))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = e
	}
	digest, stats, last := s.Digest(), s.Stats(), s.Clock().Last()
	if stats.DiskBytes <= 0 {
		t.Errorf("Stats().DiskBytes = %d; want > 0 on disk", stats.DiskBytes)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	b := openTest(t, dir, Options{})
	s2, err := store.Open(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := s2.Digest(); got != digest {
		t.Fatalf("digest after reopen differs in buckets %v", got.Diff(&digest))
	}
	if got := s2.Stats(); got.Keys != stats.Keys || got.Tombstones != stats.Tombstones {
		t.Fatalf("Stats after reopen = %+v; want %+v", got, stats)
	}
	if got := s2.Clock().Last(); got != last {
		t.Fatalf("clock after reopen = %v; want %v", got, last)
	}
	got := storetest.LoadAll(t, b)
	if len(got) != len(want) {
		t.Fatalf("Load after reopen = %d entries; want %d", len(got), len(want))
	}
	for i := range want {
		if !storetest.Equal(got[i], want[i]) {
			t.Fatalf("entry %d after reopen = %+v; want %+v", i, got[i], want[i])
		}
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	b := openTest(t, dir, Options{})
	b2, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		if b2 != nil {
			b2.Close()
		}
		t.Fatalf("second Open(%q) = %v; want ErrLocked", dir, err)
	}
	if !strings.Contains(err.Error(), "--data-dir") || !strings.Contains(err.Error(), dir) {
		t.Errorf("ErrLocked message %q should name the dir and --data-dir", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing releases the directory.
	openTest(t, dir, Options{}).Close()
}

// TestLockedOtherProcess holds the directory in a child process.
func TestLockedOtherProcess(t *testing.T) {
	dir := t.TempDir()
	child, out := startChild(t, "hold", dir, 0)
	defer child.Process.Kill()
	waitDone(t, out)
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open of a dir held by pid %d = %v; want ErrLocked", child.Process.Pid, err)
	}
}

func TestFormatMismatch(t *testing.T) {
	dir := t.TempDir()
	b := openTest(t, dir, Options{})
	if err := b.db.Update(func(txn *badgerTxn) error { return txn.Set(metaFormat, []byte{0x7f}) }); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := Open(dir, Options{}); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Open of an unknown format = %v; want ErrCorrupt", err)
	}
	openTest(t, dir, Options{InMemory: true}).Close() // the lock was released
	if b, err := Open(dir, Options{}); err == nil {
		b.Close()
		t.Fatal("second Open of an unknown format succeeded")
	} else if errors.Is(err, ErrLocked) {
		t.Fatalf("failed Open left the dir locked: %v", err)
	}
}

func TestRunGC(t *testing.T) {
	b := openTest(t, t.TempDir(), Options{})
	defer b.Close()
	if err := b.RunGC(); err != nil {
		t.Fatalf("RunGC on an empty store = %v; want nil", err)
	}
	// Overwrite large values so that the value log holds garbage.
	big := bytes.Repeat([]byte{'x'}, 32<<10)
	for round := 0; round < 4; round++ {
		var es []store.Entry
		for i := 0; i < 200; i++ {
			es = append(es, storetest.Entry(fmt.Sprintf("k%03d", i), string(big), store.Timestamp(round*1000+i+1)))
		}
		if err := b.Put(es); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.RunGC(); err != nil {
		t.Fatalf("RunGC = %v; want nil", err)
	}
	if got := len(storetest.LoadAll(t, b)); got != 200 {
		t.Fatalf("Load after RunGC = %d entries; want 200", got)
	}
	mem := openTest(t, "", Options{InMemory: true})
	defer mem.Close()
	if err := mem.RunGC(); err != nil {
		t.Fatalf("RunGC in memory = %v; want nil", err)
	}
	b.Close()
	if err := b.RunGC(); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("RunGC after Close = %v; want ErrClosed", err)
	}
}

func TestClosed(t *testing.T) {
	b := openTest(t, "", Options{InMemory: true})
	b.Close()
	if err := b.Put([]store.Entry{storetest.Entry("k", "v", 1)}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Put after Close = %v; want ErrClosed", err)
	}
	if _, err := b.Get("k"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close = %v; want ErrClosed", err)
	}
}

// The crash test and the lock test run this binary again as a child, which
// finds its role and arguments in the environment.
const (
	childEnv = "PEERCTL_BADGER_CHILD"
	dirEnv   = "PEERCTL_BADGER_DIR"
	countEnv = "PEERCTL_BADGER_N"
)

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "write":
		n, _ := strconv.Atoi(os.Getenv(countEnv))
		childWrite(os.Getenv(dirEnv), n)
	case "hold":
		childWrite(os.Getenv(dirEnv), 0)
	default:
		fmt.Fprintln(os.Stderr, "unknown child role")
		os.Exit(2)
	}
}

// childWrite opens dir without SyncWrites, puts n entries one commit each,
// prints "done", and then blocks until killed, holding the store open.
func childWrite(dir string, n int) {
	b, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := 0; i < n; i++ {
		e := storetest.Entry(fmt.Sprintf("crash/%05d", i), strconv.Itoa(i), store.Timestamp(i+1))
		if err := b.Put([]store.Entry{e}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Println("done")
	os.Stdin.Read(make([]byte, 1)) // the parent never writes: block until killed
	os.Exit(3)
}

func startChild(t *testing.T, role, dir string, n int) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, dirEnv+"="+dir, countEnv+"="+strconv.Itoa(n))
	cmd.Stderr = tlogWriter{t}
	stdin, err := cmd.StdinPipe() // kept open so the child blocks
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close() })
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(stdout)
}

// waitDone reads the child's output until it says "done"; the child exits
// on failure, which ends the output.
func waitDone(t *testing.T, out *bufio.Scanner) {
	t.Helper()
	for out.Scan() {
		if out.Text() == "done" {
			return
		}
	}
	t.Fatalf("child ended without saying done (%v)", out.Err())
}

// TestCrashSafety: a child process commits N entries without SyncWrites
// and is SIGKILLed without closing; every committed entry survives
// (Badger's log is written through mmap, so the page cache keeps it).
func TestCrashSafety(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	const n = 3000
	child, out := startChild(t, "write", dir, n)
	waitDone(t, out)
	if err := child.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	child.Wait()

	b := openTest(t, dir, Options{})
	defer b.Close()
	got := storetest.LoadAll(t, b)
	if len(got) != n {
		t.Fatalf("after SIGKILL, Load = %d entries; want %d", len(got), n)
	}
	for i, e := range got {
		want := storetest.Entry(fmt.Sprintf("crash/%05d", i), strconv.Itoa(i), store.Timestamp(i+1))
		if !storetest.Equal(e, want) {
			t.Fatalf("after SIGKILL, entry %d = %+v; want %+v", i, e, want)
		}
	}
}

// TestPutSplits puts more entries than one transaction holds with this
// tuning, which Put must split on ErrTxnTooBig.
func TestPutSplits(t *testing.T) {
	b := openTest(t, "", Options{InMemory: true})
	defer b.Close()
	n := int(b.db.MaxBatchCount()) + 100
	es := make([]store.Entry, n)
	keys := make([]string, n)
	for i := range es {
		es[i] = storetest.Entry(fmt.Sprintf("s/%06d", i), "v", store.Timestamp(i+1))
		keys[i] = es[i].Key
	}
	if err := b.Put(es); err != nil {
		t.Fatalf("Put(%d entries, batch limit %d): %v", n, b.db.MaxBatchCount(), err)
	}
	if got := len(storetest.LoadAll(t, b)); got != n {
		t.Fatalf("Load = %d entries; want %d", got, n)
	}
	if err := b.Delete(keys); err != nil {
		t.Fatalf("Delete(%d keys): %v", n, err)
	}
	if got := len(storetest.LoadAll(t, b)); got != 0 {
		t.Fatalf("Load after Delete = %d entries; want 0", got)
	}
}
