package cluster

import "syscall"

// childAttr puts a child in its own process group, so a terminal's Ctrl-C
// reaches only peerctl, and has the kernel SIGKILL it if peerctl dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
