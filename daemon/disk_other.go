//go:build !linux

package daemon

// freeSpace is not checked outside Linux.
func freeSpace(string) (uint64, bool, error) { return 0, false, nil }
