package badger

import (
	"fmt"
	"os"
)

// MoveAside renames the store directory dir to to while holding its
// lock, so the store of a running agent is never moved: it fails with an
// error wrapping ErrLocked then. Nothing is deleted.
func MoveAside(dir, to string) error {
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("badger: move %s aside: %w", dir, err)
	}
	defer unlock()
	if _, err := os.Stat(to); err == nil {
		return fmt.Errorf("badger: move %s aside: %s already exists", dir, to)
	}
	if err := os.Rename(dir, to); err != nil {
		return fmt.Errorf("badger: move %s aside: %w", dir, err)
	}
	return nil
}
