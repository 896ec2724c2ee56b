package daemon

// Known members: DATA_DIR/known-members.json lists the members this node has
// known, with their gossip and API addresses, so that a node restarted after
// a crash can rejoin through any of them, not only through the --join
// address it was first given (which may be gone for good), and so that
// `check` can name members the node does not see right now.
//
// serf's own snapshot (serf.snapshot) also lists members, but it buffers
// its writes and forgets a member as soon as it fails; this list keeps a
// member until it leaves, or until it has not been seen alive for
// knownForget. It is rewritten as soon as membership changes, atomically: a temporary file, fsync, rename, fsync of the
// directory. It holds at most maxKnown members, and a file over
// maxKnownFile bytes is refused. A corrupt file is logged and ignored: it
// is a cache, rebuilt from membership.
//
// Format (JSON):
//
//	{"version": 1, "members": [{"name": "n2", "addr": "127.0.0.1:7948",
//	  "api": "127.0.0.1:7949", "seen": "2026-11-29T12:00:00Z"}, ...]}

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/serf/serf"
)

const (
	knownFile    = "known-members.json"
	knownVersion = 1
	maxKnown     = 256            // members kept in the file
	maxKnownFile = 1 << 20        // bytes read from it at most
	maxKnownJoin = 32             // known addresses tried per join attempt
	knownForget  = 72 * time.Hour // as serf's ReconnectTimeout
	maxNameLen   = 128            // as Config.Validate
	maxSnapshot  = 8 << 20        // bytes of serf.snapshot read for join addresses
)

// knownMember is one member in the known-members file.
type knownMember struct {
	Name string    `json:"name"`
	Addr string    `json:"addr"`          // gossip host:port
	API  string    `json:"api,omitempty"` // HTTP API host:port
	Seen time.Time `json:"seen"`          // last time this node saw it alive
}

type knownDoc struct {
	Version int           `json:"version"`
	Members []knownMember `json:"members"`
}

// decodeKnown parses a known-members file. Every entry must have a name
// of 1..128 bytes and a gossip address host:port (API optional, host:port
// too); duplicate names keep the first. Over maxKnown entries, the rest
// are dropped. It never panics on any input.
func decodeKnown(b []byte) ([]knownMember, error) {
	if len(b) > maxKnownFile {
		return nil, fmt.Errorf("known members: %d bytes, the limit is %d", len(b), maxKnownFile)
	}
	var doc knownDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("known members: %w", err)
	}
	if doc.Version != knownVersion {
		return nil, fmt.Errorf("known members: version %d, want %d", doc.Version, knownVersion)
	}
	seen := map[string]bool{}
	var out []knownMember
	for i, m := range doc.Members {
		if len(out) == maxKnown {
			break
		}
		if m.Name == "" || len(m.Name) > maxNameLen {
			return nil, fmt.Errorf("known members: entry %d: name of %d bytes, want 1..%d", i, len(m.Name), maxNameLen)
		}
		if err := checkHostPort(m.Addr); err != nil {
			return nil, fmt.Errorf("known members: entry %d (%q): addr: %w", i, m.Name, err)
		}
		if m.API != "" {
			if err := checkHostPort(m.API); err != nil {
				return nil, fmt.Errorf("known members: entry %d (%q): api: %w", i, m.Name, err)
			}
		}
		if seen[m.Name] {
			continue
		}
		seen[m.Name] = true
		out = append(out, m)
	}
	return out, nil
}

// checkHostPort accepts host:port with a non-empty host and a port 1..65535.
func checkHostPort(s string) error {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if h == "" || strings.ContainsAny(h, " \t\r\n") {
		return fmt.Errorf("%q: bad host", s)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: bad port", s)
	}
	return nil
}

// readKnown reads DIR/known-members.json: nil, nil if it does not exist.
func readKnown(dir string) ([]knownMember, error) {
	f, err := os.Open(filepath.Join(dir, knownFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known members: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKnownFile+1))
	if err != nil {
		return nil, fmt.Errorf("known members: %w", err)
	}
	return decodeKnown(b)
}

