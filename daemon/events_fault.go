package daemon

// Fault events: a record entering (installed) or leaving (lifted: healed,
// expired or purged) this node's copy of the cluster's fault table
// (faultstate.go), whether or not this node is a party. The fault code
// calls faultTable whenever the table may have changed (applyFaultsLocked)
// and at each expiry check (expireFaults, every 1-2 s).

import (
	"sync"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

// faultWatch remembers which records were live at the last look.
type faultWatch struct {
	mu   sync.Mutex // guards live, init
	live map[string]FaultRecord
	init bool
}

// faultTable compares the table's live records at now with the last look
// and reports the difference. The first look reports nothing: the faults
// in force at start are not news.
func (h *eventHub) faultTable(t FaultTable, now time.Time) {
	if h == nil {
		return
	}
	fw := &h.faults
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if !fw.init {
		fw.init = true
		fw.live = map[string]FaultRecord{}
		for _, r := range t.live(now) {
			fw.live[r.ID] = r
		}
		return
	}
	for _, r := range t.live(now) {
		if _, ok := fw.live[r.ID]; !ok {
			fw.live[r.ID] = r
			h.emit(faultEvent(&r, "installed", ""))
		}
	}
	for id, r := range fw.live {
		cur, ok := t[id]
		if ok && cur.Live(now) {
			continue
		}
		why := "purged"
		switch {
		case ok && !cur.Healed.IsZero():
			why = "healed"
		case ok || (!r.Until.IsZero() && !now.Before(r.Until)):
			why = "expired"
		}
		delete(fw.live, id)
		h.emit(faultEvent(&r, "lifted", why))
	}
}

func faultEvent(r *FaultRecord, action, why string) *Event {
	req := r.Request
	return &Event{Kind: api.EventFault, ID: r.ID, Fault: req.Kind, Parties: r.Named(), Action: action,
		Reason: why, Text: req.Describe(), Request: &req}
}
