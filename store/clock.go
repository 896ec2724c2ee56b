package store

import (
	"fmt"
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock reading (Kulkarni et al. 2014): the
// upper 48 bits hold wall-clock milliseconds since the Unix epoch, the lower
// 16 bits a logical counter that orders events within one millisecond or
// while the wall clock lags a timestamp already witnessed. Timestamps compare
// as plain integers, so last-writer-wins means what a person expects while
// clocks roughly agree, and stays a total order when they do not.
type Timestamp uint64

const logicalBits = 16
const logicalMask = 1<<logicalBits - 1

// MakeTimestamp builds a Timestamp from wall milliseconds and a logical count.
func MakeTimestamp(wallMillis int64, logical uint16) Timestamp {
	return Timestamp(uint64(wallMillis)<<logicalBits | uint64(logical))
}

// WallMillis returns the wall-clock part in milliseconds since the epoch.
func (t Timestamp) WallMillis() int64 { return int64(uint64(t) >> logicalBits) }

// Logical returns the logical counter.
func (t Timestamp) Logical() uint16 { return uint16(uint64(t) & logicalMask) }

// Time returns the wall-clock part as a time.Time.
func (t Timestamp) Time() time.Time { return time.UnixMilli(t.WallMillis()) }

func (t Timestamp) String() string {
	return fmt.Sprintf("%s+%d", t.Time().UTC().Format("2006-01-02T15:04:05.000Z"), t.Logical())
}

// Clock is a hybrid logical clock. Now returns strictly increasing
// timestamps, never below any timestamp passed to Witness. It reads time
// only through the injected Now function. It is safe for concurrent use.
type Clock struct {
	now func() time.Time

	mu   sync.Mutex // guards last
	last Timestamp
}

// NewClock returns a Clock that reads wall time from now.
func NewClock(now func() time.Time) *Clock {
	return &Clock{now: now}
}

// Now returns a new timestamp, greater than every timestamp this clock has
// returned or witnessed. It never returns a timestamp above MaxTimestamp:
// once the clock has reached it (it witnessed MaxTimestamp, or the wall
// clock reads past the year 6429) it returns an error wrapping
// ErrClockExhausted and issues nothing, so no write gets an invalid version.
func (c *Clock) Now() (Timestamp, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ms := c.now().UnixMilli()
	if ms < 0 {
		ms = 0 // a clock before 1970 would wrap to the far future
	}
	if ms > MaxTimestamp.WallMillis() {
		return 0, fmt.Errorf("%w: the wall clock reads %d ms since 1970, past the greatest timestamp", ErrClockExhausted, ms)
	}
	wall := MakeTimestamp(ms, 0)
	if wall > c.last {
		c.last = wall
		return c.last, nil
	}
	// The wall clock has not moved past what we issued or saw: count.
	// Overflowing the logical part carries into the millisecond, which
	// keeps the order total at the cost of running slightly ahead.
	if c.last >= MaxTimestamp {
		return 0, fmt.Errorf("%w: last issued or witnessed %v", ErrClockExhausted, c.last)
	}
	c.last++
	return c.last, nil
}

// Witness advances the clock past a timestamp seen from another node, so
// that a later local write is ordered after every write it could have seen.
func (c *Clock) Witness(t Timestamp) {
	c.mu.Lock()
	if t > c.last {
		c.last = t
	}
	c.mu.Unlock()
}

// Last returns the greatest timestamp issued or witnessed.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}