// writeKnown replaces DIR/known-members.json atomically and durably.
func writeKnown(dir string, ms []knownMember) error {
	b, err := json.MarshalIndent(knownDoc{Version: knownVersion, Members: ms}, "", "  ")
	if err != nil {
		return fmt.Errorf("write known members: %w", err)
	}
	return writeFileAtomic(dir, knownFile, append(b, '\n'))
}

// writeFileAtomic writes dir/name through a temporary file in dir: write,
// fsync, rename, fsync the directory. A crash leaves the old file or the
// new one, never a mix.
func writeFileAtomic(dir, name string, b []byte) error {
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: fsync: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync directory: %w", name, err)
	}
	return nil
}

// mergeKnown is the new known list from the previous one and the members
// serf lists now (self excluded by the caller). A member serf lists is
// kept unless it left; its addresses are updated, and Seen is now if it is
// alive. A member serf no longer lists is kept until it has not been seen
// alive for knownForget. Alive members come first, then by most recently
// seen, then by name; at most maxKnown. It is pure.
func mergeKnown(prev []knownMember, now []Member, at time.Time) []knownMember {
	byName := map[string]knownMember{}
	for _, k := range prev {
		byName[k.Name] = k
	}
	listed := map[string]bool{}
	alive := map[string]bool{}
	for _, m := range now {
		listed[m.Name] = true
		if m.Status == serf.StatusLeft.String() || m.Status == serf.StatusLeaving.String() {
			delete(byName, m.Name)
			continue
		}
		k := byName[m.Name]
		k.Name, k.Addr = m.Name, m.Addr
		if m.API != "" {
			k.API = m.API
		}
		if m.Status == "alive" || m.Status == "suspect" {
			k.Seen = at.UTC()
			alive[m.Name] = true
		}
		byName[m.Name] = k
	}
	out := make([]knownMember, 0, len(byName))
	for name, k := range byName {
		if !listed[name] && at.Sub(k.Seen) > knownForget {
			continue
		}
		if checkHostPort(k.Addr) != nil {
			continue
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if alive[a.Name] != alive[b.Name] {
			return alive[a.Name]
		}
		if !a.Seen.Equal(b.Seen) {
			return a.Seen.After(b.Seen)
		}
		return a.Name < b.Name
	})
	if len(out) > maxKnown {
		out = out[:maxKnown]
	}
	return out
}

// snapshotAddrs returns the gossip addresses of the members serf's snapshot
// at path holds as alive, replaying it as serf does: "alive: NAME ADDR"
// adds, "not-alive: NAME" removes. It reads at most maxSnapshot bytes and
// returns nil if the file is missing or unreadable.
func snapshotAddrs(path string) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSnapshot))
	if err != nil {
		return nil
	}
	alive := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "alive: "); ok {
			i := strings.LastIndex(rest, " ")
			if i <= 0 || checkHostPort(rest[i+1:]) != nil {
				continue
			}
			alive[rest[:i]] = rest[i+1:]
		} else if name, ok := strings.CutPrefix(line, "not-alive: "); ok {
			delete(alive, name)
		}
	}
	return alive
}

// alivePeers counts the members other than this node that serf sees alive.
func (a *Agent) alivePeers() int {
	n := 0
	for _, m := range a.serf.Members() {
		if m.Name != a.cfg.Name && m.Status == serf.StatusAlive {
			n++
		}
	}
	return n
}

