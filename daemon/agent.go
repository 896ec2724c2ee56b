package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/peerctl/peerctl/store"
	"github.com/peerctl/peerctl/store/badger"
)

// Serf tags every agent sets.
const (
	tagAPI     = "api" // HTTP API address others reach this node at
	tagVersion = "ver"
)

// Agent is one peerctl daemon: serf for membership and failure detection,
// a store, the replicator, and the HTTP API. Create starts it; Leave and
// Shutdown stop it. Its methods are safe for concurrent use.
type Agent struct {
	cfg       *Config
	log       *slog.Logger
	st        *store.Store
	be        *badger.Backend
	disk      *diskGuard // nil in memory
	serf      *serf.Serf
	repl      *replicator
	ht        *httpTransport
	ft        *faultTransport
	transport Transport // the replication transport, fault layer included
	coord     *coord    // the raft group: raft.go
	counters  *counters
	gcounters *gossipCounters
	faults    *Faults
	fstate    *faultState // the cluster's fault table: faultsync.go
	rejoining atomic.Bool // a rejoin after a heal is under way
	writes    atomic.Uint64
	addrNames sync.Map // gossip "ip:port" -> node name, for the fault layer
	http      *httpServer
	apiAddr   string // advertised API address
	gossip    string // advertised gossip address
	startedAt time.Time

	// Security (auth.go, keyring.go).
	keyring *memberlist.Keyring // gossip keyring, shared with memberlist; nil without --encrypt
	seal    *sealer             // replication envelope (envelope.go); nil without a keyring
	apiTLS  sync.Map            // peer API host:port -> advertises tls=1 (serf tags)
	peerRT  http.RoundTripper   // daemon-to-daemon HTTP: token, TLS
	// eventsHC opens members' event streams for ?cluster=1 (events_cluster.go)
	eventsHC *http.Client

	// Known members (known.go): loaded at start, rewritten by knownLoop.
	knownMu    sync.Mutex
	known      []knownMember     // guarded by knownMu
	snapAddrs  map[string]string // serf snapshot's members at start: name -> gossip addr
	knownDirty chan struct{}     // membership changed; knownLoop saves

	events *eventHub    // GET /v1/events (events.go)
	feeds  clusterFeeds // merged streams' shared member streams (events_cluster.go)

	eventCh chan serf.Event
	stopCh  chan struct{}
	wg      sync.WaitGroup
	bg      *workers // one-off goroutines (a rejoin after a heal); Shutdown cancels and waits

	shutdownOnce sync.Once
	shutdownErr  error
	leaveOnce    sync.Once
	leaveErr     error
}

