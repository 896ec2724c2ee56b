package store

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// gateBackend blocks every Put until the test releases it, and records
// the size of each Put.
type gateBackend struct {
	*MemBackend
	entered chan int
	release chan error
	panicOn bool
}

func (g *gateBackend) Put(es []Entry) error {
	g.entered <- len(es)
	if err := <-g.release; err != nil {
		if g.panicOn {
			panic(err)
		}
		return err
	}
	return g.MemBackend.Put(es)
}

func newGate() *gateBackend {
	return &gateBackend{MemBackend: NewMemBackend(), entered: make(chan int), release: make(chan error)}
}

// waitQueue waits, bounded, until n writes are queued.
func waitQueue(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.qmu.Lock()
		got := len(s.queue)
		s.qmu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d writes; want %d", got, n)
		}
		runtime.Gosched()
	}
}

type result struct {
	i    int
	e    Entry
	live bool
	err  error
}

// TestGroupCommit queues writes behind a blocked commit and checks that
// they commit together, in queue order, each with its own version and the
// right "was live" answer even for repeated keys.
func TestGroupCommit(t *testing.T) {
	g := newGate()
	ft := newFakeTime()
	s, err := Open(g, Config{Node: "n1", Now: ft.Now})
	if err != nil {
		t.Fatal(err)
	}
	ops := []struct {
		key      string
		del      bool
		wantLive bool
	}{
		{"first", false, false}, // commits alone and blocks
		{"a", false, false},
		{"a", true, true},  // deletes the put just before it in the group
		{"a", true, false}, // already deleted within the group
		{"b", true, false},
		{"a", false, false},
		{"first", true, true}, // live from the first commit
	}
	results := make(chan result, len(ops))
	for i, op := range ops {
		go func() {
			var r result
			r.i = i
			if op.del {
				r.e, r.live, r.err = s.Delete(op.key)
			} else {
				r.e, r.err = s.Put(op.key, []byte(fmt.Sprint(i)))
			}
			results <- r
		}()
		if i == 0 {
			if n := <-g.entered; n != 1 {
				t.Fatalf("first commit has %d entries; want 1", n)
			}
		} else {
			waitQueue(t, s, i+1)
		}
	}
	g.release <- nil
	if n := <-g.entered; n != len(ops)-1 {
		t.Fatalf("second commit has %d entries; want %d", n, len(ops)-1)
	}
	g.release <- nil
	got := make([]result, len(ops))
	for range ops {
		r := <-results
		got[r.i] = r
	}
	for i, r := range got {
		if r.err != nil {
			t.Fatalf("write %d: %v", i, r.err)
		}
		if i > 0 && r.e.Version.TS <= got[i-1].e.Version.TS {
			t.Fatalf("write %d has version %v, not after write %d's %v", i, r.e.Version, i-1, got[i-1].e.Version)
		}
		if ops[i].del && r.live != ops[i].wantLive {
			t.Errorf("Delete %d (%q) reported live=%v; want %v", i, ops[i].key, r.live, ops[i].wantLive)
		}
	}
	if e, err := s.Get("a"); err != nil || string(e.Value) != "5" {
		t.Fatalf("Get(a) = %+v, %v; want the last write, 5", e, err)
	}
	if st := s.Stats(); st.Keys != 1 || st.Tombstones != 2 {
		t.Fatalf("Stats = %+v; want a live; b, first deleted", st)
	}
}

// A failed or panicking commit fails every write in its group, and the
// queue moves on.
func TestGroupCommitFailure(t *testing.T) {
	for _, panicking := range []bool{false, true} {
		g := newGate()
		g.panicOn = panicking
		s, _ := Open(g, Config{Node: "n1", Now: newFakeTime().Now})
		errc := make(chan error, 3)
		put := func(k string) {
			defer func() {
				if p := recover(); p != nil {
					errc <- fmt.Errorf("panic: %v", p)
				}
			}()
			_, err := s.Put(k, nil)
			errc <- err
		}
		go put("lead")
		<-g.entered
		go put("x")
		waitQueue(t, s, 2)
		go put("y")
		waitQueue(t, s, 3)
		boom := errors.New("disk on fire")
		g.release <- nil // "lead" commits
		<-g.entered      // x and y together
		g.release <- boom
		var errs []error
		for i := 0; i < 3; i++ {
			errs = append(errs, <-errc)
		}
		nfail := 0
		for _, err := range errs {
			if err != nil {
				nfail++
			}
		}
		if nfail != 2 {
			t.Fatalf("panicking=%v: errors %v; want x and y to fail", panicking, errs)
		}
		// The queue is free again.
		done := make(chan error)
		go func() { _, err := s.Put("after", nil); done <- err }()
		<-g.entered
		g.release <- nil
		if err := <-done; err != nil {
			t.Fatalf("Put after a failed group: %v", err)
		}
	}
}

func TestConcurrentWrites(t *testing.T) {
	s := openMem(t, "n1", newFakeTime().Now, 0)
	const goroutines, each = 16, 200
	var wg sync.WaitGroup
	versions := make(chan Timestamp, goroutines*each)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				k := fmt.Sprintf("k%d", (g*each+i)%50)
				var e Entry
				var err error
				if i%5 == 0 {
					e, _, err = s.Delete(k)
				} else {
					e, err = s.Put(k, []byte(k))
				}
				if err != nil {
					t.Error(err)
					return
				}
				versions <- e.Version.TS
			}
		}()
	}
	wg.Wait()
	close(versions)
	seen := map[Timestamp]bool{}
	for ts := range versions {
		if seen[ts] {
			t.Fatalf("two writes got timestamp %v", ts)
		}
		seen[ts] = true
	}
	// The index and the backend agree.
	want := s.Digest()
	s2, _ := Open(s.b, Config{Node: "n1"})
	if s2.Digest() != want {
		t.Fatal("index differs from what the backend holds")
	}
}
