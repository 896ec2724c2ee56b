package store

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestClockStuckWallIsMonotonic(t *testing.T) {
	ft := newFakeTime()
	c := NewClock(ft.Now)
	prev := mustNow(t, c)
	if prev.WallMillis() != ft.Now().UnixMilli() || prev.Logical() != 0 {
		t.Fatalf("first Now() = %v; want the wall time with logical 0", prev)
	}
	for i := 0; i < 1000; i++ {
		ts := mustNow(t, c)
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
	before := mustNow(t, c)
	ft.Add(-time.Hour)
	after := mustNow(t, c)
	if after <= before {
		t.Fatalf("Now() = %v after the wall clock went back from %v; want greater", after, before)
	}
	if after.WallMillis() != before.WallMillis() {
		t.Fatalf("Now() = %v; want the old millisecond with the logical counter advanced", after)
	}
	// Once the wall clock passes the last timestamp, it takes over again.
	ft.Add(2 * time.Hour)
	if ts := mustNow(t, c); ts != MakeTimestamp(ft.Now().UnixMilli(), 0) {
		t.Fatalf("Now() = %v once the wall clock caught up; want %v", ts, MakeTimestamp(ft.Now().UnixMilli(), 0))
	}
}

func TestClockWitness(t *testing.T) {
	ft := newFakeTime()
	c := NewClock(ft.Now)
	remote := MakeTimestamp(ft.Now().Add(time.Minute).UnixMilli(), 7)
	c.Witness(remote)
	if ts := mustNow(t, c); ts <= remote {
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
	ts := mustNow(t, c)
	if want := MakeTimestamp(ms+1, 0); ts != want {
		t.Fatalf("Now() after logical 0xffff = %v; want %v (carry into the millisecond)", ts, want)
	}
	if next := mustNow(t, c); next != MakeTimestamp(ms+1, 1) {
		t.Fatalf("Now() = %v; want %v", next, MakeTimestamp(ms+1, 1))
	}
}

func TestClockBeforeEpoch(t *testing.T) {
	c := NewClock(func() time.Time { return time.Unix(-100, 0) })
	a, b := mustNow(t, c), mustNow(t, c)
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
				ts, err := c.Now()
				if err != nil {
					t.Error(err)
					return
				}
				out <- ts
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

// mustNow returns c.Now() and fails the test on an error.
func mustNow(tb testing.TB, c *Clock) Timestamp {
	tb.Helper()
	ts, err := c.Now()
	if err != nil {
		tb.Fatalf("Now() = %v", err)
	}
	return ts
}

// The clock never issues a timestamp above MaxTimestamp: at the limit it
// fails, and keeps failing, instead of stepping past it (issue 7: a
// witnessed 2^63-1 made every later version invalid).
func TestClockStopsAtMaxTimestamp(t *testing.T) {
	ft := newFakeTime()
	c := NewClock(ft.Now)
	c.Witness(MaxTimestamp - 1)
	if ts := mustNow(t, c); ts != MaxTimestamp {
		t.Fatalf("Now() after Witness(MaxTimestamp-1) = %v; want MaxTimestamp", ts)
	}
	for i := 0; i < 3; i++ {
		ts, err := c.Now()
		if !errors.Is(err, ErrClockExhausted) {
			t.Fatalf("Now() at MaxTimestamp = %v, %v; want ErrClockExhausted", ts, err)
		}
	}
	if c.Last() != MaxTimestamp {
		t.Fatalf("Last() = %v; want MaxTimestamp", c.Last())
	}
}

func TestClockWallPastMaxTimestamp(t *testing.T) {
	c := NewClock(func() time.Time { return time.UnixMilli(MaxTimestamp.WallMillis() + 1) })
	if ts, err := c.Now(); !errors.Is(err, ErrClockExhausted) {
		t.Fatalf("Now() with a wall clock past year 6429 = %v, %v; want ErrClockExhausted", ts, err)
	}
}