// Create opens the store, starts serf and the HTTP API and returns a
// running Agent. Each error is one line that says what to do.
func Create(cfg *Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Logger,
		counters:  newCounters(),
		gcounters: &gossipCounters{},
		faults:    NewFaults(cfg.FaultSeed),
		eventCh:   make(chan serf.Event, 1024),
		stopCh:    make(chan struct{}),
		bg:        newWorkers(),
		startedAt: time.Now(),
		events:    newEventHub(cfg.Name),
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("node", cfg.Name)

	if err := a.openKeyring(); err != nil {
		return nil, err
	}
	peerRT, err := a.newPeerTransport(&http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second})
	if err != nil {
		return nil, err
	}
	a.peerRT = peerRT
	eventsRT, err := a.newPeerTransport(newEventsTransport())
	if err != nil {
		return nil, err
	}
	a.eventsHC = &http.Client{Transport: eventsRT}
	ln, err := net.Listen("tcp", cfg.API)
	if err != nil {
		return nil, listenError("--api", cfg.API, err)
	}
	if err := a.openStore(); err != nil {
		ln.Close()
		return nil, err
	}
	// The members this node has known: whom to ask for the fault table
	// now, and whom to join once serf runs.
	a.loadKnown()
	// The faults in force apply before anything is sent: a node restarted
	// behind a partition must not slip through while it starts.
	if err := a.openFaults(); err != nil {
		ln.Close()
		a.st.Close()
		return nil, err
	}
	// Replication transport: HTTP, counted, then the fault layer, which
	// decides first whether a message is sent at all.
	// Received messages come back up the same chain (SetHandler), through
	// the fault layer's receive rules, to the replicator.
	a.ht = newHTTPTransport(a.cfg.Name, a.cfg.Limits, a.log)
	if err := a.ht.secure(a.seal, a.newPeerTransport); err != nil {
		ln.Close()
		a.st.Close()
		return nil, err
	}
	a.ft = newFaultTransport(&countingTransport{next: a.ht, c: a.counters}, a.faults)
	var tr Transport = a.ft
	if cfg.WrapTransport != nil {
		tr = cfg.WrapTransport(tr)
	}
	a.repl = newReplicator(a.st, tr, a.counters, a.log, cfg.PushWindow, cfg.SyncInterval)
	a.repl.events = a.events
	a.ht.report(a.repl.warns, a.repl.dropped)
	a.transport = tr
	a.coord = newCoord(a, tr)
	tr.SetHandler(&kindMux{repl: a.repl, coord: a.coord}) // raft-* kinds to the raft side: coord.go
	if cfg.TraceArrivals {
		a.repl.arrivals = &arrivals{}
	}
	a.http, err = newHTTPServer(a, ln)
	if err != nil {
		ln.Close()
		a.st.Close()
		return nil, err
	}
	a.apiAddr = advertisedAPI(ln.Addr().String(), cfg)
	if err := a.startSerf(); err != nil {
		ln.Close()
		a.st.Close()
		return nil, err
	}
	a.gossip = a.serf.LocalMember().Addr.String() + ":" + strconv.Itoa(int(a.serf.LocalMember().Port))
	for _, m := range a.serf.Members() {
		a.coord.memberChanged(m)
	}
	if err := a.coord.start(); err != nil {
		a.serf.Shutdown()
		ln.Close()
		a.st.Close()
		return nil, err
	}
	a.http.start()
	a.repl.start()
	a.wg.Add(3)
	go a.eventLoop()
	go a.maintain()
	go a.faultSyncLoop()
	a.startMemberEvents()
	for _, m := range a.serf.Members() {
		a.memberChanged(m)
	}
	if !cfg.InMemory {
		a.wg.Add(1)
		go a.knownLoop()
	}
	if addrs := a.joinAddrs(); len(addrs) > 0 {
		a.wg.Add(1)
		go a.joinLoop(addrs)
	}
	a.log.Info("agent started", "gossip", a.gossip, "api", a.apiAddr, "data_dir", cfg.DataDir, "profile", cfg.Profile, "encrypted", a.keyring != nil,
		"token", cfg.Token != "", "tls", cfg.APITLSCert != "")
	a.warnExposure()
	return a, nil
}

func listenError(flag, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s: address already in use (another agent running? pick a free port)", flag, addr)
	}
	return fmt.Errorf("%s %s: %w", flag, addr, err)
}

