package procs

import (
	"os/exec"
	"testing"

	"github.com/peerctl/peerctl/internal/cluster"
)

// StartIn is Start with the process in the network namespace ns: it runs
// `ip netns exec NS BINARY ARGS...`, which enters the namespace and execs
// the binary, so the PID is peerctl's own. Root only.
func (b *Binary) StartIn(tb testing.TB, ns, name, log string, exited func(c *cluster.Child, err error), args ...string) *Proc {
	tb.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		tb.Fatal(err)
	}
	l := &cluster.Launcher{Exe: ip, Grace: StopGrace, Env: CleanEnv()}
	return start(tb, l, name, log, exited, append([]string{"netns", "exec", ns, b.Path}, args...))
}
