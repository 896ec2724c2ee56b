package daemon

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/store"
)

// Version is the peerctl version, advertised in serf tags: api.Version,
// which says how to set it.
var Version = api.Version

// Config configures an Agent. Start from DefaultConfig and Validate.
type Config struct {
	Name       string   // node name, unique in the cluster
	Bind       string   // gossip listen address host:port (UDP and TCP)
	Advertise  string   // gossip address others use; defaults to Bind
	API        string   // HTTP API listen address host:port
	Join       []string // addresses to join, retried with backoff
	DataDir    string   // badger store, serf snapshot
	EncryptKey string   // base64 gossip key, 16, 24 or 32 bytes; "" for none
	Profile    string   // local, lan or wan

	// Token, if set, is the API token: every request must carry
	// "Authorization: Bearer TOKEN" (auth.go). Daemons send it to each
	// other, so it is the same on every member.
	Token string
	// InsecureAPI allows an API bound off loopback with no Token.
	InsecureAPI bool
	// APITLSCert and APITLSKey, both or neither, are PEM files: the API
	// then serves HTTPS, and this daemon calls its peers over HTTPS.
	APITLSCert, APITLSKey string
	// APITLSCA is a PEM file of the certificates this daemon trusts when
	// it calls a peer's HTTPS API; "" trusts the system's roots and the
	// certificates in APITLSCert (one certificate shared by all members).
	APITLSCA string

	// SyncWrites makes every write fsync before it is acknowledged, so it
	// survives power loss; without it a write survives a process crash.
	SyncWrites bool
	// InMemory keeps the store in memory (tests only).
	InMemory bool
	// Resync moves the store aside (DataDir/store.damaged-TIME, kept) and
	// starts empty, refilling from peers: the recovery for a damaged store.
	Resync bool
	// MinFreeSpace: writes fail with store.ErrNoSpace while the data dir's
	// disk has fewer bytes available (Linux only; 0 disables the check).
	MinFreeSpace uint64

	SyncInterval      time.Duration // anti-entropy period
	PushWindow        time.Duration // how long a push waits to batch more writes
	TombstoneTTL      time.Duration // tombstones are purged after this
	ReconnectInterval time.Duration // serf retries failed members this often
	// MaxClockSkew: entries from peers with versions further ahead of this
	// node's wall clock are refused (store.Config.MaxClockSkew).
	MaxClockSkew time.Duration

	Logger *slog.Logger

	// TraceArrivals records when each key first became readable here, for
	// benchmarks (GET /v1/debug/arrivals).
	TraceArrivals bool

	// Pprof serves Go's profiles at /debug/pprof (heap, goroutines,
	// traces); off by default, as they reveal the process's memory.
	Pprof bool
	// Limits bound the HTTP API's timeouts, connections and streams.
	Limits Limits

	// FaultSeed seeds the fault layer's random choices (loss, jitter).
	FaultSeed uint64

	// WrapTransport, if set, wraps the replication transport (tests, and the
	// place a fault layer plugs in).
	WrapTransport func(Transport) Transport

	// Kill ends the process at once, as kill -9 does. Tests replace it.
	Kill func()
	// OnLeave is called after a leave requested through the API has
	// completed; the agent command exits the process from it.
	OnLeave func()
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	host, _ := os.Hostname()
	return &Config{
		Name:              host,
		Bind:              "127.0.0.1:7946",
		API:               "127.0.0.1:7947",
		Profile:           "local",
		SyncInterval:      time.Second,
		PushWindow:        2 * time.Millisecond,
		TombstoneTTL:      24 * time.Hour,
		ReconnectInterval: 3 * time.Second,
		MinFreeSpace:      DefaultMinFreeSpace,
		MaxClockSkew:      store.DefaultMaxClockSkew,
		Logger:            slog.Default(),
	}
}

// Validate checks the configuration and names the bad field.
func (c *Config) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("--name is empty: give this node a name unique in the cluster")
	}
	if len(c.Name) > 128 {
		return fmt.Errorf("--name is %d bytes, the limit is 128", len(c.Name))
	}
	if _, _, err := splitHostPort(c.Bind); err != nil {
		return fmt.Errorf("--bind %q: %w", c.Bind, err)
	}
	if c.Advertise != "" {
		if _, _, err := splitHostPort(c.Advertise); err != nil {
			return fmt.Errorf("--advertise %q: %w", c.Advertise, err)
		}
	}
	if _, _, err := splitHostPort(c.API); err != nil {
		return fmt.Errorf("--api %q: %w", c.API, err)
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return fmt.Errorf("--join %q: want HOST:PORT", j)
		}
	}
	if err := c.validateAuth(); err != nil {
		return err
	}
	if c.DataDir == "" && !c.InMemory {
		return fmt.Errorf("--data-dir is required: the directory for this node's store and membership snapshot")
	}
	if _, err := c.key(); err != nil {
		return err
	}
	if _, err := profileConfig(c.Profile); err != nil {
		return err
	}
	if c.SyncInterval <= 0 || c.ReconnectInterval <= 0 {
		return fmt.Errorf("sync and reconnect intervals must be positive")
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if c.MaxClockSkew <= 0 || c.MaxClockSkew > 24*time.Hour {
		return fmt.Errorf("--max-clock-skew %v: want more than 0 and at most 24h (default %v)", c.MaxClockSkew, store.DefaultMaxClockSkew)
	}
	return nil
}

func (c *Config) key() ([]byte, error) {
	if c.EncryptKey == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(c.EncryptKey)
	if err != nil {
		return nil, fmt.Errorf("--encrypt: not base64: %v (make a key with `peerctl keygen`)", err)
	}
	if n := len(k); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("--encrypt: key is %d bytes, want 16, 24 or 32 (make one with `peerctl keygen`)", n)
	}
	return k, nil
}

func splitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("want HOST:PORT")
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number in 0..65535", p)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	return h, n, nil
}

// Profiles are memberlist's timing presets. "local" is ours: tuned for many
// daemons on one machine, it detects a dead node faster than memberlist's
// DefaultLocalConfig (see ../shared/FACTS.md) while keeping Lifeguard's
// suspicion confirmations, which are what prevent false alarms.
func profileConfig(name string) (*memberlist.Config, error) {
	switch name {
	case "local":
		c := memberlist.DefaultLocalConfig()
		// Probe often so a dead node is found fast, and wait for an ack
		// long enough to ride out a 100 ms-each-way link or a short CPU
		// stall on a crowded laptop; Lifeguard's suspicion confirmations
		// keep false alarms away.
		c.ProbeInterval = 400 * time.Millisecond
		c.ProbeTimeout = 300 * time.Millisecond
		c.SuspicionMult = 3
		c.SuspicionMaxTimeoutMult = 4
		c.GossipInterval = 50 * time.Millisecond
		// Retransmit each rumour a little more and exchange full state
		// more often than the stock Local profile: joins that miss one
		// gossip round otherwise wait for the next push/pull to spread.
		c.RetransmitMult = 4
		c.PushPullInterval = 5 * time.Second
		return c, nil
	case "lan":
		return memberlist.DefaultLANConfig(), nil
	case "wan":
		return memberlist.DefaultWANConfig(), nil
	}
	return nil, fmt.Errorf("--profile %q: want local, lan or wan", name)
}

// Profiles lists the valid --profile values (api.Profiles).
var Profiles = api.Profiles
