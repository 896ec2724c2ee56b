package demo

// A client as an application would run one against the cluster: it knows
// every node's address, sends each operation to the next node in turn,
// and when a node does not answer tries the next one (routing around the
// failure) until one does or all have failed.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

// router sends operations to a list of nodes in turn, failing over to the
// next. It is not safe for concurrent use.
type router struct {
	cs   []*api.Client
	next int
}

// do calls fn with node after node, starting at the next in turn, until
// one returns nil or every node has failed; it returns the number of
// nodes tried and the last error. fn's own verdict decides: a "key not
// found" from a node that answered is an answer, not a failure.
func (rt *router) do(ctx context.Context, fn func(c *api.Client) error) (tries int, err error) {
	first := rt.next
	rt.next = (rt.next + 1) % len(rt.cs)
	for k := range rt.cs {
		if ctx.Err() != nil {
			return tries, ctx.Err()
		}
		tries++
		if err = fn(rt.cs[(first+k)%len(rt.cs)]); err == nil {
			return tries, nil
		}
	}
	return tries, err
}

// op is one operation of the load: a write and a read, each through the
// router.
type op struct {
	start time.Time
	took  time.Duration
	ok    bool // both were answered
	tries int  // nodes tried, both together; 2 when neither was rerouted
	err   string
}

// load runs operations in a paced loop (one every interval, or as soon as
// the previous one ends if it took longer) until stopped.
type load struct {
	stop chan struct{}
	done chan struct{}

	mu  sync.Mutex
	ops []op // guarded by mu
}

// startLoad starts the loop over the nodes' clients, writing keys
// prefix/SEQ and reading back the key written just before.
func startLoad(ctx context.Context, cs []*api.Client, interval time.Duration, prefix string) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	rt := &router{cs: cs}
	go func() {
		defer close(l.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for seq := 0; ; seq++ {
			o := op{start: time.Now()}
			key := fmt.Sprintf("%s/%d", prefix, seq)
			n, err := rt.do(ctx, func(c *api.Client) error {
				_, err := c.Put(ctx, "", key, []byte(key))
				return err
			})
			o.tries = n
			if err == nil {
				prev := fmt.Sprintf("%s/%d", prefix, max(seq-1, 0))
				n, err = rt.do(ctx, func(c *api.Client) error {
					_, err := c.Get(ctx, "", prev)
					if errors.Is(err, api.ErrKeyNotFound) {
						return nil // answered: not there yet
					}
					return err
				})
				o.tries += n
			}
			o.took, o.ok = time.Since(o.start), err == nil
			if err != nil {
				o.err = err.Error()
			}
			l.mu.Lock()
			l.ops = append(l.ops, o)
			l.mu.Unlock()
			select {
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return l
}

// finish stops the loop and returns every operation it ran.
func (l *load) finish() []op {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ops
}

// since returns the operations that started at or after t.
func (l *load) since(t time.Time) []op {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []op
	for _, o := range l.ops {
		if !o.start.Before(t) {
			out = append(out, o)
		}
	}
	return out
}

// opStats summarises operations.
type opStats struct {
	n, failed, rerouted int
	slowest             time.Duration // of the answered operations
	// outage is the longest time the client went unanswered: from the
	// start of the first failed operation of a run of failures to the end
	// of the next answered one (or of the last operation).
	outage   time.Duration
	firstErr string
}

func statsOf(ops []op) opStats {
	var s opStats
	var since time.Time // start of the current run of failures
	for _, o := range ops {
		s.n++
		if !o.ok {
			s.failed++
			if s.firstErr == "" {
				s.firstErr = o.err
			}
			if since.IsZero() {
				since = o.start
			}
			continue
		}
		if o.tries > 2 {
			s.rerouted++
		}
		s.slowest = max(s.slowest, o.took)
		if !since.IsZero() {
			s.outage = max(s.outage, o.start.Add(o.took).Sub(since))
			since = time.Time{}
		}
	}
	if !since.IsZero() && len(ops) > 0 {
		last := ops[len(ops)-1]
		s.outage = max(s.outage, last.start.Add(last.took).Sub(since))
	}
	return s
}

// availability is the share of operations answered, in percent.
func (s opStats) availability() float64 {
	if s.n == 0 {
		return 0
	}
	return 100 * float64(s.n-s.failed) / float64(s.n)
}
