//go:build !linux

package cluster

import "syscall"

// childAttr puts a child in its own process group, so a terminal's Ctrl-C
// reaches only peerctl, which then stops it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
