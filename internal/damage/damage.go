// Package damage breaks files on purpose, for the tests of what peerctl
// does with a damaged data dir (store/badger and the end-to-end tests).
package damage

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// Size returns the size of the file at path, or 0 if it cannot be read.
func Size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Files returns the files in dir whose names end in ext, largest first.
// It fails the test if there is none.
func Files(tb testing.TB, dir, ext string) []string {
	tb.Helper()
	fs, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
	sort.Slice(fs, func(i, j int) bool { return Size(fs[i]) > Size(fs[j]) })
	if len(fs) == 0 {
		tb.Fatalf("no %s file in %s", ext, dir)
	}
	return fs
}

// Scribble overwrites n bytes of the file at path, from offset off, with
// bytes drawn from a generator seeded with seed, so a failure replays.
func Scribble(tb testing.TB, path string, off int64, n int, seed uint64) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		tb.Fatal(err)
	}
}
