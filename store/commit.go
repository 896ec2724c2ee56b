package store

import (
	"errors"
	"fmt"
)

// Group commit. Local writes (Put, Delete) queue up; the goroutine at the
// front of the queue commits every write queued at that moment (up to
// maxGroup) in one Backend.Put, under s.mu, then wakes their goroutines
// and hands the front to the next waiter. A backend commit costs about the
// same for one entry as for a hundred (one fsync with SyncWrites), so
// concurrent writers share it instead of taking turns. Each write still
// gets its own timestamp, in queue order, and returns only once it is
// stored. No goroutine is started: the callers do the work (LevelDB's
// writer queue has the same shape).

// maxGroup bounds one group commit, and so the wait of its last writer.
const maxGroup = 512

// writeReq is one queued local write. Its goroutine waits on wake, which
// the committing goroutine closes either after committing it (done set) or
// to make it the next to commit (done unset).
type writeReq struct {
	e    Entry
	live bool // a live value was there before
	err  error
	done bool
	wake chan struct{}
}

// write stamps e with a new version and stores it. It reports whether the
// key held a live value just before this write.
func (s *Store) write(e Entry) (Entry, bool, error) {
	req := &writeReq{e: e, wake: make(chan struct{})}
	s.qmu.Lock()
	s.queue = append(s.queue, req)
	lead := len(s.queue) == 1
	s.qmu.Unlock()
	if !lead {
		<-req.wake
		if req.done {
			return req.e, req.live, req.err
		}
		// Promoted: req is now at the front of the queue.
	}

	s.qmu.Lock()
	group := make([]*writeReq, min(len(s.queue), maxGroup))
	copy(group, s.queue)
	s.qmu.Unlock()

	committed := false
	defer func() {
		// Runs even if the backend panics (net/http recovers handler
		// panics), so that the queue never stalls.
		if !committed {
			for _, r := range group {
				r.e, r.live, r.err = Entry{}, false, errAborted
			}
		}
		s.release(group)
	}()
	s.commit(group)
	committed = true
	return req.e, req.live, req.err
}

var errAborted = errors.New("store: write aborted by a panic in the backend")

// release removes a committed group from the front of the queue, wakes
// its writers and promotes the next waiter to commit.
func (s *Store) release(group []*writeReq) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	rest := copy(s.queue, s.queue[len(group):])
	clear(s.queue[rest:])
	s.queue = s.queue[:rest]
	for _, r := range group[1:] {
		r.done = true
		close(r.wake)
	}
	if len(s.queue) > 0 {
		close(s.queue[0].wake)
	}
}

// commit stamps and stores a group of local writes in one backend Put and
// records each one's outcome. Writes to the same key within the group
// apply in queue order.
func (s *Store) commit(group []*writeReq) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(err error) {
		for _, r := range group {
			r.e, r.live, r.err = Entry{}, false, err
		}
	}
	if s.closed {
		fail(ErrClosed)
		return
	}
	es := make([]Entry, 0, len(group))
	var inGroup map[string]bool // key -> live after an earlier write in the group
	if len(group) > 1 {
		inGroup = make(map[string]bool, len(group))
	}
	var stamped []*writeReq // the writes in es, in order
	for _, r := range group {
		ts, err := s.clock.Now()
		if err != nil {
			r.e, r.err = Entry{}, fmt.Errorf("store: write %q: %w", r.e.Key, err)
			continue
		}
		r.e.Version = Version{TS: ts, Node: s.node}
		// Every version this store writes is checked, its own included:
		// an invalid one would be unreadable on every node.
		if err := r.e.Validate(); err != nil {
			r.e, r.err = Entry{}, fmt.Errorf("store: write %q: %w", r.e.Key, err)
			continue
		}
		if live, ok := inGroup[r.e.Key]; ok {
			r.live = live
		} else if cur, ok := s.idx.get(r.e.Key); ok {
			r.live = !cur.Deleted
		}
		if inGroup != nil {
			inGroup[r.e.Key] = !r.e.Deleted
		}
		es = append(es, r.e)
		stamped = append(stamped, r)
	}
	if len(es) == 0 {
		return
	}
	if err := s.b.Put(es); err != nil {
		for _, r := range stamped {
			r.live = false
			if len(es) == 1 {
				r.e, r.err = Entry{}, fmt.Errorf("store: write %q: %w", es[0].Key, err)
			} else {
				r.e, r.err = Entry{}, fmt.Errorf("store: write %d entries: %w", len(es), err)
			}
		}
		return
	}
	for _, e := range es {
		s.idx.set(s.intern(e.Summary()))
	}
}
