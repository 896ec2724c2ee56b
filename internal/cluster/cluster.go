package cluster

// A local cluster is a few `peerctl agent` daemons started as child
// processes of this binary on loopback ports, each with its own data dir
// (badger locks its directory). `peerctl up` and `peerctl demo` use it.
//
// The launcher owns the children: it starts each in its own process group,
// so a Ctrl-C at the terminal reaches only peerctl, which then stops them in
// order; on Linux a child also gets SIGKILL if peerctl itself dies. It
// stops a child by PID: SIGTERM, then SIGKILL after a grace period. A
// goroutine per child waits for it, so every child is reaped whether it
// exits on request or on its own.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

// Node is one agent of a local cluster and the addresses it uses.
type Node struct {
	Name    string
	Gossip  string // gossip address 127.0.0.1:PORT
	API     string // HTTP API address 127.0.0.1:PORT
	DataDir string
}

// Layout lays out n nodes named node1..nodeN from base: node i gossips
// on base+2(i-1) and serves its API on the port above. Data dirs are
// dir/nodeI.
func Layout(n, base int, dir string) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		name := "node" + strconv.Itoa(i+1)
		p := base + 2*i
		nodes[i] = Node{
			Name:    name,
			Gossip:  Loopback(p),
			API:     Loopback(p + 1),
			DataDir: filepath.Join(dir, name),
		}
	}
	return nodes
}

func Loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// AgentArgs is the command line that starts n for the first time, joining
// the gossip addresses in join. The agent saves these flags in its data
// dir, so `agent --data-dir DIR` restarts it with the same ones.
func (n Node) AgentArgs(profile, encrypt string, join []string, extra ...string) []string {
	args := []string{"agent", "--name", n.Name, "--bind", n.Gossip, "--api", n.API, "--data-dir", n.DataDir, "--profile", profile}
	if encrypt != "" {
		args = append(args, "--encrypt", encrypt)
	}
	for _, j := range join {
		args = append(args, "--join", j)
	}
	return append(args, extra...)
}

// Ports for local clusters are drawn from below Linux's default ephemeral
// range (32768-60999): outgoing connections take their local port from that
// range, and could take a port between the moment it is found free and the
// moment a restarted node binds it again.
const (
	portLow  = 20000
	portHigh = 32000
)

// holdPort binds port on 127.0.0.1 for both TCP and UDP (gossip uses both)
// and returns the sockets; the port is free if it succeeds. The caller
// closes them.
func holdPort(port int) ([]io.Closer, error) {
	addr := Loopback(port)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		l.Close()
		return nil, err
	}
	return []io.Closer{l, u}, nil
}

// BusyPort returns the first port in base..base+n-1 that cannot be bound,
// and the bind error; 0 if all are free.
func BusyPort(base, n int) (int, error) {
	var held []io.Closer
	defer func() { closeAll(held) }()
	for p := base; p < base+n; p++ {
		c, err := holdPort(p)
		if err != nil {
			return p, err
		}
		held = append(held, c...)
	}
	return 0, nil
}

// handed remembers the ports FreePortRange gave out, as a port whose agent
// has stopped looks free again while a restart of it may still come. It
// forgets them all when they fill half the range.
var handed struct {
	mu    sync.Mutex
	ports map[int]bool // guarded by mu
}

// FreePortRange returns a base port such that base..base+n-1 were all free
// for TCP and UDP on loopback when it looked, and not handed out before by
// this process, chosen at random between portLow and portHigh. It is safe
// for concurrent use.
func FreePortRange(n int) (int, error) {
	if n <= 0 || n > portHigh-portLow {
		return 0, fmt.Errorf("free port range: cannot find %d ports", n)
	}
	handed.mu.Lock()
	defer handed.mu.Unlock()
	if handed.ports == nil || len(handed.ports)+n > (portHigh-portLow)/2 {
		handed.ports = map[int]bool{}
	}
	for range 200 {
		base := portLow + rand.IntN(portHigh-portLow-n+1)
		taken := false
		for p := base; p < base+n && !taken; p++ {
			taken = handed.ports[p]
		}
		if taken {
			continue
		}
		if p, _ := BusyPort(base, n); p == 0 {
			for p := base; p < base+n; p++ {
				handed.ports[p] = true
			}
			return base, nil
		}
	}
	return 0, fmt.Errorf("free port range: no %d consecutive free ports found between %d and %d", n, portLow, portHigh)
}

