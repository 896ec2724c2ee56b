package bench

// Membership events for the benchmarks, from each node's event stream
// (GET /v1/events?kinds=member), not from the daemons' log text. From the
// daemon's member events (a member's status as the reporting node sees it,
// with who detected a suspicion):
//
//	suspect: the reporting node's own probe of the member failed (a
//	         suspect event whose detected_by is the reporter): a
//	         first-hand suspicion, as memberlist's "Suspect X has failed,
//	         no acks received" line was;
//	failed:  the reporting node declared the member failed;
//	refute:  a member the reporting node suspected first-hand is alive
//	         again: the suspect refuted the suspicion.
//
// Suspicions a node only heard of (detected_by another node) are kept as
// "suspect-heard" and not counted as suspicions. Each event's time is the
// daemon's (same machine, same clock), so it is not delayed by the
// harness reading it.

import (
	"context"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

// benchMemberEvent is a membership event from a node's event stream.
type benchMemberEvent struct {
	At       time.Time // the event's time (the reporting daemon's clock)
	Observer string    // the node that reported it
	Subject  string    // the node it is about
	Kind     string    // suspect, suspect-heard, failed, refute (top of file)
	Received time.Time // when the harness read it
}

// watchMembers follows every node's member events until close, each
// stream reconnecting every 50 ms while its node is down or starting.
func (cl *benchCluster) watchMembers() {
	ctx, cancel := context.WithCancel(context.Background())
	cl.stopWatch = cancel
	for i := range cl.nodes {
		cl.watchWG.Add(1)
		go func() {
			defer cl.watchWG.Done()
			suspected := map[string]bool{} // subjects this node suspected first-hand
			for ctx.Err() == nil {
				st, err := cl.cs[i].Events(ctx, "", []string{api.EventMember}, false)
				if err == nil {
					for ev := range st.C {
						cl.noteMember(&ev, suspected)
					}
					st.Close()
				}
				select {
				case <-time.After(50 * time.Millisecond):
				case <-ctx.Done():
				}
			}
		}()
	}
}

// noteMember records ev if it is one of the kinds at the top of the file.
// suspected is the reporting node's own state, used by one goroutine.
func (cl *benchCluster) noteMember(ev *api.Event, suspected map[string]bool) {
	if ev.Kind != api.EventMember {
		return
	}
	kind := ""
	switch ev.Status {
	case "suspect":
		kind = "suspect-heard"
		if ev.DetectedBy == ev.Node {
			kind = "suspect"
			suspected[ev.Member] = true
		}
	case "failed":
		kind = "failed"
		delete(suspected, ev.Member)
	case "alive":
		if suspected[ev.Member] {
			kind = "refute"
		}
		delete(suspected, ev.Member)
	default:
		delete(suspected, ev.Member)
	}
	if kind == "" {
		return
	}
	me := benchMemberEvent{At: ev.When(), Observer: ev.Node, Subject: ev.Member, Kind: kind, Received: time.Now()}
	cl.mu.Lock()
	cl.events = append(cl.events, me)
	cl.mu.Unlock()
}
