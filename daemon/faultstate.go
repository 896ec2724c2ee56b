package daemon

// The fault table: faults as cluster state.
//
// A fault command does not install rules on nodes; it adds a record to a
// small table that every node holds, persists in its data dir and shares
// with the others. Each node derives its own rules from the table (derive:
// table + its name + now -> its rules), at start before serf, memberlist or
// replication send anything, and again whenever the table changes or an
// expiry passes. So a node that is down when a fault is ordered applies it
// when it comes back, a restarted node comes back under the faults in
// force, and a heal is a change to the table that reaches nodes down now.
//
// The table travels over the HTTP API, which the fault layer never
// touches: the node that takes a command pushes the whole table to every
// member it can find, and every node exchanges its table with a random
// known member every 1-2 s (faultsync.go). A node cut off by a fault is
// cut off only at the gossip and replication layers, so the exchange, and
// with it any heal, still reaches it.
//
// Records are keyed by ID and never change once made, except that a heal
// turns one into a tombstone (Healed set). The merge keeps, for each ID,
// the greatest record in a total order where a tombstone beats a live
// record, so it is commutative, associative and idempotent: any order of
// exchanges converges, and a heal can never be undone by a stale copy.
// Tombstones are purged after faultTombstoneTTL (or once the record's own
// expiry has passed, when the record has no effect either way).
//
// Everything in this file is pure: no clock, no I/O but the save and load
// helpers at the end.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Limits of the fault table.
const (
	maxFaultFor       = 7 * 24 * time.Hour // longest --for
	maxLiveFaults     = 256                // faults in force at once
	maxFaultRecords   = 1024               // records, tombstones included, a node accepts
	maxFaultMembers   = 1024               // members one record may name
	maxFaultReason    = 1024               // bytes of a fault's reason
	maxFaultBody      = 8 << 20            // bytes of a table on the wire or on disk
	faultTombstoneTTL = 24 * time.Hour     // a heal is remembered this long
	faultExpiredGrace = time.Minute        // an expired record is purged this long after
)

// planRecord is the rules each node applies for the record.
func planRecord(r *FaultRecord) (map[string][]Rule, error) {
	return planFault(r.Request, r.MemberNames(), r.ID, r.Created)
}

