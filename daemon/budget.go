package daemon

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Body budget. Each route bounds its own body (a value's 64 KiB, a call's
// 8 MiB, a frame's 4 MiB), but the connection cap multiplies those bounds:
// 100 connections each sending 7 MiB of a push body, never finishing, held
// 870 MB. So every request body is read through one budget shared by all
// connections: bytes read and not yet handled count against it (a request's
// until its handler returns, a stream's until its frame is handled), and a
// read that would exceed it waits up to budgetWait for others to finish and
// then fails with errBusy (503). Memory held by bodies then stays below
// about twice the budget (buffers grow by doubling) whatever the number of
// connections.

// errBusy is returned by a body read when the body budget stays exhausted.
var errBusy = errors.New("server busy: too many request bytes in flight")

// budgetWait is how long a read waits for budget before it fails.
const budgetWait = time.Second

// bodyBudget counts the body bytes held by requests. It is safe for
// concurrent use.
type bodyBudget struct {
	max int64

	mu    sync.Mutex    // guards used, freed
	used  int64         // bytes held
	freed chan struct{} // closed (and replaced) when bytes are released
}

func newBodyBudget(max int64) *bodyBudget {
	return &bodyBudget{max: max, freed: make(chan struct{})}
}

// acquire takes n bytes, waiting up to budgetWait for them.
func (b *bodyBudget) acquire(n int64) error {
	var timeout <-chan time.Time
	for {
		b.mu.Lock()
		if b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		ch := b.freed
		b.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(budgetWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
		case <-timeout:
			return fmt.Errorf("%w (limit %d bytes): retry later", errBusy, b.max)
		}
	}
}

func (b *bodyBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// inUse returns the bytes held now.
func (b *bodyBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// budgetBody is a request body whose bytes count against a budget until
// release. Read and release are called by the handler's goroutine only.
type budgetBody struct {
	io.ReadCloser
	b    *bodyBudget
	held int64
}

// Read reads from the body and takes what it read from the budget. The
// bytes are taken after the read (a read cannot be sized in advance), so
// each body may run over by one read: at most len(p).
func (r *budgetBody) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		if berr := r.b.acquire(int64(n)); berr != nil {
			return 0, berr
		}
		r.held += int64(n)
	}
	return n, err
}

// release gives back everything read so far.
func (r *budgetBody) release() {
	r.b.release(r.held)
	r.held = 0
}
