package demo

// Chapter scale: reads and writes per second with 1, 3 and 5 nodes on
// this machine, clients spread over the nodes; what each write costs in
// messages and CPU as nodes are added. In a fully replicated store every
// node serves reads on its own but must apply every write.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/cluster"
	"github.com/peerctl/peerctl/internal/figures"
)

const scaleValueSize = 100

// scalePoint is what one cluster size measured.
type scalePoint struct {
	nodes          int
	writes, reads  float64 // acknowledged per second
	msgsPerWrite   float64 // replication messages sent, all nodes, per write
	copiesPerWrite float64 // entries pushed to peers per write
	cpuPerKWrite   float64 // agents' CPU ms per 1000 writes, all nodes
	cpuPerKRead    float64 // agents' CPU ms per 1000 reads, all nodes
}

func scale(r *run) error {
	sizes, clients, d := []int{1, 3, 5}, 8, 3*time.Second
	if r.o.Quick {
		sizes, clients, d = []int{1, 3}, 4, time.Second
	}
	r.say("demo scale: does adding nodes add capacity?")
	r.say("For each cluster size, %d clients spread over the nodes (client j at node j mod N)", clients)
	r.say("each send their next request as soon as the previous one is answered, for %s of", fmtDur(d))
	r.say("writes, then %s of reads. Every node holds a full copy of the store.", fmtDur(d))
	r.say("This machine has %d CPUs; the nodes and the clients share them.", runtime.NumCPU())

	var pts []scalePoint
	var last *group
	for _, n := range sizes {
		var p scalePoint
		var g *group
		err := r.do(fmt.Sprintf("%d node%s", n, map[bool]string{true: "s", false: ""}[n > 1]), func() error {
			var err error
			g, err = r.newGroup(fmt.Sprintf("n%d", n), n)
			if err != nil {
				return err
			}
			if _, err := g.form(); err != nil {
				return err
			}
			p, err = measureScale(r, g, clients, d)
			if err != nil {
				return err
			}
			r.note("writes: %s, %s messages and %s copies sent per write, %s CPU per 1000",
				figures.Format(p.writes, "/s"), figures.Format(p.msgsPerWrite, "msgs"), figures.Format(p.copiesPerWrite, "msgs"), figures.Format(p.cpuPerKWrite, "ms"))
			r.note("reads:  %s, %s CPU per 1000", figures.Format(p.reads, "/s"), figures.Format(p.cpuPerKRead, "ms"))
			if want := float64(n - 1); p.copiesPerWrite < want {
				return fmt.Errorf("%.2f copies pushed per write; every write must reach the %d other nodes", p.copiesPerWrite, n-1)
			}
			r.note("ok: every node holds every write; each write was copied to the %d other node%s.", n-1, map[bool]string{true: "s", false: ""}[n != 2])
			return nil
		})
		if err != nil {
			return err
		}
		pts = append(pts, p)
		if last != nil {
			last.close()
		}
		last = g
	}
	return r.do("What scales and what does not", func() error {
		rows := [][]string{{"NODES", "WRITES/S", "READS/S", "MSGS/WRITE", "COPIES/WRITE", "CPU/1000 WRITES", "CPU/1000 READS"}}
		for _, p := range pts {
			rows = append(rows, []string{fmt.Sprint(p.nodes), figures.Format(p.writes, "/s"), figures.Format(p.reads, "/s"),
				figures.Format(p.msgsPerWrite, "msgs"), figures.Format(p.copiesPerWrite, "msgs"), figures.Format(p.cpuPerKWrite, "ms"), figures.Format(p.cpuPerKRead, "ms")})
			at := fmt.Sprintf("%d node%s", p.nodes, map[bool]string{true: "s", false: ""}[p.nodes > 1])
			r.figure(at+": writes/s", p.writes, "/s")
			r.figure(at+": reads/s", p.reads, "/s")
			r.figure(at+": messages per write", p.msgsPerWrite, "msgs")
			r.figure(at+": copies per write", p.copiesPerWrite, "msgs")
			r.figure(at+": CPU per 1000 writes, all nodes", p.cpuPerKWrite, "ms")
			r.figure(at+": CPU per 1000 reads, all nodes", p.cpuPerKRead, "ms")
		}
		r.table(rows)
		first, lastP := pts[0], pts[len(pts)-1]
		r.note("Per 1000 writes the nodes together used %s of CPU with 1 node, %s with %d",
			figures.Format(first.cpuPerKWrite, "ms"), figures.Format(lastP.cpuPerKWrite, "ms"), lastP.nodes)
		r.note("(%s): every node applies every write, and each write is copied to the %d others",
			figures.Format(lastP.cpuPerKWrite/first.cpuPerKWrite, "x"), lastP.nodes-1)
		r.note("(%s messages per write: under load one push carries many writes).", figures.Format(lastP.msgsPerWrite, "msgs"))
		r.note("Per 1000 reads: %s, then %s (%s). A read touches only the node asked; what",
			figures.Format(first.cpuPerKRead, "ms"), figures.Format(lastP.cpuPerKRead, "ms"), figures.Format(lastP.cpuPerKRead/first.cpuPerKRead, "x"))
		r.note("grows is the cost of %d processes on %d CPUs (switching between them, each one's", lastP.nodes, runtime.NumCPU())
		r.note("own gossip). The totals per second cannot grow on one machine. On %d machines", lastP.nodes)
		r.note("(not measured here), %d nodes could serve up to %d times the reads of one, but", lastP.nodes, lastP.nodes)
		r.note("each would still apply every write: a fully replicated store scales reads, not")
		r.note("writes. Write capacity takes partitioning the keys, each node holding only some.")
		if r.o.SVG != "" {
			if err := writeScaleSVG(r.o.SVG, pts); err != nil {
				return err
			}
			r.files = append(r.files, r.o.SVG)
			r.note("Plot: %s", r.o.SVG)
		}
		return nil
	})
}

