package cli

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

// nodeInfo is what `info --json` prints.
type nodeInfo struct {
	Name        string          `json:"name"`
	Addr        string          `json:"addr"`
	API         string          `json:"api"`
	Version     string          `json:"version"`
	Profile     string          `json:"profile"`
	DataDir     string          `json:"data_dir"`
	PID         int             `json:"pid"`
	Encrypted   bool            `json:"encrypted"`
	StartedAt   time.Time       `json:"started_at"`
	Uptime      string          `json:"uptime"`
	Members     map[string]int  `json:"members"` // count by status
	Store       storeInfo       `json:"store"`
	Replication replicationInfo `json:"replication"`
	Auth        authInfo        `json:"auth"`
	Faults      []faultRule     `json:"faults"`                 // injected fault rules the node applies
	FaultsError string          `json:"faults_error,omitempty"` // why Faults could not be read
}

type storeInfo struct {
	Keys       int    `json:"keys"`
	Tombstones int    `json:"tombstones"`
	DiskBytes  int64  `json:"disk_bytes"`
	Digest     string `json:"digest"`
	// Damaged copies: replaced by a peer's copy of the same version, and
	// stored records set aside since start.
	Corrupt     uint64 `json:"corrupt"`
	Quarantined int    `json:"quarantined"`
}

type replicationInfo struct {
	MsgsSent         uint64 `json:"msgs_sent"`
	MsgsReceived     uint64 `json:"msgs_received"`
	BytesSent        uint64 `json:"bytes_sent"`
	BytesReceived    uint64 `json:"bytes_received"`
	PushesSent       uint64 `json:"pushes_sent"`
	PushesFailed     uint64 `json:"pushes_failed"`
	EntriesPushed    uint64 `json:"entries_pushed"`
	EntriesApplied   uint64 `json:"entries_applied"`
	SyncRounds       uint64 `json:"sync_rounds"`
	SyncRepaired     uint64 `json:"sync_repaired"`
	Pending          int    `json:"pending"`
	LastSync         string `json:"last_sync,omitempty"`
	LagMillis        int64  `json:"lag_ms"`
	LagAvgMillis     int64  `json:"lag_avg_ms"`
	MalformedDropped uint64 `json:"malformed_dropped"`
}

// authInfo is how the node guards its API and channels (api.AuthStats).
type authInfo struct {
	Keys               int               `json:"gossip_keys"`
	Token              bool              `json:"token"`
	TLS                bool              `json:"tls"`
	TokenRefused       uint64            `json:"token_refused"`
	ReplicationRefused uint64            `json:"replication_refused"`
	RefusedBy          map[string]uint64 `json:"replication_refused_by,omitempty"`
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func toNodeInfo(in *api.Info) nodeInfo {
	r := in.Replication
	members := map[string]int{}
	for k, v := range in.Members {
		members[strings.ToLower(k)] += v
	}
	return nodeInfo{
		Name: in.Name, Addr: in.Addr, API: in.API, Version: in.Version, Profile: in.Profile,
		DataDir: in.DataDir, PID: in.PID, Encrypted: in.Encrypted, StartedAt: in.StartedAt,
		Uptime: in.Uptime, Members: members,
		Auth: authInfo{Keys: in.Auth.Keys, Token: in.Auth.Token, TLS: in.Auth.TLS, TokenRefused: in.Auth.TokenRefused,
			ReplicationRefused: in.Auth.ReplicationRefused, RefusedBy: in.Auth.RefusedBy},
		Store: storeInfo{Keys: in.Store.Keys, Tombstones: in.Store.Tombstones,
			DiskBytes: in.Store.DiskBytes, Digest: in.Store.Digest,
			Corrupt: in.Store.Corrupt, Quarantined: in.Store.Quarantined},
		Replication: replicationInfo{
			MsgsSent: r.MsgsSent, MsgsReceived: r.MsgsReceived,
			BytesSent: r.BytesSent, BytesReceived: r.BytesReceived,
			PushesSent: r.PushesSent, PushesFailed: r.PushesFailed,
			EntriesPushed: r.EntriesPushed, EntriesApplied: r.EntriesApplied,
			SyncRounds: r.SyncRounds, SyncRepaired: r.SyncRepaired, Pending: r.Pending,
			LastSync: r.LastSync, LagMillis: r.LagMillis, LagAvgMillis: r.LagAvgMillis,
			MalformedDropped: r.MalformedDropped,
		},
	}
}

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:     "info",
		Category: catCluster,
		Usage:    "describe a node: addresses, members, store and replication counters",
		UsageText: `peerctl info [--node NAME] [--json]

Examples:
  peerctl info
  peerctl info --node n2 --json`,
		Description: `Summarises the daemon at --addr, or member --node: its name and addresses,
version, timing profile, uptime, how many members it sees in each state,
how many keys and tombstones it holds and their size on disk, its store
digest (equal on nodes that hold the same data), replication counters, and
the injected fault rules it applies (peerctl faults lists them for every
node).`,
		Flags:  []cli.Flag{nodeFlag("describe"), jsonFlag()},
		Action: runInfo,
	}
}