// openStore opens the store: --resync first moves a damaged one aside;
// free space decides between a normal and a read-only open (disk.go);
// damage is refused with the way out; the clean-stop record is compared.
func (a *Agent) openStore() error {
	var opts badger.Options
	opts.SyncWrites = a.cfg.SyncWrites
	opts.InMemory = a.cfg.InMemory
	opts.Logger = a.log
	dir := ""
	if !a.cfg.InMemory {
		if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("--data-dir %s: %w", a.cfg.DataDir, err)
		}
		dir = filepath.Join(a.cfg.DataDir, "store")
		if a.cfg.Resync {
			to, err := moveAside(dir, time.Now())
			if errors.Is(err, badger.ErrLocked) {
				return fmt.Errorf("--resync: --data-dir %s is in use by another running agent: stop it first", a.cfg.DataDir)
			}
			if err != nil {
				return fmt.Errorf("--resync: %w", err)
			}
			os.Remove(filepath.Join(a.cfg.DataDir, cleanStopFile))
			if to == "" {
				a.log.Info("--resync: no store to move aside; starting empty and refilling from peers")
			} else {
				a.log.Warn("--resync: moved the store aside (kept, delete it yourself once the node has caught up); starting empty and refilling from peers", "moved_to", to)
			}
		}
		if a.cfg.MinFreeSpace > 0 {
			a.disk = newDiskGuard(a.cfg.DataDir, a.cfg.MinFreeSpace, a.log)
			opts.BeforeWrite = a.disk.check
			if free, ok := a.disk.read(); ok && free < openFloor {
				opts.ReadOnly = true
			}
		}
	}
	be, err := badger.Open(dir, opts)
	if err != nil && opts.ReadOnly && !errors.Is(err, badger.ErrLocked) && !errors.Is(err, badger.ErrDamaged) {
		// Badger opens read-only only a store stopped cleanly: after a
		// crash it must replay and truncate its memtable log.
		why := "badger cannot open it read-only"
		if strings.Contains(err.Error(), "truncate required") {
			why = "it was not stopped cleanly, so badger must write to open it"
		}
		free, _ := a.disk.read()
		return fmt.Errorf("--data-dir %s: the disk is full (%s free, %s needed to open the store for writing) and %s: free some space and start again; nothing was changed",
			a.cfg.DataDir, mib(free), mib(openFloor), why)
	}
	if err == nil && opts.ReadOnly {
		a.log.Error("disk full at start: store opened read-only, serving reads and refusing writes (507); free space and restart the agent to accept writes",
			"dir", a.cfg.DataDir, "need", mib(openFloor))
	}
	if err != nil {
		if errors.Is(err, badger.ErrLocked) {
			return fmt.Errorf("--data-dir %s is in use by another running agent: stop it or choose another --data-dir", a.cfg.DataDir)
		}
		if errors.Is(err, badger.ErrDamaged) {
			return fmt.Errorf("--data-dir %s: refusing to start: %w; nothing was changed. To recover, start once with --resync: it moves the store to %s.damaged-TIME (kept) and refills this node from its peers", a.cfg.DataDir, err, dir)
		}
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			// Not damage: --resync would not help (and could not move it).
			return fmt.Errorf("open store in %s: %w: the data dir must be writable by this user; nothing was changed", a.cfg.DataDir, err)
		}
		return fmt.Errorf("open store in %s: %w (if its files are damaged, start once with --resync to move it aside and refill from peers)", a.cfg.DataDir, err)
	}
	st, err := store.Open(be, store.Config{Node: a.cfg.Name, TombstoneTTL: a.cfg.TombstoneTTL, MaxClockSkew: a.cfg.MaxClockSkew})
	if err != nil {
		be.Close()
		return err
	}
	// Records set aside on load are missing from the digest, so
	// anti-entropy fetches good copies from peers.
	for _, q := range st.Quarantined() {
		a.log.Warn("stored record set aside; a peer's copy will replace it", "key", q.Key, "reason", q.Reason, "quarantine_err", q.Err)
	}
	if n := st.Stats().Quarantined; n > len(st.Quarantined()) {
		a.log.Warn("more stored records set aside than listed", "total", n, "listed", len(st.Quarantined()))
	}
	a.st, a.be = st, be
	if !a.cfg.InMemory {
		a.checkCleanStop()
	}
	return nil
}

// checkCleanStop compares the store with the record of the last clean
// stop and warns when entries went missing since, and reports quarantined
// records.
func (a *Agent) checkCleanStop() {
	q := a.be.QuarantinedCount()
	if q > 0 {
		a.log.Warn("store holds quarantined records: they were damaged on disk and set aside; anti-entropy refills them from peers", "quarantined", q)
	}
	cs, ok, err := readCleanStop(a.cfg.DataDir)
	if err != nil {
		a.log.Warn("ignoring the clean-stop record", "err", err)
		return
	}
	st := a.st.Stats()
	if ok && st.Keys+st.Tombstones < cs.Keys+cs.Tombstones {
		a.log.Error("store holds fewer entries than at the last clean stop: data was lost on disk. Peers refill what they hold by anti-entropy; if the store is damaged, restart with --resync",
			"entries_now", st.Keys+st.Tombstones, "entries_at_stop", cs.Keys+cs.Tombstones, "stopped_at", cs.StoppedAt, "quarantined", q)
	}
}