// involvedNodes returns the nodes that apply a rule for the record, sorted.
func involvedNodes(r *FaultRecord) []string {
	plan, err := planRecord(r)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(plan))
	for n := range plan {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// validateFaultRequest checks what planFault does not: the fault's
// duration, the size of its reason, names given twice.
func validateFaultRequest(req FaultRequest) error {
	if req.For < 0 || req.For > maxFaultFor {
		return fmt.Errorf("for %v: want a duration above 0 and at most %v, or none to last until healed", req.For, maxFaultFor)
	}
	if len(req.Reason) > maxFaultReason {
		return fmt.Errorf("reason of %d bytes: at most %d", len(req.Reason), maxFaultReason)
	}
	for _, ns := range [][]string{req.Nodes, req.Peers} {
		seen := map[string]bool{}
		for _, n := range ns {
			if seen[n] {
				return fmt.Errorf("node %q is named twice", n)
			}
			seen[n] = true
		}
	}
	return nil
}

// validate checks a record as received from another node or read from
// disk, so a bad one is refused rather than applied.
func validateRecord(r *FaultRecord) error {
	if r.ID == "" || len(r.ID) > 64 || strings.ContainsFunc(r.ID, func(c rune) bool { return c <= ' ' || c > '~' }) {
		return fmt.Errorf("fault id %q: want up to 64 printable characters", r.ID)
	}
	if len(r.Members) == 0 || len(r.Members) > maxFaultMembers {
		return fmt.Errorf("fault %s: %d members: want 1 to %d", r.ID, len(r.Members), maxFaultMembers)
	}
	seen := map[string]bool{}
	for _, m := range r.Members {
		if m.Name == "" || len(m.Name) > 256 || seen[m.Name] {
			return fmt.Errorf("fault %s: member name %q is empty, too long or repeated", r.ID, m.Name)
		}
		seen[m.Name] = true
	}
	if r.Created.IsZero() {
		return fmt.Errorf("fault %s: no creation time", r.ID)
	}
	if err := validateFaultRequest(r.Request); err != nil {
		return fmt.Errorf("fault %s: %w", r.ID, err)
	}
	want := time.Time{}
	if r.Request.For > 0 {
		want = r.Created.Add(r.Request.For)
	}
	if !r.Until.Equal(want) {
		return fmt.Errorf("fault %s: until %v does not match created + for (%v)", r.ID, r.Until, want)
	}
	if _, err := planRecord(r); err != nil {
		return fmt.Errorf("fault %s: %w", r.ID, err)
	}
	return nil
}

// faultOrder is a total order on two records with the same ID: a tombstone
// is greater than a live record, a later heal greater than an earlier one,
// and otherwise the canonical encodings decide. It returns -1, 0 or 1.
func faultOrder(a, b FaultRecord) int {
	if c := cmpBool(!a.Healed.IsZero(), !b.Healed.IsZero()); c != 0 {
		return c
	}
	if c := a.Healed.Compare(b.Healed); c != 0 {
		return c
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Compare(ja, jb)
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// FaultTable is a node's copy of the cluster's faults, by ID. It is a
// value: the functions below return new tables.
type FaultTable map[string]FaultRecord

// mergeFaults returns the union of a and b, keeping for each ID the
// greater record (faultOrder), without what purge drops at now.
func mergeFaults(a, b FaultTable, now time.Time) FaultTable {
	out := make(FaultTable, len(a)+len(b))
	for _, t := range []FaultTable{a, b} {
		for id, r := range t {
			if o, ok := out[id]; !ok || faultOrder(r, o) > 0 {
				out[id] = r
			}
		}
	}
	return purgeFaults(out, now)
}

// purgeFaults drops the records that no longer matter at now: tombstones
// older than faultTombstoneTTL, and records whose expiry passed more than
// faultExpiredGrace ago (they have no effect, healed or not, so a stale
// copy coming back does no harm and is dropped again).
func purgeFaults(t FaultTable, now time.Time) FaultTable {
	for id, r := range t {
		if (!r.Healed.IsZero() && now.Sub(r.Healed) > faultTombstoneTTL) ||
			(!r.Until.IsZero() && now.Sub(r.Until) > faultExpiredGrace) {
			delete(t, id)
		}
	}
	return t
}

// equalFaults reports whether two tables hold the same records.
func equalFaults(a, b FaultTable) bool {
	if len(a) != len(b) {
		return false
	}
	for id, r := range a {
		o, ok := b[id]
		if !ok || faultOrder(r, o) != 0 {
			return false
		}
	}
	return true
}

// records returns the table's records, oldest first.
func (t FaultTable) records() []FaultRecord {
	out := make([]FaultRecord, 0, len(t))
	for _, r := range t {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// live returns the records in force at now, oldest first.
func (t FaultTable) live(now time.Time) []FaultRecord {
	var out []FaultRecord
	for _, r := range t.records() {
		if r.Live(now) {
			out = append(out, r)
		}
	}
	return out
}

// deriveRules returns the rules node applies at now: its part of every
// record in force, oldest record first.
func deriveRules(t FaultTable, node string, now time.Time) []Rule {
	var out []Rule
	for _, r := range t.live(now) {
		plan, err := planRecord(&r)
		if err != nil {
			continue // validated on the way in; cannot happen
		}
		out = append(out, plan[node]...)
	}
	return out
}

// selectHeal returns the IDs of the records in force at now that `heal
// target` removes: all of them for "", the record with that ID, or those
// that named the node target.
func selectHeal(t FaultTable, target string, now time.Time) []string {
	var ids []string
	for _, r := range t.live(now) {
		if target == "" || r.ID == target || slices.Contains(r.Named(), target) {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// healFaults returns t with the given records turned into tombstones at now.
func healFaults(t FaultTable, ids []string, now time.Time) FaultTable {
	out := maps.Clone(t)
	for _, id := range ids {
		if r, ok := out[id]; ok && r.Healed.IsZero() {
			r.Healed = now
			out[id] = r
		}
	}
	return out
}

// endpoints returns every member the table's records name, by name, the
// newest record's addresses winning.
func (t FaultTable) endpoints() map[string]Endpoint {
	out := map[string]Endpoint{}
	for _, r := range t.records() {
		for _, m := range r.Members {
			out[m.Name] = m
		}
	}
	return out
}

// faultFile is the table's encoding, on disk and on the wire.
type faultFile struct {
	Version int           `json:"version"`
	Records []FaultRecord `json:"records"`
}

const faultFileVersion = 1

// encodeFaults encodes a table.
func encodeFaults(t FaultTable) []byte {
	b, _ := json.Marshal(faultFile{Version: faultFileVersion, Records: t.records()})
	return b
}

// decodeFaults decodes and validates a table. It refuses the whole table
// if any record is bad: a table comes from one node, and a node that sends
// a bad record is not to be trusted with the rest.
func decodeFaults(data []byte) (FaultTable, error) {
	if len(data) > maxFaultBody {
		return nil, fmt.Errorf("fault table of %d bytes: at most %d", len(data), maxFaultBody)
	}
	var f faultFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode fault table: %w", err)
	}
	if f.Version != faultFileVersion {
		return nil, fmt.Errorf("fault table version %d: want %d", f.Version, faultFileVersion)
	}
	if len(f.Records) > maxFaultRecords {
		return nil, fmt.Errorf("fault table of %d records: at most %d", len(f.Records), maxFaultRecords)
	}
	t := make(FaultTable, len(f.Records))
	for _, r := range f.Records {
		if err := validateRecord(&r); err != nil {
			return nil, err
		}
		if o, ok := t[r.ID]; !ok || faultOrder(r, o) > 0 {
			t[r.ID] = r
		}
	}
	return t, nil
}

// faultFileName is the table's file in the data dir.
const faultFileName = "faults.json"

// saveFaults writes the table to dir atomically and durably.
func saveFaults(dir string, t FaultTable) error {
	if err := writeFileAtomic(dir, faultFileName, encodeFaults(t)); err != nil {
		return fmt.Errorf("save fault table: %w", err)
	}
	return nil
}

// errBadFaultFile wraps a fault table file that exists but cannot be read.
var errBadFaultFile = errors.New("damaged fault table")

// loadFaults reads the table saved in dir: empty if there is none.
func loadFaults(dir string) (FaultTable, error) {
	data, err := os.ReadFile(filepath.Join(dir, faultFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return FaultTable{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read fault table: %w", err)
	}
	t, err := decodeFaults(data)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", errBadFaultFile, filepath.Join(dir, faultFileName), err)
	}
	return t, nil
}
