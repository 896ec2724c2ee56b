package procs

import (
	"os"
	"os/exec"
	"testing"
	"time"

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
	f, err := os.Create(log)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	l := &cluster.Launcher{Exe: ip, Grace: StopGrace, Env: CleanEnv()}
	at := time.Now()
	c, err := l.StartNotify(name, append([]string{"netns", "exec", ns, b.Path}, args...), f, exited)
	if err != nil {
		tb.Fatal(err)
	}
	return &Proc{Child: c, Log: log, Started: at, l: l}
}