func (a *Agent) startSerf() error {
	mc, err := profileConfig(a.cfg.Profile)
	if err != nil {
		return err
	}
	host, port, _ := splitHostPort(a.cfg.Bind)
	// Check the port first: memberlist's own error is long and unclear.
	if port != 0 {
		if err := probePort(host, port); err != nil {
			return listenError("--bind", a.cfg.Bind, err)
		}
	}
	logger := log.New(&logWriter{log: a.log}, "", 0)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: logger})
	if err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			return listenError("--bind", a.cfg.Bind, syscall.EADDRINUSE)
		}
		return fmt.Errorf("start gossip on %s: %w", a.cfg.Bind, err)
	}
	gt := newGossipTransport(nt, a.faults, a.gcounters, func(addr string) string {
		if v, ok := a.addrNames.Load(addr); ok {
			return v.(string)
		}
		return ""
	})
	mc.Transport = gt
	mc.BindAddr, mc.BindPort = host, nt.GetAutoBindPort()
	if a.cfg.Advertise != "" {
		h, p, _ := splitHostPort(a.cfg.Advertise)
		mc.AdvertiseAddr, mc.AdvertisePort = h, p
	}
	a.apiAddr = apiOnGossipIP(a.apiAddr, a.cfg, nt)
	mc.Keyring = a.keyring // keyring.go: from --encrypt or the saved keyring
	// A node that crashed and comes back on another address may take its
	// name back once it has been dead this long (otherwise memberlist
	// rejects it as a name conflict until the old entry is reaped).
	mc.DeadNodeReclaimTime = 5 * time.Second
	mc.Logger = logger

	sc := serf.DefaultConfig()
	sc.NodeName = a.cfg.Name
	sc.MemberlistConfig = mc
	sc.Logger = logger
	sc.EventCh = a.eventCh
	sc.Tags = map[string]string{tagAPI: a.apiAddr, tagVersion: Version}
	if a.cfg.APITLSCert != "" {
		sc.Tags[tagTLS] = "1"
	}
	sc.KeyringFile = a.keyringFile() // serf rewrites it on every key change
	sc.ReconnectInterval = a.cfg.ReconnectInterval
	sc.ReconnectTimeout = 72 * time.Hour
	sc.TombstoneTimeout = 24 * time.Hour
	sc.RejoinAfterLeave = true
	// Cap how long a graceful leave waits for its broadcast to go out
	// (serf's default is 5 s, twice when no peer is left to tell).
	sc.BroadcastTimeout = 2 * time.Second
	if !a.cfg.InMemory {
		sc.SnapshotPath = filepath.Join(a.cfg.DataDir, "serf.snapshot")
	}
	s, err := serf.Create(sc)
	if err != nil {
		gt.abort()
		if strings.Contains(err.Error(), "address already in use") {
			return listenError("--bind", a.cfg.Bind, syscall.EADDRINUSE)
		}
		return fmt.Errorf("start gossip on %s: %w", a.cfg.Bind, err)
	}
	a.serf = s
	return nil
}

// probePort checks that both the TCP and UDP gossip ports are free.
func probePort(host string, port int) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	u.Close()
	return nil
}

// advertisedAPI is the API address to put in serf tags: the listen address,
// with an unspecified host replaced by the gossip advertise host.
func advertisedAPI(listen string, cfg *Config) string {
	h, p, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		adv := cfg.Advertise
		if adv == "" {
			adv = cfg.Bind
		}
		ah, _, _ := net.SplitHostPort(adv)
		if aip := net.ParseIP(ah); ah != "" && (aip == nil || !aip.IsUnspecified()) {
			h = ah
		} else {
			h = "127.0.0.1"
		}
	}
	return net.JoinHostPort(h, p)
}

// apiOnGossipIP fixes the advertised API address of an agent whose API and
// gossip both listen on an unspecified address (0.0.0.0, as in a
// container) with no --advertise: advertisedAPI then falls back to
// 127.0.0.1, which peers cannot reach, so take the private IP memberlist
// advertises for gossip instead. Any other address is returned as is.
func apiOnGossipIP(api string, cfg *Config, nt *memberlist.NetTransport) string {
	h, p, err := net.SplitHostPort(api)
	bh, _, _ := splitHostPort(cfg.Bind)
	if err != nil || cfg.Advertise != "" || h != "127.0.0.1" {
		return api
	}
	if ah, _, _ := net.SplitHostPort(cfg.API); !isUnspecified(ah) || !isUnspecified(bh) {
		return api
	}
	ip, _, err := nt.FinalAdvertiseAddr("", 0)
	if err != nil || ip == nil || ip.IsUnspecified() {
		return api
	}
	return net.JoinHostPort(ip.String(), p)
}

