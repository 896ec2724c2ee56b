package daemon

// GET /metrics serves Prometheus text format: the agent's own counters
// (replication messages and bytes by kind, gossip packets and streams
// counted at the memberlist transport, writes, merges, anti-entropy rounds,
// replication lag), serf's and memberlist's own metrics through go-metrics'
// Prometheus sink, and the Go runtime's.

import (
	"net/http"
	"sync"

	gometrics "github.com/hashicorp/go-metrics"
	gmprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serfSink receives serf's and memberlist's metrics. go-metrics has one
// global registry per process, so the sink is shared by every agent in the
// process (one in production; several in tests).
var (
	serfSinkOnce sync.Once
	serfSink     *gmprom.PrometheusSink
)

func sharedSerfSink() *gmprom.PrometheusSink {
	serfSinkOnce.Do(func() {
		sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: prometheus.NewRegistry()})
		if err != nil {
			return
		}
		cfg := gometrics.DefaultConfig("peerctl")
		cfg.EnableHostname = false
		cfg.EnableRuntimeMetrics = false
		if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
			return
		}
		serfSink = sink
	})
	return serfSink
}

func (a *Agent) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if sink := sharedSerfSink(); sink != nil {
		reg.MustRegister(sink)
	}
	counter := func(name, help string, f func() uint64, labels prometheus.Labels) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) }))
	}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	for kind, k := range a.counters.kinds {
		l := prometheus.Labels{"kind": kind}
		counter("peerctl_replication_messages_sent_total", "Replication messages sent (requests and replies).", k.msgsSent.Load, l)
		counter("peerctl_replication_messages_received_total", "Replication messages received (requests and replies).", k.msgsRecv.Load, l)
		counter("peerctl_replication_bytes_sent_total", "Replication message bytes sent.", k.bytesSent.Load, l)
		counter("peerctl_replication_bytes_received_total", "Replication message bytes received.", k.bytesRecv.Load, l)
	}
	g := a.gcounters
	counter("peerctl_gossip_packets_sent_total", "Membership UDP packets sent (after the fault layer).", g.packetsSent.Load, nil)
	counter("peerctl_gossip_packets_received_total", "Membership UDP packets received.", g.packetsRecv.Load, nil)
	counter("peerctl_gossip_bytes_sent_total", "Membership UDP bytes sent.", g.bytesSent.Load, nil)
	counter("peerctl_gossip_bytes_received_total", "Membership UDP bytes received.", g.bytesRecv.Load, nil)
	counter("peerctl_gossip_streams_opened_total", "Membership TCP streams this node opened.", g.streamsOut.Load, nil)
	counter("peerctl_gossip_streams_accepted_total", "Membership TCP streams this node accepted.", g.streamsIn.Load, nil)
	r := a.repl
	counter("peerctl_writes_total", "Local writes (puts and deletes) acknowledged.", a.writes.Load, nil)
	counter("peerctl_pushes_sent_total", "Push messages delivered to peers.", r.pushesSent.Load, nil)
	counter("peerctl_push_failures_total", "Push messages that failed (repaired by anti-entropy).", r.pushesFailed.Load, nil)
	counter("peerctl_entries_applied_total", "Remote entries that changed this store.", r.applied.Load, nil)
	counter("peerctl_sync_rounds_total", "Anti-entropy rounds this node started.", r.syncRounds.Load, nil)
	counter("peerctl_sync_repaired_total", "Entries fetched by anti-entropy.", r.repaired.Load, nil)
	for reason, c := range r.drops {
		counter("peerctl_malformed_messages_total", "Replication messages and stream frames from peers dropped, by reason (frame, oversize, truncated, decode, refused); info's malformed_dropped is their sum.",
			c.Load, prometheus.Labels{"reason": reason})
	}
	gauge("peerctl_replication_lag_ms", "Age of the newest remote entry when it arrived.", func() float64 { return float64(r.lastLag.Load()) })
	gauge("peerctl_pending_entries", "Entries queued for peers, not yet sent.", func() float64 { return float64(r.pending()) })
	gauge("peerctl_keys", "Live keys held.", func() float64 { return float64(a.st.Stats().Keys) })
	gauge("peerctl_tombstones", "Tombstones held.", func() float64 { return float64(a.st.Stats().Tombstones) })
	counter("peerctl_corrupt_replaced_total", "Entries replaced by a peer's copy of the same version with other bytes.", func() uint64 { return a.st.Stats().Corrupt }, nil)
	counter("peerctl_quarantined_total", "Stored records set aside since start (damaged or too far ahead).", func() uint64 { return uint64(a.st.Stats().Quarantined) }, nil)
	gauge("peerctl_fault_rules", "Fault rules active on this node.", func() float64 { return float64(len(a.faults.Rules())) })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "peerctl_members_alive", Help: "Members this node sees alive."},
		func() float64 {
			n := 0
			for _, m := range a.Members() {
				if m.Status == "alive" {
					n++
				}
			}
			return float64(n)
		}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
