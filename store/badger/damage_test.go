package badger

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerctl/peerctl/internal/damage"
	"github.com/peerctl/peerctl/store"
)

const (
	damageSmall = 5000 // values kept in the LSM tree
	damageBig   = 300  // values above ValueThreshold, kept in the value log
)

func damageEntry(i int) store.Entry {
	if i < damageSmall {
		k := fmt.Sprintf("k/%05d", i)
		return store.Entry{Key: k, Value: []byte(k + strings.Repeat("-", 100)), Version: store.Version{TS: store.Timestamp(i + 1), Node: "n1"}}
	}
	k := fmt.Sprintf("big/%05d", i)
	return store.Entry{Key: k, Value: bytes.Repeat([]byte(k), 2000/len(k)+1), Version: store.Version{TS: store.Timestamp(i + 1), Node: "n1"}}
}

// fillDamageDir writes the damage set to dir and closes it cleanly, so
// the memtable is flushed into a table.
func fillDamageDir(t *testing.T, dir string) {
	t.Helper()
	b := openTest(t, dir, Options{})
	var batch []store.Entry
	for i := 0; i < damageSmall+damageBig; i++ {
		batch = append(batch, damageEntry(i))
		if len(batch) == 100 {
			if err := b.Put(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := b.Put(batch); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// largest returns the biggest file in dir with the extension.
func largest(t *testing.T, dir, ext string) string {
	t.Helper()
	return damage.Files(t, dir, ext)[0]
}

func size(p string) int64 { return damage.Size(p) }

func scribble(t *testing.T, path string, off int64, n int) {
	t.Helper()
	damage.Scribble(t, path, off, n, 1)
}

var damages = map[string]func(t *testing.T, dir string){
	"none":         func(t *testing.T, dir string) {},
	"no-manifest":  func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "MANIFEST")) },
	"sst-garbage":  func(t *testing.T, dir string) { p := largest(t, dir, ".sst"); scribble(t, p, size(p)/3, 1024) },
	"sst-truncate": func(t *testing.T, dir string) { p := largest(t, dir, ".sst"); os.Truncate(p, size(p)/2) },
	"vlog-garbage": func(t *testing.T, dir string) { p := largest(t, dir, ".vlog"); scribble(t, p, size(p)/2, 1024) },
	"vlog-flip":    func(t *testing.T, dir string) { p := largest(t, dir, ".vlog"); scribble(t, p, size(p)/2+7, 8) },
}

// loadAll loads b and checks every key of the damage set with Get: each
// is either the value written or missing and in quarantine, never another
// value. It returns how many were loaded.
func loadAll(t *testing.T, b *Backend) (loaded int) {
	t.Helper()
	if err := b.Load(func(store.Entry) error { loaded++; return nil }); err != nil {
		t.Fatalf("Load: %v", err)
	}
	quarantined := map[string]bool{}
	if err := b.Quarantined(func(key, reason string, raw []byte) error {
		quarantined[key] = true
		if reason == "" {
			t.Errorf("quarantined %q has no reason", key)
		}
		return nil
	}); err != nil {
		t.Fatalf("Quarantined: %v", err)
	}
	missing := 0
	for i := 0; i < damageSmall+damageBig; i++ {
		want := damageEntry(i)
		got, err := b.Get(want.Key)
		switch {
		case errors.Is(err, store.ErrNotFound):
			missing++
			if !quarantined[want.Key] {
				t.Errorf("Get(%q) = not found, and it is not in quarantine: silent loss", want.Key)
			}
		case err != nil:
			t.Errorf("Get(%q) after Load: %v", want.Key, err)
		case !bytes.Equal(got.Value, want.Value) || got.Version != want.Version:
			t.Fatalf("Get(%q) = a different value or version: a wrong value served", want.Key)
		}
	}
	if loaded+missing != damageSmall+damageBig {
		t.Errorf("loaded %d + missing %d != %d written", loaded, missing, damageSmall+damageBig)
	}
	if b.QuarantinedCount() != len(quarantined) {
		t.Errorf("QuarantinedCount() = %d; want %d", b.QuarantinedCount(), len(quarantined))
	}
	return loaded
}

// TestDamagedDirRefused: damage Badger would silently "repair" by deleting
// data, or crash on, makes Open fail with ErrDamaged and leaves every
// file in place (issue 7: missing MANIFEST, garbage in a table, truncated
// table). Before, these opened with 0 keys, lost keys without a log line,
// and panicked in a Badger goroutine.
func TestDamagedDirRefused(t *testing.T) {
	for _, tc := range []struct{ name, msg string }{
		{"no-manifest", "MANIFEST is missing"},
		{"sst-garbage", "000001.sst"},
		{"sst-truncate", "000001.sst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fillDamageDir(t, dir)
			damages[tc.name](t, dir)
			before, _ := filepath.Glob(filepath.Join(dir, "*"))
			b, err := Open(dir, Options{})
			if err == nil {
				b.Close()
				t.Fatalf("Open of a dir with %s succeeded; want ErrDamaged", tc.name)
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Open = %v; want ErrDamaged mentioning %q", err, tc.msg)
			}
			after, _ := filepath.Glob(filepath.Join(dir, "*"))
			if strings.Join(before, ",") != strings.Join(after, ",") {
				t.Errorf("files changed by a refused Open:\nbefore %v\nafter  %v", before, after)
			}
			t.Logf("Open: %v", err)
		})
	}
}