// oneLineErr renders serf's multi-error ("2 errors occurred:\n\t* ...")
// as one line: the first error, and how many more there were.
func oneLineErr(err error) string {
	if err == nil {
		return ""
	}
	if w, ok := err.(interface{ WrappedErrors() []error }); ok {
		if es := w.WrappedErrors(); len(es) > 0 {
			msg := strings.Join(strings.Fields(es[0].Error()), " ")
			if len(es) > 1 {
				msg += fmt.Sprintf(" (and %d more)", len(es)-1)
			}
			return msg
		}
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// loadKnown reads the known-members file and serf's snapshot, before serf
// starts and rewrites the snapshot.
func (a *Agent) loadKnown() {
	a.knownDirty = make(chan struct{}, 1)
	if a.cfg.InMemory {
		return
	}
	known, err := readKnown(a.cfg.DataDir)
	if err != nil {
		a.log.Warn("ignoring the known-members file; it is rebuilt from membership", "err", err)
	}
	var mine []knownMember
	for _, k := range known {
		if k.Name != a.cfg.Name {
			mine = append(mine, k)
		}
	}
	a.known = mine
	a.snapAddrs = snapshotAddrs(filepath.Join(a.cfg.DataDir, "serf.snapshot"))
	delete(a.snapAddrs, a.cfg.Name)
}

// joinAddrs is what joinLoop tries: every --join address, then up to
// maxKnownJoin known members' gossip addresses (most recently alive
// first), then the snapshot's, without duplicates or this node's own.
func (a *Agent) joinAddrs() []string {
	seen := map[string]bool{a.gossip: true}
	var out []string
	add := func(addr string) {
		if addr != "" && !seen[addr] {
			seen[addr] = true
			out = append(out, addr)
		}
	}
	for _, j := range a.cfg.Join {
		add(j)
	}
	a.knownMu.Lock()
	for i, k := range a.known {
		if i == maxKnownJoin {
			break
		}
		add(k.Addr)
	}
	a.knownMu.Unlock()
	var names []string
	for n := range a.snapAddrs {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		if i == maxKnownJoin {
			break
		}
		add(a.snapAddrs[n])
	}
	return out
}

// knownMembers returns a copy of the known members (this node excluded).
func (a *Agent) knownMembers() []knownMember {
	a.knownMu.Lock()
	defer a.knownMu.Unlock()
	return slices.Clone(a.known)
}

// knownLoop saves the known-members file as soon as membership changes
// (saveKnown writes only when a member or an address is new or gone, so a
// flapping member costs nothing), and hourly, to refresh Seen. It saves at
// once rather than after a pause: a node killed right after joining must
// still know its peers when it restarts, or it could neither rejoin them
// nor ask them for the faults in force before it gossips.
func (a *Agent) knownLoop() {
	defer a.wg.Done()
	hourly := time.NewTicker(time.Hour)
	defer hourly.Stop()
	for {
		select {
		case <-hourly.C:
			a.saveKnown()
		case <-a.knownDirty:
			a.saveKnown()
		case <-a.stopCh:
			select {
			case <-a.knownDirty:
				a.saveKnown()
			default:
			}
			return
		}
	}
}

// saveKnown merges serf's members into the known list and writes it if it
// changed.
func (a *Agent) saveKnown() {
	var now []Member
	for _, m := range a.Members() {
		if m.Name != a.cfg.Name {
			now = append(now, m)
		}
	}
	a.knownMu.Lock()
	prev := a.known
	next := mergeKnown(prev, now, time.Now())
	a.known = next
	a.knownMu.Unlock()
	if knownEqual(prev, next) {
		return
	}
	if err := writeKnown(a.cfg.DataDir, next); err != nil {
		a.log.Warn("save known members", "err", err)
	}
}

// knownEqual reports whether two lists name the same members at the same
// addresses, seen alive within the same hour: Seen alone is rewritten at
// most hourly (knownLoop saves hourly), which keeps it far fresher than
// knownForget needs.
func knownEqual(a, b []knownMember) bool {
	return slices.EqualFunc(a, b, func(x, y knownMember) bool {
		return x.Name == y.Name && x.Addr == y.Addr && x.API == y.API && y.Seen.Sub(x.Seen) < time.Hour
	})
}
