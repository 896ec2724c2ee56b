package daemon

import (
	"fmt"
	"os"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestEventsHotPathCost measures the process's CPU time per Agent.Put (an
// in-memory store, no peers) with no subscriber and with 10 subscribers of
// every kind draining in-process, in alternating rounds; CPU time, not
// wall time, so that a loaded machine's stalls count less. It is a
// measurement, not a check: PEERCTL_EVENTS_COST=1 runs it.
//
//	PEERCTL_EVENTS_COST=1 go test -run TestEventsHotPathCost -v ./daemon
func TestEventsHotPathCost(t *testing.T) {
	if os.Getenv("PEERCTL_EVENTS_COST") == "" {
		t.Skip("a measurement: set PEERCTL_EVENTS_COST=1 to run it")
	}
	cfg := testConfig(t, "n1", "")
	cfg.InMemory = true
	nd := startNode(t, cfg)
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	const rounds, puts, writers = 10, 20000, 8
	value := []byte("0123456789")
	seq := 0
	phase := func() time.Duration {
		c0 := cpu()
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func(base int) {
				defer wg.Done()
				for i := range puts / writers {
					if _, err := nd.Put(fmt.Sprintf("k%d/%d", base, i), value); err != nil {
						t.Error(err)
						return
					}
				}
			}(seq*writers + w)
		}
		wg.Wait()
		seq++
		return (cpu() - c0) / puts
	}
	subscribe := func() func() {
		var wg sync.WaitGroup
		var subs []*eventSub
		stop := make(chan struct{})
		for range 10 {
			s, err := nd.events.subscribe(allKinds)
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, s)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-s.ch:
					case <-s.over:
						return
					case <-stop:
						return
					}
				}
			}()
		}
		return func() {
			close(stop)
			wg.Wait()
			for _, s := range subs {
				nd.events.unsubscribe(s)
			}
		}
	}
	phase() // warm up
	var off, on, ratios []float64
	for r := range rounds {
		for _, with := range []bool{r%2 == 0, r%2 == 1} {
			var done func()
			if with {
				done = subscribe()
			}
			d := float64(phase()) / 1000
			if with {
				done()
				on = append(on, d)
			} else {
				off = append(off, d)
			}
		}
		ratios = append(ratios, on[r]/off[r])
	}
	sort.Float64s(off)
	sort.Float64s(on)
	sort.Float64s(ratios)
	t.Logf("CPU per put, median of %d rounds: %.1f µs without subscribers, %.1f µs with 10; median round ratio %.3f (range %.3f–%.3f)",
		rounds, off[rounds/2], on[rounds/2], ratios[rounds/2], ratios[0], ratios[rounds-1])
}
