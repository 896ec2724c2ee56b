package store

import (
	"sync"
	"testing"
	"time"
)

func TestClockStuckWallIsMonotonic(t *testing.T) {
	ft := newFakeTime()
	c := NewClock(ft.Now)
	prev := c.Now()
	if prev.WallMillis() != ft.Now().UnixMilli() || prev.Logical() != 0 {
		t.Fatalf("first Now() = %v; want the wall time with logical 0", prev)
	}
	for i := 0; i < 1000; i++ {
		ts := c.Now()
		if ts <= prev {
			t.Fatalf("Now() = %v after %v with a stuck wall clock; want strictly greater", ts, prev)
		}
		prev = ts
	}
	if prev.WallMillis() != ft.Now().UnixMilli() || prev.Logical() != 1000 {
		t.Fatalf("after 1001 calls in one millisecond, Now() = %v; want logical 1000", prev)
	}
}

func TestClockBackwardsWallIsMonotonic(t *testing.T) {
	ft := newFakeTime()
	c := NewClock(ft.Now)
	before := c.Now()
	ft.Add(-time.Hour)
	after := c.Now()
	if after <= before {
		t.Fatalf("Now() = %v after the wall clock went back from %v; want greater", after, before)
	}
	if after.WallMillis() != before.WallMillis() {
		t.Fatalf("Now() = %v; want the old millisecond with the logical counter advanced", after)
	}
	// Once the wall clock passes the last timestamp, it takes over again.
	ft.Add(2 * time.Hour)
	if ts := c.Now(); ts != MakeTimestamp(ft.Now().UnixMilli(), 0) {
		t.Fatalf("Now() = %v once the wall clock caught up; want %v", ts, MakeTimestamp(ft.Now().UnixMilli(), 0))
	}
}

func TestClockWitness(t *testing.T) {
	ft := newFakeTime()
	c := NewClock(ft.Now)
	remote := MakeTimestamp(ft.Now().Add(time.Minute).UnixMilli(), 7)
	c.Witness(remote)
	if ts := c.Now(); ts <= remote {
		t.Fatalf("Now() = %v after Witness(%v); want greater", ts, remote)
	}
	last := c.Last()
	c.Witness(1) // an old timestamp changes nothing
	if c.Last() != last {
		t.Fatalf("Witness of an old timestamp moved Last from %v to %v", last, c.Last())
	}
}

func TestClockLogicalOverflowCarries(t *testing.T) {
	ft := newFakeTime()
	c := NewClock(ft.Now)
	ms := ft.Now().UnixMilli()
	c.Witness(MakeTimestamp(ms, 0xffff))
	ts := c.Now()
	if want := MakeTimestamp(ms+1, 0); ts != want {
		t.Fatalf("Now() after logical 0xffff = %v; want %v (carry into the millisecond)", ts, want)
	}
	if next := c.Now(); next != MakeTimestamp(ms+1, 1) {
		t.Fatalf("Now() = %v; want %v", next, MakeTimestamp(ms+1, 1))
	}
}

func TestClockBeforeEpoch(t *testing.T) {
	c := NewClock(func() time.Time { return time.Unix(-100, 0) })
	a, b := c.Now(), c.Now()
	if a == 0 || b <= a || a > MakeTimestamp(1, 0) {
		t.Fatalf("Now() before 1970 = %v, %v; want small, non-zero and increasing", a, b)
	}
}

func TestClockConcurrentUnique(t *testing.T) {
	ft := newFakeTime()
	c := NewClock(ft.Now)
	const goroutines, each = 8, 500
	out := make(chan Timestamp, goroutines*each)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				out <- c.Now()
			}
		}()
	}
	wg.Wait()
	close(out)
	seen := map[Timestamp]bool{}
	for ts := range out {
		if seen[ts] {
			t.Fatalf("Now() returned %v twice", ts)
		}
		seen[ts] = true
	}
}

func TestTimestampParts(t *testing.T) {
	ts := MakeTimestamp(1700000000123, 42)
	if ts.WallMillis() != 1700000000123 || ts.Logical() != 42 {
		t.Fatalf("MakeTimestamp parts = %d, %d; want 1700000000123, 42", ts.WallMillis(), ts.Logical())
	}
	if got, want := ts.String(), "2023-11-14T22:13:20.123Z+42"; got != want {
		t.Fatalf("String() = %q; want %q", got, want)
	}
}
