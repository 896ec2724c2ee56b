package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/daemon"
)

// agent is what the agent command needs of a running daemon.
type agent interface {
	Leave() error
	Shutdown() error
}

var _ agent = (*daemon.Agent)(nil)

// createFunc starts a daemon and returns once it serves, as daemon.Create
// does; tests pass a fake.
type createFunc func(*daemon.Config) (agent, error)

func startAgent(cfg *daemon.Config) (agent, error) {
	a, err := daemon.Create(cfg)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return a, nil
}

func agentCommand(create createFunc) *cli.Command {
	def := daemon.DefaultConfig()
	env := func(flag string) []string {
		return []string{"PEERCTL_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
	}
	return &cli.Command{
		Name:     "agent",
		Category: catDaemon,
		Usage:    "run a daemon: a cluster member holding a copy of the store",
		UsageText: `peerctl agent --data-dir DIR [--name NAME] [--bind HOST:PORT] [--api HOST:PORT] [--join HOST:PORT]... [options]

Examples:
  # a first node, and a second on the same machine joining it
  peerctl agent --name n1 --data-dir /tmp/n1
  peerctl agent --name n2 --data-dir /tmp/n2 --bind 127.0.0.1:7956 --api 127.0.0.1:7957 --join 127.0.0.1:7946

  # after a crash or kill, the same node comes back with
  peerctl agent --data-dir /tmp/n2`,
		Description: `Runs a peerctl daemon in the foreground: it opens the store in --data-dir,
gossips with the members at --bind (serf), joins the cluster through any
--join address, and serves the HTTP API that the other commands call on
--api. It logs to stderr. SIGINT or SIGTERM, or "peerctl leave NAME", makes
it leave the cluster gracefully and exit with status 0; a second signal
kills it at once.

On start it saves --name, --bind, --advertise, --api, --profile and --join
to DIR/agent.json (never the --encrypt key). A later start with the same
--data-dir takes every one of those flags that is not given explicitly (on
the command line or in its PEERCTL_* variable) from that file, so the node
returns with the same name and ports; explicit flags override, and the file
is updated to match. Every flag can be set by the environment variable
PEERCTL_<FLAG>, e.g. PEERCTL_DATA_DIR.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", EnvVars: env("name"), Value: def.Name, DefaultText: "the host name",
				Usage: "node `NAME`, unique in the cluster"},
			&cli.StringFlag{Name: "bind", EnvVars: env("bind"), Value: def.Bind,
				Usage: "gossip address `HOST:PORT` to listen on, UDP and TCP"},
			&cli.StringFlag{Name: "advertise", EnvVars: env("advertise"), DefaultText: "--bind",
				Usage: "gossip address `HOST:PORT` the others should use"},
			&cli.StringFlag{Name: "api", EnvVars: env("api"), Value: def.API,
				Usage: "HTTP API address `HOST:PORT` to listen on; client commands call it (--addr)"},
			&cli.StringSliceFlag{Name: "join", EnvVars: env("join"),
				Usage: "gossip address `HOST:PORT` of a member to join; repeat for more, retried until one answers"},
			&cli.StringFlag{Name: "data-dir", EnvVars: env("data-dir"),
				Usage: "`DIR` for this node's store, membership snapshot and agent.json; one daemon per DIR (required)"},
			&cli.StringFlag{Name: "encrypt", EnvVars: env("encrypt"),
				Usage: "base64 gossip encryption `KEY`, the same on every member (make one with `peerctl keygen`)"},
			&cli.StringFlag{Name: "token", EnvVars: env("token"),
				Usage: "API `TOKEN`: every request must carry Authorization: Bearer TOKEN; the same on every member (daemons send it to each other) and client (--token)"},
			&cli.BoolFlag{Name: "insecure-api", EnvVars: env("insecure-api"),
				Usage: "allow --api off loopback without --token: anyone who reaches it can read, write and kill nodes"},
			&cli.StringFlag{Name: "api-tls-cert", EnvVars: env("api-tls-cert"),
				Usage: "serve the API over HTTPS with this PEM certificate `FILE` (with --api-tls-key); peers are then called over HTTPS"},
			&cli.StringFlag{Name: "api-tls-key", EnvVars: env("api-tls-key"),
				Usage: "PEM private key `FILE` of --api-tls-cert"},
			&cli.StringFlag{Name: "api-tls-ca", EnvVars: env("api-tls-ca"), DefaultText: "system roots and --api-tls-cert",
				Usage: "PEM `FILE` of the CA certificates this daemon trusts when it calls peers' HTTPS APIs"},
			&cli.StringFlag{Name: "profile", EnvVars: env("profile"), Value: def.Profile,
				Usage: "gossip timing `PROFILE`: local (many daemons on one machine, fast failure detection), lan or wan"},
			&cli.StringFlag{Name: "log-level", EnvVars: env("log-level"), Value: "info",
				Usage: "log `LEVEL`: debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", EnvVars: env("log-format"), Value: "text",
				Usage: "log `FORMAT`: text or json"},
			&cli.BoolFlag{Name: "sync-writes", EnvVars: env("sync-writes"),
				Usage: "fsync every write before acknowledging it, so it survives power loss (slower)"},
			&cli.DurationFlag{Name: "tombstone-ttl", EnvVars: env("tombstone-ttl"), Value: def.TombstoneTTL,
				Usage: "purge deletion tombstones after `DURATION`; a node away longer may bring deleted keys back"},
			&cli.DurationFlag{Name: "sync-interval", EnvVars: env("sync-interval"), Value: def.SyncInterval,
				Usage: "run anti-entropy with a random peer every `DURATION`"},
			&cli.DurationFlag{Name: "max-clock-skew", EnvVars: env("max-clock-skew"), Value: def.MaxClockSkew,
				Usage: "refuse peers' writes versioned more than `DURATION` ahead of this node's clock; a node whose clock is further behind refuses writes until it catches up"},
			&cli.DurationFlag{Name: "push-window", EnvVars: env("push-window"), Value: def.PushWindow,
				Usage: "wait up to `DURATION` to batch writes into one push per peer"},
			&cli.Uint64Flag{Name: "fault-seed", EnvVars: env("fault-seed"),
				Usage: "seed the fault layer's random choices (loss, jitter) with `N` so a run can be replayed"},
			&cli.IntFlag{Name: "bootstrap-expect", EnvVars: env("bootstrap-expect"), Value: def.BootstrapExpect,
				Usage: "form the raft group (consistent keys, locks) once `N` members are alive; 0: no raft server on this node"},
			&cli.IntFlag{Name: "voters", EnvVars: env("voters"), Value: def.Voters,
				Usage: "at most `V` raft voters; the other members are non-voters"},
			&cli.BoolFlag{Name: "pprof", EnvVars: env("pprof"),
				Usage: "serve Go profiles (heap, goroutines, traces) at /debug/pprof on the API; off by default"},
			&cli.IntFlag{Name: "max-conns", EnvVars: env("max-conns"), DefaultText: "1024, at most a quarter of the open-file limit",
				Usage: "accept at most `N` concurrent API connections; more get 503 and are closed"},
			&cli.BoolFlag{Name: "resync", EnvVars: env("resync"),
				Usage: "recover a damaged store: move DIR/store aside to DIR/store.damaged-TIME (kept) and start empty, refilling from peers; give it once, not in a unit file"},
			&cli.Uint64Flag{Name: "min-free-mib", EnvVars: env("min-free-mib"), Value: def.MinFreeSpace >> 20,
				Usage: "refuse writes (HTTP 507) while the data dir's disk has less than `MIB` MiB free, so badger never fills it (Linux; 0 disables)"},
			&cli.BoolFlag{Name: "trace-arrivals", EnvVars: env("trace-arrivals"),
				Usage: "record when each key first became readable here, for peerctl bench (GET /v1/debug/arrivals)"},
		},
		Action: func(c *cli.Context) error { return runAgent(c, create) },
	}
}

// agentMemoryLimit is the daemon's default soft memory limit (GOMEMLIMIT):
// a bound on runaway growth, well above what a daemon with 100,000 keys
// uses, so it does not slow writes; an idle daemon returns its garbage to
// the OS by itself (daemon.Agent's maintenance loop).
const agentMemoryLimit = 256 << 20

// runAgent builds the config from flags and agent.json, starts the daemon
// and blocks until the context is cancelled (SIGINT, SIGTERM) or a leave
// requested over the API has finished, then leaves and shuts down.
func runAgent(c *cli.Context, create createFunc) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	log, err := newLogger(c.App.ErrWriter, c.String("log-level"), c.String("log-format"))
	if err != nil {
		return err
	}
	dir := c.String("data-dir")
	saved, err := loadSaved(dir)
	if err != nil {
		return err
	}
	eff := effectiveSaved(c, saved)

	cfg := daemon.DefaultConfig()
	cfg.Name, cfg.Bind, cfg.Advertise, cfg.API = eff.Name, eff.Bind, eff.Advertise, eff.API
	cfg.Profile, cfg.Join = eff.Profile, eff.Join
	cfg.DataDir = dir
	cfg.EncryptKey = c.String("encrypt")
	cfg.Token = c.String("token")
	cfg.InsecureAPI = c.Bool("insecure-api")
	cfg.APITLSCert, cfg.APITLSKey, cfg.APITLSCA = c.String("api-tls-cert"), c.String("api-tls-key"), c.String("api-tls-ca")
	cfg.SyncWrites = c.Bool("sync-writes")
	cfg.TombstoneTTL = c.Duration("tombstone-ttl")
	cfg.SyncInterval = c.Duration("sync-interval")
	cfg.PushWindow = c.Duration("push-window")
	cfg.MaxClockSkew = c.Duration("max-clock-skew")
	cfg.FaultSeed = c.Uint64("fault-seed")
	cfg.TraceArrivals = c.Bool("trace-arrivals")
	cfg.Pprof = c.Bool("pprof")
	cfg.BootstrapExpect, cfg.Voters = c.Int("bootstrap-expect"), c.Int("voters")
	cfg.Limits.MaxConns = c.Int("max-conns")
	cfg.Resync = c.Bool("resync")
	if m := c.Uint64("min-free-mib"); m > 1<<30 {
		return fmt.Errorf("--min-free-mib %d: more than 1 PiB", m)
	}
	cfg.MinFreeSpace = c.Uint64("min-free-mib") << 20
	cfg.Logger = log
	left := make(chan struct{})
	var once sync.Once
	cfg.OnLeave = func() { once.Do(func() { close(left) }) }
	if cfg.TombstoneTTL <= 0 {
		return fmt.Errorf("--tombstone-ttl %s: must be positive", cfg.TombstoneTTL)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit keeps many daemons on one machine small: the
		// collector runs more often as the heap nears it, and never fails
		// an allocation. GOMEMLIMIT overrides it.
		debug.SetMemoryLimit(agentMemoryLimit)
	}
	a, err := create(cfg)
	if err != nil {
		return err
	}
	if saved != nil {
		log.Info("took unset flags from saved config", "file", savedPath(dir))
	}
	if !eff.equal(saved) {
		if err := writeSaved(dir, eff); err != nil {
			return errors.Join(err, stopAgent(a))
		}
	}

	select {
	case <-c.Context.Done():
		log.Info("signal received: leaving the cluster; signal again to exit at once")
	case <-left:
	}
	return stopAgent(a)
}

// stopAgent leaves (a no-op if a leave already happened) and shuts down.
func stopAgent(a agent) error {
	var errs []error
	if err := a.Leave(); err != nil {
		errs = append(errs, fmt.Errorf("leave: %w", err))
	}
	if err := a.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("shutdown: %w", err))
	}
	return errors.Join(errs...)
}

// newLogger returns a logger to w with the --log-level and --log-format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "info":
		lv = slog.LevelInfo
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
