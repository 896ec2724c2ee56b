package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/peerctl/peerctl/daemon"
	"github.com/peerctl/peerctl/store"
)

// The history: every operation a client attempted, with what it learned.
// A write is acknowledged (ok) only when the daemon answered with the
// version it stored. It failed when the request provably did not take
// effect (the connection was refused, or the daemon answered an error),
// and its outcome is unknown otherwise (a timeout, a reset, a daemon killed
// mid-request): it may or may not have been stored, so the checker neither
// requires nor forbids it.

// opKind is what an operation did.
type opKind string

const (
	opPut opKind = "put"
	opDel opKind = "del"
)

// outcome is what the client learned.
type outcome int

const (
	outOK      outcome = iota // acknowledged with a version
	outFail                   // did not take effect
	outUnknown                // may or may not have taken effect
)

func (o outcome) String() string {
	switch o {
	case outOK:
		return "ok"
	case outFail:
		return "fail"
	}
	return "unknown"
}

// op is one attempted operation.
type op struct {
	Client  int
	Node    string // the daemon it was sent to
	Kind    opKind
	Key     string
	Value   string        // unique per put; "" for a delete
	Invoke  time.Duration // since the cluster started
	Done    time.Duration
	Outcome outcome
	Version store.Version // the acknowledged version (ok only)
	Err     string
}

func (o op) String() string {
	s := fmt.Sprintf("c%d %s %s", o.Client, o.Kind, o.Key)
	if o.Kind == opPut {
		s += "=" + o.Value
	}
	s += fmt.Sprintf(" at %s [+%s..+%s] %s", o.Node, o.Invoke.Round(time.Millisecond), o.Done.Round(time.Millisecond), o.Outcome)
	if o.Outcome == outOK {
		s += " version " + o.Version.String()
	}
	if o.Err != "" {
		s += ": " + o.Err
	}
	return s
}

// workload describes the clients.
type workload struct {
	Clients  int           // goroutines
	Rate     float64       // operations per second, all clients together
	Keys     []string      // the keyspace, small so that writes conflict
	DelProb  float64       // share of deletes
	Timeout  time.Duration // per request
	Deadline time.Duration // stop after this long
}

// keyspace returns n keys k00, k01, ...
func keyspace(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	return keys
}

// runClients runs the workload against the agents until ctx is done or the
// workload's deadline passes, and returns every operation in invocation
// order per client, clients one after another. Client i draws its choices
// from a generator seeded with seed and i.
func runClients(ctx context.Context, c *cluster, w workload, seed uint64) []op {
	ctx, cancel := context.WithTimeout(ctx, w.Deadline)
	defer cancel()
	// One transport for all clients, with enough idle connections that
	// every client keeps one per daemon.
	hc := &http.Client{
		Timeout:   w.Timeout,
		Transport: bearer(c.token, &http.Transport{MaxIdleConnsPerHost: w.Clients, DisableCompression: true}),
	}
	defer hc.CloseIdleConnections()
	clients := make([]*daemon.Client, len(c.agents))
	for i, a := range c.agents {
		clients[i] = daemon.NewClientWith(a.api, hc)
	}
	hist := make([][]op, w.Clients)
	var wg sync.WaitGroup
	for ci := range w.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(ci)+1))
			interval := time.Duration(float64(w.Clients) / w.Rate * float64(time.Second))
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C: // the workload's pace; a slow call skips ticks
				}
				ni := rng.IntN(len(c.agents))
				o := op{Client: ci, Node: c.agents[ni].name, Key: w.Keys[rng.IntN(len(w.Keys))], Kind: opPut}
				if rng.Float64() < w.DelProb {
					o.Kind = opDel
				} else {
					o.Value = fmt.Sprintf("c%d-op%d", ci, n)
				}
				hist[ci] = append(hist[ci], invoke(c, clients[ni], o, w.Timeout))
			}
		}()
	}
	wg.Wait()
	var out []op
	for _, h := range hist {
		out = append(out, h...)
	}
	return out
}

// invoke performs one operation and records its outcome. It uses a
// context of its own, so that the end of the workload does not turn an
// operation in flight into an unknown one.
func invoke(c *cluster, cl *daemon.Client, o op, timeout time.Duration) op {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	o.Invoke = c.since()
	var res *daemon.WriteResult
	var err error
	if o.Kind == opPut {
		res, err = cl.Put(ctx, "", o.Key, []byte(o.Value))
	} else {
		res, err = cl.Delete(ctx, "", o.Key)
	}
	o.Done = c.since()
	o.Outcome = classify(err)
	if err != nil {
		o.Err = err.Error()
		return o
	}
	o.Version = store.Version{TS: store.Timestamp(res.TS), Node: res.Origin}
	if res.Key != o.Key || o.Version.TS == 0 || o.Version.Node != o.Node {
		// An acknowledgement must name the key and the node written.
		o.Err = fmt.Sprintf("odd acknowledgement %+v", *res)
	}
	return o
}

// classify turns a client error into an outcome.
func classify(err error) outcome {
	if err == nil {
		return outOK
	}
	var se *daemon.StatusError
	if errors.As(err, &se) {
		return outFail // the daemon answered that it did not write
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Op == "dial" {
		return outFail // never reached a daemon
	}
	return outUnknown
}