// isUnspecified reports whether host is empty, 0.0.0.0 or ::.
func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// joinLoop joins the given addresses (--join, then the known members, then
// serf's snapshot: see joinAddrs), resolving names anew on every attempt
// and skipping this node's own address (resolve.go), retrying with exponential backoff, up to
// 15 s apart, until a join succeeds, the node has an alive peer (serf's
// own rejoin from its snapshot, or a peer that joined it), or the agent
// stops. Each attempt logs one line.
func (a *Agent) joinLoop(addrs []string) {
	defer a.wg.Done()
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if peers := a.alivePeers(); peers > 0 {
			a.log.Info("joined cluster", "alive_peers", peers, "attempts", attempt-1)
			return
		}
		// Names are looked up again on every attempt (resolve.go).
		targets, onlySelf, err := a.joinTargets(addrs)
		if onlySelf {
			a.log.Info("every join address is this node: waiting for others to join it")
			return
		}
		if len(targets) > 0 {
			n, jerr := a.serf.Join(targets, true)
			if n > 0 {
				a.log.Info("joined cluster", "contacted", n, "of", len(targets), "attempt", attempt)
				return
			}
			err = errors.Join(err, jerr)
		}
		a.log.Warn("join failed; retrying", "attempt", attempt, "addrs", len(addrs), "in", backoff, "err", oneLineErr(err))
		select {
		case <-time.After(backoff):
		case <-a.stopCh:
			return
		}
		backoff = min(backoff*2, 15*time.Second)
	}
}

func (a *Agent) eventLoop() {
	defer a.wg.Done()
	for {
		select {
		case ev := <-a.eventCh:
			me, ok := ev.(serf.MemberEvent)
			if !ok {
				continue
			}
			for _, m := range me.Members {
				a.log.Info("member "+me.Type.String(), "member", m.Name, "addr", net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))))
				a.memberChanged(m)
			}
			a.kickMemberWatch()
			select {
			case a.knownDirty <- struct{}{}:
			default: // a save is already pending
			}
		case <-a.stopCh:
			return
		}
	}
}

// memberChanged updates the replication peers from a member's status.
func (a *Agent) memberChanged(m serf.Member) {
	if m.Name == a.cfg.Name {
		return
	}
	a.addrNames.Store(net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))), m.Name)
	a.coord.memberChanged(m)
	api := m.Tags[tagAPI]
	if api != "" {
		a.apiTLS.Store(api, m.Tags[tagTLS] == "1")
	}
	if m.Status == serf.StatusAlive && api != "" {
		a.repl.setPeer(m.Name, api)
	} else {
		a.repl.removePeer(m.Name)
	}
}

// maintain purges old tombstones and collects badger's value log.
func (a *Agent) maintain() {
	defer a.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	var last, quiet uint64
	freed := true
	for {
		select {
		case <-idle.C:
			// Once writes stop, give the garbage of the burst back to
			// the OS: an idle daemon allocates too little to trigger a
			// collection for minutes, and a laptop runs many of them.
			// Under load the collector paces itself (no memory limit
			// slows the writes down).
			now := a.writes.Load() + a.repl.applied.Load()
			switch {
			case now != last:
				last, quiet, freed = now, 0, false
			case !freed:
				if quiet++; quiet >= 2 {
					debug.FreeOSMemory()
					freed = true
				}
			}
		case <-t.C:
			if n, err := a.st.Purge(); err != nil {
				a.log.Warn("purge tombstones", "err", err)
			} else if n > 0 {
				a.log.Info("purged tombstones", "count", n, "older_than", a.cfg.TombstoneTTL)
			}
			if a.disk != nil && a.disk.check(0) != nil {
				continue // value-log GC writes new files
			}
			if err := a.be.RunGC(); err != nil {
				a.log.Warn("badger value log gc", "err", err)
			}
		case <-a.stopCh:
			return
		}
	}
}

// Name returns the node's name.
func (a *Agent) Name() string { return a.cfg.Name }

// APIAddr returns the advertised HTTP API address.
func (a *Agent) APIAddr() string { return a.apiAddr }

// GossipAddr returns the advertised gossip address.
func (a *Agent) GossipAddr() string { return a.gossip }

// Store returns the node's store.
func (a *Agent) Store() *store.Store { return a.st }