// TestDamagedValueLogQuarantined: garbage in the value log never serves a
// wrong value: Load quarantines the records it cannot verify, logs them,
// the rest load, and a second open finds the same state (issue 7).
func TestDamagedValueLogQuarantined(t *testing.T) {
	for _, name := range []string{"vlog-garbage", "vlog-flip"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fillDamageDir(t, dir)
			damages[name](t, dir)
			b := openTest(t, dir, Options{})
			n := loadAll(t, b)
			q := b.QuarantinedCount()
			if q == 0 || n == damageSmall+damageBig {
				t.Fatalf("loaded %d, quarantined %d; want some values quarantined", n, q)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			b = openTest(t, dir, Options{})
			defer b.Close()
			if n2 := loadAll(t, b); n2 != n || b.QuarantinedCount() != q {
				t.Errorf("reopen: loaded %d, quarantined %d; want %d, %d", n2, b.QuarantinedCount(), n, q)
			}
		})
	}
}

// TestChecksumOnGet: a value damaged on disk while the store is open comes
// back from Get as store.ErrCorrupt, never as a value.
func TestChecksumOnGet(t *testing.T) {
	dir := t.TempDir()
	b := openTest(t, dir, Options{})
	defer b.Close()
	big := damageEntry(damageSmall)
	if err := b.Put([]store.Entry{big}); err != nil {
		t.Fatal(err)
	}
	p := largest(t, dir, ".vlog")
	f, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	off := bytes.Index(f, big.Value[:64])
	if off < 0 {
		t.Fatal("value not found in the value log")
	}
	scribble(t, p, int64(off+100), 8)
	got, err := b.Get(big.Key)
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Get of a damaged value = %d bytes, %v; want ErrCorrupt", len(got.Value), err)
	}
	t.Logf("Get: %v", err)
}

// TestQuarantine: Quarantine moves a record aside with its raw bytes and
// reason; the count survives a restart.
func TestQuarantine(t *testing.T) {
	dir := t.TempDir()
	b := openTest(t, dir, Options{})
	e := damageEntry(1)
	if err := b.Put([]store.Entry{e, damageEntry(2)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Quarantine(e.Key, errors.New("test reason")); err != nil {
		t.Fatal(err)
	}
	if err := b.Quarantine("absent", errors.New("x")); err != nil {
		t.Fatalf("Quarantine of a missing key: %v", err)
	}
	if _, err := b.Get(e.Key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Quarantine = %v; want ErrNotFound", err)
	}
	b.Close()
	b = openTest(t, dir, Options{})
	defer b.Close()
	if b.QuarantinedCount() != 1 {
		t.Fatalf("QuarantinedCount() = %d; want 1", b.QuarantinedCount())
	}
	var got []string
	b.Quarantined(func(key, reason string, raw []byte) error {
		got = append(got, key, reason)
		if !bytes.Equal(raw, encodeValue(e)) {
			t.Errorf("raw bytes of %q differ from what was stored", key)
		}
		return nil
	})
	if len(got) != 2 || got[0] != e.Key || got[1] != "test reason" {
		t.Fatalf("Quarantined = %q", got)
	}
}

// TestBeforeWrite: a refusal from Options.BeforeWrite fails Put with its
// error and writes nothing; a read-only store refuses writes with
// store.ErrNoSpace and serves reads.
func TestBeforeWrite(t *testing.T) {
	dir := t.TempDir()
	full := true
	b := openTest(t, dir, Options{BeforeWrite: func(int) error {
		if full {
			return store.ErrNoSpace
		}
		return nil
	}})
	e := damageEntry(3)
	if err := b.Put([]store.Entry{e}); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("Put on a full disk = %v; want ErrNoSpace", err)
	}
	if _, err := b.Get(e.Key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after refused Put = %v; want ErrNotFound", err)
	}
	full = false
	if err := b.Put([]store.Entry{e}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	ro := openTest(t, dir, Options{ReadOnly: true})
	defer ro.Close()
	if got, err := ro.Get(e.Key); err != nil || !bytes.Equal(got.Value, e.Value) {
		t.Fatalf("read-only Get = %v; want the value", err)
	}
	if err := ro.Put([]store.Entry{damageEntry(4)}); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("read-only Put = %v; want ErrNoSpace", err)
	}
}

// FuzzDecodeQuarantine: any bytes under the quarantine prefix decode to a
// reason and raw bytes or fail with ErrCorrupt, and what encodes decodes.
func FuzzDecodeQuarantine(f *testing.F) {
	f.Add(encodeQuarantine("reason", []byte("raw")))
	f.Add([]byte{formatV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		reason, raw, err := decodeQuarantine(b)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("decodeQuarantine(%x) = %v; want ErrCorrupt", b, err)
			}
			return
		}
		if len(reason) > maxReasonLen {
			return // not made by encodeQuarantine, still decoded safely
		}
		r2, raw2, err := decodeQuarantine(encodeQuarantine(reason, raw))
		if err != nil || r2 != reason || !bytes.Equal(raw2, raw) {
			t.Fatalf("round trip of %q, %x = %q, %x, %v", reason, raw, r2, raw2, err)
		}
	})
}