// measureScale runs the write then the read workload on a formed group.
func measureScale(r *run, g *group, clients int, d time.Duration) (scalePoint, error) {
	p := scalePoint{nodes: len(g.nodes)}
	value := make([]byte, scaleValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	written := make([]int, clients) // keys client j wrote: scale/j/0..written[j]-1
	before, err := replTotals(r.ctx, g)
	if err != nil {
		return p, err
	}
	cpu0 := g.cpu()
	n, took, err := closedLoop(r.ctx, clients, d, func(ctx context.Context, j, seq int) error {
		_, err := g.client(j%len(g.nodes)).Put(ctx, "", fmt.Sprintf("scale/%d/%d", j, seq), value)
		if err == nil {
			written[j] = seq + 1
		}
		return err
	})
	if err != nil {
		return p, fmt.Errorf("writes: %w", err)
	}
	cpuW := g.cpu() - cpu0
	if _, err := g.converged(formTimeout); err != nil {
		return p, fmt.Errorf("after the writes: %w", err)
	}
	after, err := replTotals(r.ctx, g)
	if err != nil {
		return p, err
	}
	p.writes = float64(n) / took.Seconds()
	p.msgsPerWrite = float64(after.MsgsSent-before.MsgsSent) / float64(n)
	p.copiesPerWrite = float64(after.EntriesPushed+after.SyncRepaired-before.EntriesPushed-before.SyncRepaired) / float64(n)
	p.cpuPerKWrite = ms(cpuW) * 1000 / float64(n)

	cpu0 = g.cpu()
	n, took, err = closedLoop(r.ctx, clients, d, func(ctx context.Context, j, seq int) error {
		k := (j + seq) % clients
		if written[k] == 0 {
			return fmt.Errorf("client %d wrote nothing", k)
		}
		_, err := g.client(j%len(g.nodes)).Get(ctx, "", fmt.Sprintf("scale/%d/%d", k, rand.IntN(written[k])))
		return err
	})
	if err != nil {
		return p, fmt.Errorf("reads: %w", err)
	}
	p.reads = float64(n) / took.Seconds()
	p.cpuPerKRead = ms(g.cpu()-cpu0) * 1000 / float64(n)
	return p, nil
}

// closedLoop runs clients goroutines, each calling fn with its index and
// a sequence number as soon as its previous call returned, for d; it
// returns the calls that succeeded, the time taken and the first error.
func closedLoop(ctx context.Context, clients int, d time.Duration, fn func(ctx context.Context, j, seq int) error) (int64, time.Duration, error) {
	var done atomic.Int64
	var stop atomic.Bool
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	t0 := time.Now()
	for j := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; !stop.Load() && ctx.Err() == nil; seq++ {
				if err := fn(ctx, j, seq); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
					return
				}
				done.Add(1)
			}
		}()
	}
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	stop.Store(true)
	wg.Wait()
	took := time.Since(t0)
	if err := ctx.Err(); err != nil {
		return 0, took, err
	}
	return done.Load(), took, first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// replTotals sums the replication counters of every node.
func replTotals(ctx context.Context, g *group) (api.ReplicationStats, error) {
	var t api.ReplicationStats
	for i, n := range g.nodes {
		info, err := g.client(i).Info(ctx, "")
		if err != nil {
			return t, fmt.Errorf("info at %s: %w", n.Name, err)
		}
		rs := info.Replication
		t.MsgsSent += rs.MsgsSent
		t.EntriesPushed += rs.EntriesPushed
		t.SyncRepaired += rs.SyncRepaired
	}
	return t, nil
}

// cpu returns the CPU time the group's current processes have used.
func (g *group) cpu() time.Duration {
	var t time.Duration
	for i := range g.nodes {
		if ch := g.proc(i); ch != nil {
			if d, err := cluster.ProcCPU(ch.PID()); err == nil {
				t += d
			}
		}
	}
	return t
}

func writeScaleSVG(path string, pts []scalePoint) error {
	c := figures.LineChart{
		Title:  fmt.Sprintf("peerctl demo scale: acknowledged requests per second, %d CPUs shared by nodes and clients", runtime.NumCPU()),
		XLabel: "nodes", YLabel: "requests per second", YUnit: "/s",
		Series: []figures.Series{{Name: "reads/s"}, {Name: "writes/s"}},
	}
	for _, p := range pts {
		c.X = append(c.X, float64(p.nodes))
		c.Series[0].Y = append(c.Series[0].Y, p.reads)
		c.Series[1].Y = append(c.Series[1].Y, p.writes)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	err = c.WriteSVG(f)
	return errors.Join(err, f.Close())
}
