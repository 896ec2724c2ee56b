package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A data dir the agent cannot write is not damage: the start fails with a
// message that says the dir must be writable, and does not send the
// operator to --resync (which moves the store aside). Before, it said "if
// its files are damaged, start once with --resync". As root, permissions
// do not stop writes, so the dir is bind-mounted read-only.
func TestReadOnlyDataDirIsNotCalledDamaged(t *testing.T) {
	dir := t.TempDir()
	nd := startNode(t, testConfig(t, "n1", dir))
	if err := nd.Shutdown(); err != nil {
		t.Fatal(err)
	}
	ro := dir
	if os.Geteuid() == 0 {
		ro = filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(ro, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "--bind", dir, ro).CombinedOutput(); err != nil {
			t.Skipf("SKIP: running as root and cannot bind-mount a read-only data dir (%v: %s); the read-only data dir case is untested", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", ro).Run() })
		if out, err := exec.Command("mount", "-o", "remount,bind,ro", ro).CombinedOutput(); err != nil {
			t.Skipf("SKIP: cannot remount the data dir read-only (%v: %s); the read-only data dir case is untested", err, out)
		}
	} else {
		store := filepath.Join(dir, "store")
		if err := os.Chmod(store, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(store, 0o700) })
	}
	_, err := Create(testConfig(t, "n1", ro))
	if err == nil {
		t.Fatal("agent started on a read-only data dir")
	}
	if msg := err.Error(); !strings.Contains(msg, "must be writable") || strings.Contains(msg, "--resync") {
		t.Errorf("start on a read-only data dir: %q; want it to say the dir must be writable, without --resync", msg)
	}
}
