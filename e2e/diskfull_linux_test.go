package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// mountTmpfs mounts a tmpfs of sizeMiB at a fresh directory and unmounts
// it when the test ends, pass or fail (after the test's agents have
// stopped: cleanups run last-registered first). It skips the test, loudly,
// if it cannot mount.
func mountTmpfs(t *testing.T, sizeMiB int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the disk-full test mounts a small tmpfs and needs root (CI runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(sizeMiB)+"m"); err != nil {
		t.Skipf("SKIPPED: cannot mount a tmpfs for the disk-full test: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v; detaching it", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// fillTo allocates a filler file on mnt so that about leaveMiB stay free,
// and returns a function that removes it.
func fillTo(t *testing.T, mnt string, leaveMiB int) (free func()) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * int64(st.Bsize)
	want := avail - int64(leaveMiB)<<20
	if want <= 0 {
		t.Fatalf("only %d MiB free on %s; cannot leave %d MiB", avail>>20, mnt, leaveMiB)
	}
	p := filepath.Join(mnt, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, want); err != nil {
		t.Fatalf("fallocate %d bytes: %v", want, err)
	}
	return func() {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDiskFull: a node whose data dir's disk fills up (a 160 MiB tmpfs).
// Before, badger wrote into its mmapped logs until the kernel sent SIGBUS,
// and the node died again at every start while the disk stayed full.
// Now, below --min-free-mib (64) it refuses writes, local and from peers,
// with "no space left" (HTTP 507) and serves reads; writes resume once
// space is freed and anti-entropy catches up. Started on a full disk
// after a clean stop it opens read-only; after a crash it exits 1 with
// one line. Acknowledged data stays intact throughout.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	mnt := mountTmpfs(t, 160)
	n1, n2 := newNode(t, "n1"), newNode(t, "n2")
	n2.dir = filepath.Join(mnt, "n2")
	start(t, "n1", n1.args()...)
	p2 := start(t, "n2", n2.args(n1.gossip)...)
	waitStatus(t, formTimeout, []node{n1, n2}, "alive", "n1", "n2")
	want := putKeys(t, n2, "acked", 10)
	waitKeys(t, n1, n2)

	// Below the minimum but above what badger needs: writes refused.
	unfill := fillTo(t, mnt, 40)
	waitUntil(t, syncTimeout, "writes at n2 refused for lack of space", func() (bool, string) {
		r := peerctl.CLI(t, n2.api, "put", "refused", "x")
		return r.Code != 0 && strings.Contains(r.Stderr, "no space left"), r.String()
	})
	for k, v := range putKeys(t, n1, "while-full", 5) {
		want[k] = v
	}
	checkValues(t, n2, map[string]string{"acked/small/003": "value 3", "acked/big/004": bigValue(4)})
	if p2.Exited() {
		t.Fatalf("n2 exited on a full disk: %v", p2.Err())
	}
	unfill()
	waitUntil(t, syncTimeout, "writes at n2 accepted once space is freed", func() (bool, string) {
		r := peerctl.CLI(t, n2.api, "put", "after-full", "ok")
		return r.Code == 0, r.String()
	})
	want["after-full"] = "ok"
	waitKeys(t, n2, n1)
	checkValues(t, n2, want)

	// A start on a full disk after a clean stop: read-only, reads served.
	stopNode(t, p2)
	unfill = fillTo(t, mnt, 8)
	pfull := start(t, "n2-full", "agent", "--data-dir", n2.dir)
	waitUntil(t, formTimeout, "n2 serving reads on a full disk", func() (bool, string) {
		r := peerctl.CLI(t, n2.api, "get", "after-full")
		return r.Code == 0 && r.Stdout == "ok\n", r.String()
	})
	checkValues(t, n2, want)
	if r := peerctl.CLI(t, n2.api, "put", "x", "y"); r.Code == 0 || !strings.Contains(r.Stderr, "read-only") {
		t.Errorf("put on a store opened read-only: %v; want a refusal saying read-only", r)
	}

	// After a crash, on a full disk: badger cannot open read-only (it
	// must replay its log), so the start is refused with one line.
	unfill()
	stopNode(t, pfull)
	p2 = start(t, "n2-crash", "agent", "--data-dir", n2.dir)
	waitUntil(t, formTimeout, "n2 writable again", func() (bool, string) {
		r := peerctl.CLI(t, n2.api, "put", "before-crash", "kept")
		return r.Code == 0, r.String()
	})
	want["before-crash"] = "kept"
	if err := p2.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p2.Done()
	unfill = fillTo(t, mnt, 8)
	p := start(t, "n2-refused", "agent", "--data-dir", n2.dir)
	if err := p.Wait(t, formTimeout); err == nil {
		t.Fatal("agent started on a full disk after a crash exited 0")
	}
	out := strings.TrimSpace(p.Output())
	last := out[strings.LastIndexByte(out, '\n')+1:]
	if !strings.HasPrefix(last, "peerctl: ") || !strings.Contains(last, "free some space") || strings.Contains(out, "goroutine") {
		t.Fatalf("output = %q; want a last line \"peerctl: ... free some space ...\" and no goroutine dump", out)
	}
	unfill()
	start(t, "n2-back", "agent", "--data-dir", n2.dir)
	waitKeys(t, n2, n1)
	checkValues(t, n2, want)
}
