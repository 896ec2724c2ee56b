//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package badger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockFile sits beside Badger's own LOCK file. Badger's lock error does
// not wrap the cause, so we take our own flock first to recognise a
// running agent reliably. flock conflicts between two opens in one process
// too, so a second Open in the same process is refused the same way.
const lockFile = "peerctl.lock"

// lockDir creates dir if needed and takes an exclusive, non-blocking flock
// on dir/peerctl.lock. The lock dies with the process, so a crash leaves
// nothing to clean up. It returns ErrLocked if another holder has it.
func lockDir(dir string) (unlock func() error, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	return f.Close, nil // closing the file releases the flock
}

// dirSize sums the allocated bytes of the regular files in dir.
func dirSize(dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, de := range ents {
		if !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += int64(st.Blocks) * 512
		} else {
			n += fi.Size()
		}
	}
	return n
}