func runInfo(c *cli.Context) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	in, err := client(c).Info(c.Context, c.String("node"))
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	info := toNodeInfo(in)
	info.Faults = []faultRule{}
	// Best effort: the rest of the description stands without the faults.
	rules, err := client(c).LocalFaults(c.Context, c.String("node"))
	if err != nil {
		info.Faults, info.FaultsError = nil, err.Error()
	}
	for _, r := range rules {
		info.Faults = append(info.Faults, toFaultRule(r))
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, info)
	}
	r := info.Replication
	enc := "no"
	if info.Encrypted {
		enc = "yes"
	}
	lastSync := r.LastSync
	if lastSync == "" {
		lastSync = "never"
	}
	tw := newTable(c.App.Writer)
	for _, l := range [][2]string{
		{"name", info.Name},
		{"gossip addr", info.Addr},
		{"api addr", info.API},
		{"version", info.Version},
		{"profile", info.Profile},
		{"data dir", info.DataDir},
		{"pid", fmt.Sprint(info.PID)},
		{"encrypted", enc},
		{"security", fmt.Sprintf("token %s, tls %s, %d %s; refused %d requests without the token, %d sealed messages",
			yesNo(info.Auth.Token), yesNo(info.Auth.TLS), info.Auth.Keys, plural(info.Auth.Keys, "key"), info.Auth.TokenRefused, info.Auth.ReplicationRefused)},
		{"started", fmt.Sprintf("%s (up %s)", info.StartedAt.Local().Format(time.DateTime), info.Uptime)},
		{"members", memberCounts(info.Members)},
		{"keys", fmt.Sprintf("%d live, %d %s", info.Store.Keys, info.Store.Tombstones, plural(info.Store.Tombstones, "tombstone"))},
		{"disk", humanBytes(info.Store.DiskBytes)},
		{"digest", info.Store.Digest},
		{"damaged", fmt.Sprintf("%d replaced by a peer's copy, %d set aside", info.Store.Corrupt, info.Store.Quarantined)},
		{"messages", fmt.Sprintf("%d sent (%s), %d received (%s)", r.MsgsSent, humanBytes(int64(r.BytesSent)), r.MsgsReceived, humanBytes(int64(r.BytesReceived)))},
		{"pushes", fmt.Sprintf("%d sent, %d failed, %d entries pushed, %d pending", r.PushesSent, r.PushesFailed, r.EntriesPushed, r.Pending)},
		{"applied", fmt.Sprintf("%d remote entries changed this store", r.EntriesApplied)},
		{"anti-entropy", fmt.Sprintf("%d rounds, %d entries repaired, last %s", r.SyncRounds, r.SyncRepaired, lastSync)},
		{"lag", fmt.Sprintf("%d ms last, %d ms average", r.LagMillis, r.LagAvgMillis)},
		{"malformed", fmt.Sprintf("%d messages dropped", r.MalformedDropped)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", l[0], l[1])
	}
	for i, l := range faultLines(info) {
		label := ""
		if i == 0 {
			label = "faults:"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, l)
	}
	return tw.Flush()
}

// memberCounts formats counts by status as "3 alive, 1 failed": known
// statuses in memberStatuses order, then any others sorted.
func memberCounts(counts map[string]int) string {
	var parts []string
	for _, s := range memberStatuses {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	var other []string
	for s, n := range counts {
		if n > 0 && !slices.Contains(memberStatuses, s) {
			other = append(other, fmt.Sprintf("%d %s", n, s))
		}
	}
	sort.Strings(other)
	parts = append(parts, other...)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// faultLines describes the node's fault rules for info, one line each.
func faultLines(info nodeInfo) []string {
	switch {
	case info.FaultsError != "":
		return []string{"unknown (" + info.FaultsError + ")"}
	case len(info.Faults) == 0:
		return []string{"none"}
	}
	now := time.Now()
	var out []string
	for _, r := range info.Faults {
		until := "until healed"
		if r.Until != nil {
			until = "until " + clock(*r.Until, now)
		}
		out = append(out, fmt.Sprintf("%s %s, %s (%s)", r.ID, r.Effect, until, r.Reason))
	}
	return out
}
