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
		// memberSignalSink turns memberlist's state changes into member
		// events (events_member.go).
		if _, err := gometrics.NewGlobal(cfg, gometrics.FanoutSink{sink, memberSignalSink{}}); err != nil {
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
	reg.MustRegister(replCollector{a.repl})
	g := a.gcounters
	counter("peerctl_gossip_packets_sent_total", "Membership UDP packets sent (after the fault layer).", g.packetsSent.Load, nil)
	counter("peerctl_gossip_packets_received_total", "Membership UDP packets received.", g.packetsRecv.Load, nil)
	counter("peerctl_gossip_bytes_sent_total", "Membership UDP bytes sent.", g.bytesSent.Load, nil)
	counter("peerctl_gossip_bytes_received_total", "Membership UDP bytes received.", g.bytesRecv.Load, nil)
	counter("peerctl_gossip_streams_opened_total", "Membership TCP streams this node opened.", g.streamsOut.Load, nil)
	counter("peerctl_gossip_streams_accepted_total", "Membership TCP streams this node accepted.", g.streamsIn.Load, nil)
	counter("peerctl_writes_total", "Local writes (puts and deletes) acknowledged.", a.writes.Load, nil)
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