func closeAll(cs []io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}

// Child is a process started by a launcher.
type Child struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	err  error         // its exit status; written before done is closed
	// stopping is set when the launcher asks the child to stop, so that an
	// exit is not reported as unexpected.
	stopping atomic.Bool
	termed   atomic.Bool // SIGTERM sent: a second one would make an agent exit at once
}

// PID returns the child's process ID.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Done is closed once the child has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Err returns the child's exit status once Done is closed: nil for exit
// status 0.
func (c *Child) Err() error {
	<-c.done
	return c.err
}

// Exited reports whether the child has exited and been reaped.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Term sends SIGTERM by PID, once: the agent leaves the cluster and exits;
// a second SIGTERM would make it exit at once. It marks the exit as
// expected and does not wait: see Done.
func (c *Child) Term() error {
	c.stopping.Store(true)
	if c.termed.Swap(true) {
		return nil
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s (pid %d): %w", c.Name, c.PID(), err)
	}
	return nil
}

// Termed reports whether Term has been called.
func (c *Child) Termed() bool { return c.termed.Load() }

// Stopping reports whether the launcher has asked the child to stop, or
// the caller said it expects the child to exit.
func (c *Child) Stopping() bool { return c.stopping.Load() }

// ExpectExit marks an exit the caller has caused some other way (say a
// kill through the API) as expected.
func (c *Child) ExpectExit() { c.stopping.Store(true) }

// Kill sends SIGKILL to the child by PID, as kill -9 does, and marks its
// exit as expected. It does not wait: Done is closed once it is reaped.
func (c *Child) Kill() error {
	c.stopping.Store(true)
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s (pid %d): %w", c.Name, c.PID(), err)
	}
	return nil
}

// Launcher starts child processes of one executable and stops them by
// PID. It is safe for concurrent use.
type Launcher struct {
	Exe string // the program to run; os.Executable() for agents
	// Grace is how long Stop waits after SIGTERM before SIGKILL.
	Grace time.Duration
	// Env is the children's environment; nil: this process's.
	Env []string

	mu       sync.Mutex
	children []*Child // guarded by mu; every child started, in order
}

// NewLauncher returns a launcher that runs this peerctl binary.
func NewLauncher() (*Launcher, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the peerctl binary to start agents with: %w", err)
	}
	return &Launcher{Exe: exe, Grace: 10 * time.Second}, nil
}

// Start runs the executable with args, its output going to out (both
// stdout and stderr; nil discards it). It returns once the process has
// started; the child is reaped when it exits.
func (l *Launcher) Start(name string, args []string, out io.Writer) (*Child, error) {
	return l.StartNotify(name, args, out, nil)
}

// StartNotify is Start, and calls exited, if not nil, with the child and
// its exit status once it has been reaped, before Done is closed.
func (l *Launcher) StartNotify(name string, args []string, out io.Writer, exited func(c *Child, err error)) (*Child, error) {
	cmd := exec.Command(l.Exe, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = l.Env
	cmd.SysProcAttr = childAttr()
	// If out is not a file, exec copies through a pipe; don't let a
	// grandchild that holds the pipe keep Wait from returning.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &Child{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		if exited != nil {
			exited(c, c.err)
		}
		close(c.done)
	}()
	l.mu.Lock()
	l.children = append(l.children, c)
	l.mu.Unlock()
	return c, nil
}

// Stop stops c by PID: SIGTERM, then SIGKILL if it has not exited after
// the grace period. It blocks until c has been reaped and returns nil if c
// had already exited.
func (l *Launcher) Stop(c *Child) error {
	c.stopping.Store(true)
	if c.Exited() {
		return nil
	}
	if err := c.Term(); err != nil {
		return err
	}
	t := time.NewTimer(l.Grace)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
	}
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s (pid %d): %w", c.Name, c.PID(), err)
	}
	<-c.done
	return fmt.Errorf("%s (pid %d) did not stop within %s of SIGTERM; killed it", c.Name, c.PID(), l.Grace)
}

