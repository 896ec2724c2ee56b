package daemon

import (
	"context"
	"sync"
)

// workers runs a component's one-off goroutines (not its loops, which have
// their own places in its wait group): each gets the context that stop
// cancels, and stop waits for all of them. Go after stop starts nothing,
// so a goroutine cannot slip in while stop waits. It is safe for
// concurrent use; the zero value is not: use newWorkers.
type workers struct {
	ctx     context.Context // cancelled by stop
	cancel  context.CancelFunc
	mu      sync.Mutex // guards stopped, and wg.Add against stop's Wait
	wg      sync.WaitGroup
	stopped bool
}

func newWorkers() *workers {
	ctx, cancel := context.WithCancel(context.Background())
	return &workers{ctx: ctx, cancel: cancel}
}

// Go runs f in a goroutine that stop waits for, and reports whether it
// did: after stop it does not. f should return soon after ctx is done.
func (w *workers) Go(f func(ctx context.Context)) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		f(w.ctx)
	}()
	return true
}

// stop cancels the workers' context and waits for every goroutine Go
// started. It is idempotent.
func (w *workers) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}