// Members returns the members as this node sees them. Serf reports a node
// under suspicion as alive; memberlist's own state tells it apart.
func (a *Agent) Members() []Member {
	suspect := suspects(a.serf.Memberlist())
	ms := a.serf.Members()
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		st := m.Status.String()
		if m.Status == serf.StatusAlive && suspect[m.Name] {
			st = "suspect"
		}
		tags := make(map[string]string, len(m.Tags))
		for k, v := range m.Tags {
			tags[k] = v
		}
		var fault string
		if m.Name != a.cfg.Name {
			fault = a.faults.Toward(m.Name)
		}
		out = append(out, Member{
			Fault:  fault,
			Name:   m.Name,
			Addr:   net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
			API:    m.Tags[tagAPI],
			Status: st,
			Tags:   tags,
		})
	}
	return out
}

// Put writes a key locally and replicates it.
func (a *Agent) Put(key string, value []byte) (store.Entry, error) {
	e, err := a.st.Put(key, value)
	if err == nil {
		a.writes.Add(1)
		a.events.writeEvent(e)
		a.repl.arrivals.record([]store.Entry{e})
		a.repl.broadcast(e)
	}
	return e, err
}

// Delete deletes a key locally and replicates the tombstone.
func (a *Agent) Delete(key string) (store.Entry, bool, error) {
	e, existed, err := a.st.Delete(key)
	if err == nil {
		a.writes.Add(1)
		a.events.writeEvent(e)
		a.repl.arrivals.record([]store.Entry{e})
		a.repl.broadcast(e)
	}
	return e, existed, err
}

// Leave leaves the cluster gracefully: the others see "left", not "failed".
// It is idempotent.
func (a *Agent) Leave() error {
	a.leaveOnce.Do(func() {
		a.log.Info("leaving cluster")
		a.coord.leave()
		if !a.repl.flush(2 * time.Second) {
			a.log.Warn("leaving with pushes still queued; peers get them by anti-entropy when this node is back", "pending", a.repl.pending())
		}
		a.leaveErr = a.serf.Leave()
	})
	return a.leaveErr
}

// Shutdown stops serf, replication and the API, and closes the store. It
// does not leave: call Leave first for a graceful exit. It is idempotent.
func (a *Agent) Shutdown() error {
	a.shutdownOnce.Do(func() {
		close(a.stopCh)
		a.events.close() // ends event streams, so the API can shut down
		a.coord.shutdown()
		var errs []error
		errs = append(errs, a.serf.Shutdown())
		a.bg.stop()  // after serf's, so no new join starts; one under way ends within memberlist's TCPTimeout
		a.ht.close() // ends streams, so the API can shut down
		a.ft.close() // drops delayed sends not yet due, waits for the rest
		a.http.stop()
		a.repl.stop()
		a.wg.Wait()
		st := a.st.Stats()
		cerr := a.st.Close()
		errs = append(errs, cerr)
		if cerr == nil && !a.cfg.InMemory {
			if err := writeCleanStop(a.cfg.DataDir, cleanStop{Keys: st.Keys, Tombstones: st.Tombstones, StoppedAt: time.Now().UTC()}); err != nil {
				a.log.Warn("could not record the clean stop; the next start cannot check for lost entries", "err", err)
			}
		}
		a.shutdownErr = errors.Join(errs...)
		a.log.Info("agent stopped")
	})
	return a.shutdownErr
}

// kill ends the process at once, or in tests stops the agent without
// leaving or flushing.
func (a *Agent) kill() {
	a.log.Warn("killed by request: exiting at once without leaving")
	if a.cfg.Kill != nil {
		a.cfg.Kill()
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// leaveAndExit leaves, shuts down, then tells the owner through OnLeave.
func (a *Agent) leaveAndExit() {
	if err := a.Leave(); err != nil {
		a.log.Warn("leave", "err", err)
	}
	a.Shutdown()
	if a.cfg.OnLeave != nil {
		a.cfg.OnLeave()
	}
}

// logWriter turns serf's and memberlist's "[LEVEL] text" log lines into
// slog records.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for _, l := range []struct {
		tag string
		lv  slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError}} {
		if i := strings.Index(line, l.tag); i >= 0 {
			level = l.lv
			line = strings.TrimSpace(line[i+len(l.tag):])
			break
		}
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)