// StopAll stops every child still running and returns when all have been
// reaped. It stops all but the first at once, then the first: an agent
// that leaves waits until its leave has been gossiped to a member that is
// still alive, so stopping every agent at the same moment can keep the
// last ones waiting on peers that are already gone.
func (l *Launcher) StopAll() error {
	l.mu.Lock()
	var cs []*Child
	for _, c := range l.children {
		select {
		case <-c.done:
		default:
			cs = append(cs, c)
		}
	}
	l.mu.Unlock()
	if len(cs) == 0 {
		return nil
	}
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i+1] = l.Stop(c)
		}()
	}
	wg.Wait()
	errs[0] = l.Stop(cs[0])
	return errors.Join(errs...)
}

// KillAll kills every child it started by PID (SIGKILL: for clusters
// whose data is thrown away) and returns once all have been reaped.
func (l *Launcher) KillAll() {
	l.mu.Lock()
	cs := slices.Clone(l.children)
	l.mu.Unlock()
	for _, c := range cs {
		c.Kill()
	}
	for _, c := range cs {
		<-c.done
	}
}

// LineWriter calls fn with each complete line written to it, without the
// newline; a final partial line is passed to fn by Close. It is safe for
// concurrent use.
type LineWriter struct {
	Fn  func(line string)
	mu  sync.Mutex
	buf []byte // guarded by mu
}

func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.Fn(string(bytes.TrimRight(w.buf[:i], "\r")))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// Close flushes a final line that lacks a newline.
func (w *LineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.Fn(string(w.buf))
		w.buf = nil
	}
	return nil
}

// SyncWriter serializes writes to w, so lines from several children and
// from peerctl itself do not interleave.
type SyncWriter struct {
	mu sync.Mutex
	W  io.Writer // guarded by mu
}

func (s *SyncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.W.Write(p)
}

// TailFile returns the last n lines of the file at path, or nil.
func TailFile(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}

// WaitFor calls cond every interval until it reports done, the timeout
// passes or ctx ends. cond says why it is not done yet, and the timeout
// error repeats the last reason: "after 15s: node2 sees node3 as alive".
func WaitFor(ctx context.Context, timeout, interval time.Duration, cond func(ctx context.Context) (done bool, why string)) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	why := "not checked yet"
	for {
		done, w := cond(wctx)
		if done {
			return nil
		}
		if w != "" {
			why = w
		}
		select {
		case <-wctx.Done():
			if err := ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("after %s: %s", timeout, why)
		case <-t.C:
		}
	}
}

// WaitErr is WaitFor for a condition that returns nil when done, else
// why it is not.
func WaitErr(ctx context.Context, timeout, interval time.Duration, cond func() error) error {
	return WaitFor(ctx, timeout, interval, func(context.Context) (bool, string) {
		if err := cond(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// MemberViews asks each node's API for its member list, concurrently. A
// node that cannot be asked has a nil list and an error.
func MemberViews(ctx context.Context, nodes []Node) ([][]api.Member, []error) {
	views := make([][]api.Member, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			views[i], errs[i] = Client(n.API).Members(ctx, "")
		}()
	}
	wg.Wait()
	return views, errs
}

// Client returns a client for the daemon at addr with a short timeout:
// the launcher polls, and a hung request must not outlast a step.
func Client(addr string) *api.Client {
	return api.NewClientWith(addr, &http.Client{Timeout: 2 * time.Second})
}

// StatusIn returns name's status in a member list, or "unknown".
func StatusIn(ms []api.Member, name string) string {
	for _, m := range ms {
		if m.Name == name {
			return m.Status
		}
	}
	return "unknown"
}

// AllAlive checks that every node sees every node in want as alive; if
// not it says who sees what.
func AllAlive(ctx context.Context, nodes []Node, want []string) (bool, string) {
	views, errs := MemberViews(ctx, nodes)
	for i, n := range nodes {
		if errs[i] != nil {
			return false, fmt.Sprintf("%s does not answer at %s: %v", n.Name, n.API, errs[i])
		}
		for _, w := range want {
			if st := StatusIn(views[i], w); st != "alive" {
				return false, fmt.Sprintf("%s sees %s as %s", n.Name, w, st)
			}
		}
	}
	return true, ""
}

// ProcCPU returns the user+system CPU time a process has used, from
// /proc/PID/stat (Linux only; clock ticks of 1/100 s).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
