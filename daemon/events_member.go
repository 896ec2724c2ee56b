package daemon

// Member events: a member's status as this node sees it (alive, suspect,
// failed, leaving, left), reported when it changes.
//
// serf reports joins, leaves and failures but not suspicions, and its
// events say nothing of who detected a failure; memberlist offers no
// callback for either. memberlist does count each change it makes to a
// node's state (go-metrics counters memberlist.msg.alive, .suspect and
// .dead, incremented just before the change, under its node lock). So the
// daemon's go-metrics sink (metrics.go) passes those increments on as a
// kick, and the watcher then compares every member's status (Agent.Members,
// which reads memberlist's suspect state) with what it saw last. serf's
// member events kick it too, and with subscribers it also looks once a
// second in case a kick was missed.
//
// Who detected it: memberlist's suspicion timer records the nodes that
// reported the suspicion (the first one, then confirmations). When the
// watcher first sees a member suspect, it reads that record (by reflection,
// as suspects does) and, if it names one node, reports it as detected_by;
// the failure that follows that suspicion carries the same name. A failure
// learnt without a suspicion seen here (a dead message or a push/pull that
// arrived first) has no detected_by.

import (
	"reflect"
	"sync"
	"time"
	"unsafe"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/memberlist"

	"github.com/peerctl/peerctl/internal/api"
)

// memberKicks holds the kick channel of every agent in the process: the
// go-metrics sink is global (one agent in production, several in tests).
var memberKicks sync.Map // chan struct{} -> struct{}

// kickMembers asks every agent's member watcher to look now. It never
// blocks.
func kickMembers() {
	memberKicks.Range(func(k, _ any) bool {
		select {
		case k.(chan struct{}) <- struct{}{}:
		default:
		}
		return true
	})
}

// memberSignalSink is a go-metrics sink that turns memberlist's state
// change counters into kicks; it ignores every other metric.
type memberSignalSink struct{}

func (memberSignalSink) SetGauge([]string, float32)                              {}
func (memberSignalSink) SetGaugeWithLabels([]string, float32, []gometrics.Label) {}
func (memberSignalSink) EmitKey([]string, float32)                               {}
func (memberSignalSink) AddSample([]string, float32)                             {}
func (memberSignalSink) AddSampleWithLabels([]string, float32, []gometrics.Label) {
}
func (s memberSignalSink) IncrCounter(key []string, v float32) {
	s.IncrCounterWithLabels(key, v, nil)
}

func (memberSignalSink) IncrCounterWithLabels(key []string, _ float32, _ []gometrics.Label) {
	n := len(key)
	if n >= 3 && key[n-3] == "memberlist" && key[n-2] == "msg" {
		switch key[n-1] {
		case "alive", "suspect", "dead":
			kickMembers()
		}
	}
}

var _ gometrics.MetricSink = memberSignalSink{}

// watchMembers reports member status changes until the agent stops.
func (a *Agent) watchMembers(kick chan struct{}) {
	defer a.wg.Done()
	defer memberKicks.Delete(kick)
	last := map[string]string{}
	detector := map[string]string{} // member -> who suspected it, while suspect or failed
	look := func() {
		ms := a.Members()
		for _, m := range ms {
			old, seen := last[m.Name]
			if seen && old == m.Status {
				continue
			}
			last[m.Name] = m.Status
			ev := &Event{Kind: api.EventMember, Member: m.Name, Status: m.Status}
			switch m.Status {
			case "suspect":
				if by := suspectedBy(a.serf.Memberlist(), m.Name); by != "" {
					detector[m.Name] = by
				}
				ev.DetectedBy = detector[m.Name]
			case "failed":
				ev.DetectedBy = detector[m.Name]
			default:
				delete(detector, m.Name)
			}
			a.events.emit(ev)
		}
		if len(last) > len(ms) {
			have := make(map[string]bool, len(ms))
			for _, m := range ms {
				have[m.Name] = true
			}
			for n := range last {
				if !have[n] { // reaped: serf forgot it
					delete(last, n)
					delete(detector, n)
				}
			}
		}
	}
	look()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-kick:
		case <-t.C:
			if !a.events.active() {
				continue
			}
		case <-a.stopCh:
			return
		}
		look()
	}
}

// startMemberEvents starts the member watcher.
func (a *Agent) startMemberEvents() {
	kick := a.events.kick
	memberKicks.Store(kick, struct{}{})
	a.wg.Add(1)
	go a.watchMembers(kick)
}

// kickMemberWatch asks this agent's watcher to look now (serf events).
func (a *Agent) kickMemberWatch() {
	select {
	case a.events.kick <- struct{}{}:
	default:
	}
}

// suspectedBy returns the one node memberlist's suspicion of name records
// (who reported it first, when no confirmation has come yet), or "" if
// there is none or more than one. It reads memberlist's private nodeTimers
// and suspicion.confirmations by reflection, under memberlist's node lock;
// TestSuspectedByReadsMemberlist checks them against the version in go.sum.
// If they change, it returns "" and events carry no detected_by.
func suspectedBy(ml *memberlist.Memberlist, name string) string {
	if ml == nil {
		return ""
	}
	v := reflect.ValueOf(ml).Elem()
	lockF := v.FieldByName("nodeLock")
	timersF := v.FieldByName("nodeTimers")
	if !lockF.IsValid() || !timersF.IsValid() || lockF.Type() != reflect.TypeOf(sync.RWMutex{}) || timersF.Kind() != reflect.Map || timersF.Type().Key().Kind() != reflect.String {
		return ""
	}
	lock := (*sync.RWMutex)(unsafe.Pointer(lockF.UnsafeAddr()))
	lock.RLock()
	defer lock.RUnlock()
	sp := timersF.MapIndex(reflect.ValueOf(name))
	if !sp.IsValid() || sp.Kind() != reflect.Pointer || sp.IsNil() {
		return ""
	}
	conf := sp.Elem().FieldByName("confirmations")
	if !conf.IsValid() || conf.Kind() != reflect.Map || conf.Type().Key().Kind() != reflect.String || conf.Len() != 1 {
		return ""
	}
	return conf.MapKeys()[0].String()
}
