package daemon

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
	"github.com/peerctl/peerctl/store/badger"
)

// TestDiskGuard: writes are refused with ErrNoSpace below the minimum and
// allowed again once space is back; statfs runs at most once a second.
func TestDiskGuard(t *testing.T) {
	now := time.Unix(1000, 0)
	free, calls := uint64(100<<20), 0
	g := newDiskGuard("/data", 64<<20, slog.New(slog.DiscardHandler))
	g.now = func() time.Time { return now }
	g.stat = func(string) (uint64, bool, error) { calls++; return free, true, nil }

	if err := g.check(0); err != nil {
		t.Fatalf("check with 100 MiB free = %v; want nil", err)
	}
	free = 10 << 20
	if err := g.check(0); err != nil || calls != 1 {
		t.Fatalf("check within a second = %v after %d statfs; want the cached reading", err, calls)
	}
	now = now.Add(diskRecheck)
	if err := g.check(0); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("check with 10 MiB free = %v; want ErrNoSpace", err)
	}
	free = 65 << 20
	now = now.Add(diskRecheck)
	if err := g.check(0); err != nil {
		t.Fatalf("check after space came back = %v; want nil", err)
	}
	// Bytes let through count against the reading, and a quarter of the
	// minimum written forces a new reading within the second.
	free, calls = 100<<20, 0
	now = now.Add(diskRecheck)
	for i := 0; i < 2; i++ {
		if err := g.check(5 << 20); err != nil {
			t.Fatalf("write %d of 5 MiB with 100 MiB free = %v", i, err)
		}
	}
	if err := g.check(20 << 20); !errors.Is(err, store.ErrNoSpace) || calls != 2 {
		t.Fatalf("20 MiB more after 2x5 MiB = %v after %d statfs; want ErrNoSpace after a new reading", err, calls)
	}
	g.stat = func(string) (uint64, bool, error) { return 0, false, errors.New("statfs failed") }
	now = now.Add(diskRecheck)
	if err := g.check(0); err != nil {
		t.Fatalf("check when statfs fails = %v; want nil (unchecked)", err)
	}
}

func TestFreeSpace(t *testing.T) {
	free, ok, err := freeSpace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("free=%d known=%v", free, ok)
}

func TestCleanStopRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := readCleanStop(dir); ok || err != nil {
		t.Fatalf("readCleanStop of an empty dir = %v, %v; want none", ok, err)
	}
	want := cleanStop{Keys: 7, Tombstones: 2, StoppedAt: time.Unix(5, 0).UTC()}
	if err := writeCleanStop(dir, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := readCleanStop(dir)
	if err != nil || !ok || got != want {
		t.Fatalf("readCleanStop = %+v, %v, %v; want %+v", got, ok, err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanStopFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("clean-stop record still there after a start: %v", err)
	}
}

// FuzzDecodeCleanStop: any bytes in clean-stop.json give a record with
// non-negative counts or an error, never a panic.
func FuzzDecodeCleanStop(f *testing.F) {
	f.Add([]byte(`{"keys":3,"tombstones":1,"stopped_at":"2026-11-29T12:00:00Z"}`))
	f.Add([]byte(`{"keys":-1}`))
	f.Add([]byte(`{"keys":1}{"keys":2}`))
	f.Add([]byte(`{"keys":1e30}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := decodeCleanStop(b)
		if err == nil && (cs.Keys < 0 || cs.Tombstones < 0) {
			t.Fatalf("decodeCleanStop(%q) = %+v", b, cs)
		}
	})
}

// TestMoveAside: --resync moves a store aside and keeps it, does nothing
// for an absent store, and never moves the store of a running agent.
func TestMoveAside(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if to, err := moveAside(dir, time.Now()); to != "" || err != nil {
		t.Fatalf("moveAside of a missing store = %q, %v; want nothing to do", to, err)
	}
	be, err := badger.Open(dir, badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := moveAside(dir, time.Now()); !errors.Is(err, badger.ErrLocked) {
		t.Fatalf("moveAside of an open store = %v; want ErrLocked", err)
	}
	be.Close()
	to, err := moveAside(dir, time.Unix(0, 0))
	if err != nil || !strings.HasSuffix(to, "store.damaged-19700101T000000.000Z") {
		t.Fatalf("moveAside = %q, %v", to, err)
	}
	if _, err := os.Stat(filepath.Join(to, "MANIFEST")); err != nil {
		t.Fatalf("moved store lost its MANIFEST: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("store still at %s: %v", dir, err)
	}
}
