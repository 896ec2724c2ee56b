package daemon

import (
	"reflect"
	"sync"
	"unsafe"

	"github.com/hashicorp/memberlist"
)

// suspects returns the members memberlist currently suspects.
//
// serf reports a suspected member as alive, and memberlist's public
// Members() copies each node's embedded Node, whose State field is never
// updated: the live state sits in the private nodeState that embeds it. So
// we read memberlist's node map by reflection, under its own lock. This
// depends on memberlist's internals (nodeLock, nodeMap, nodeState.State),
// checked against the version in go.sum by TestSuspectsReadsMemberlist; if
// they change, suspects reports nothing and members show only serf's
// statuses.
func suspects(ml *memberlist.Memberlist) map[string]bool {
	out := map[string]bool{}
	if ml == nil {
		return out
	}
	v := reflect.ValueOf(ml).Elem()
	lockF := v.FieldByName("nodeLock")
	mapF := v.FieldByName("nodeMap")
	if !lockF.IsValid() || !mapF.IsValid() || lockF.Type() != reflect.TypeOf(sync.RWMutex{}) || mapF.Kind() != reflect.Map {
		return out
	}
	lock := (*sync.RWMutex)(unsafe.Pointer(lockF.UnsafeAddr()))
	lock.RLock()
	defer lock.RUnlock()
	iter := mapF.MapRange()
	for iter.Next() {
		ns := iter.Value()
		if ns.Kind() != reflect.Pointer || ns.IsNil() {
			continue
		}
		st := ns.Elem().FieldByName("State") // nodeState.State shadows Node.State
		if !st.IsValid() || !st.CanInt() {
			continue
		}
		if memberlist.NodeStateType(st.Int()) == memberlist.StateSuspect {
			out[iter.Key().String()] = true
		}
	}
	return out
}
