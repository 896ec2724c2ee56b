package daemon

// One snapshot of the replicator's counters is the single source for every
// place that reports them: /v1/info (and so the CLI's info command, which
// prints the API's ReplicationStats) and /metrics read replStats, never the
// counters themselves.

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// replStats is one reading of the replication counters.
type replStats struct {
	ReplicationStats                      // what /v1/info reports
	Kinds            map[string]kindStats // messages and bytes by kind
	Drops            map[string]uint64    // malformed input by reason; they sum to MalformedDropped
}

// kindStats counts one kind of replication message.
type kindStats struct{ MsgsSent, MsgsRecv, BytesSent, BytesRecv uint64 }

// stats reads every replication counter once. Safe for concurrent use;
// counters moving during the read may be a message apart from each other.
func (r *replicator) stats() replStats {
	s := replStats{
		ReplicationStats: ReplicationStats{
			MsgsSent: r.c.msgsSent.Load(), MsgsReceived: r.c.msgsRecv.Load(),
			BytesSent: r.c.bytesSent.Load(), BytesReceived: r.c.bytesRecv.Load(),
			PushesSent: r.pushesSent.Load(), PushesFailed: r.pushesFailed.Load(),
			EntriesPushed: r.entriesPush.Load(), EntriesApplied: r.applied.Load(),
			SyncRounds: r.syncRounds.Load(), SyncRepaired: r.repaired.Load(),
			Pending: r.pending(), LagMillis: r.lastLag.Load(), LagAvgMillis: r.avgLag.Load(),
		},
		Kinds: make(map[string]kindStats, len(r.c.kinds)),
		Drops: make(map[string]uint64, len(r.drops)),
	}
	if ms := r.lastSync.Load(); ms > 0 {
		s.LastSync = time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
	}
	for k, c := range r.c.kinds {
		s.Kinds[k] = kindStats{c.msgsSent.Load(), c.msgsRecv.Load(), c.bytesSent.Load(), c.bytesRecv.Load()}
	}
	for reason, c := range r.drops {
		n := c.Load()
		s.Drops[reason] = n
		s.MalformedDropped += n
	}
	return s
}

// replCollector exports one replStats reading per scrape to Prometheus.
type replCollector struct{ r *replicator }

var (
	descMsgsSent  = prometheus.NewDesc("peerctl_replication_messages_sent_total", "Replication messages sent (requests and replies).", []string{"kind"}, nil)
	descMsgsRecv  = prometheus.NewDesc("peerctl_replication_messages_received_total", "Replication messages received (requests and replies).", []string{"kind"}, nil)
	descBytesSent = prometheus.NewDesc("peerctl_replication_bytes_sent_total", "Replication message bytes sent.", []string{"kind"}, nil)
	descBytesRecv = prometheus.NewDesc("peerctl_replication_bytes_received_total", "Replication message bytes received.", []string{"kind"}, nil)
	descPushes    = prometheus.NewDesc("peerctl_pushes_sent_total", "Push messages delivered to peers.", nil, nil)
	descPushFails = prometheus.NewDesc("peerctl_push_failures_total", "Push messages that failed (repaired by anti-entropy).", nil, nil)
	descApplied   = prometheus.NewDesc("peerctl_entries_applied_total", "Remote entries that changed this store.", nil, nil)
	descRounds    = prometheus.NewDesc("peerctl_sync_rounds_total", "Anti-entropy rounds this node started.", nil, nil)
	descRepaired  = prometheus.NewDesc("peerctl_sync_repaired_total", "Entries fetched by anti-entropy.", nil, nil)
	descMalformed = prometheus.NewDesc("peerctl_malformed_messages_total", "Replication messages and stream frames from peers dropped, by reason (frame, oversize, truncated, decode, refused); info's malformed_dropped is their sum.", []string{"reason"}, nil)
	descLag       = prometheus.NewDesc("peerctl_replication_lag_ms", "Age of the newest remote entry when it arrived.", nil, nil)
	descPending   = prometheus.NewDesc("peerctl_pending_entries", "Entries queued for peers, not yet sent.", nil, nil)
)

func (c replCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMsgsSent, descMsgsRecv, descBytesSent, descBytesRecv, descPushes, descPushFails,
		descApplied, descRounds, descRepaired, descMalformed, descLag, descPending} {
		ch <- d
	}
}

func (c replCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for kind, k := range s.Kinds {
		counter(descMsgsSent, k.MsgsSent, kind)
		counter(descMsgsRecv, k.MsgsRecv, kind)
		counter(descBytesSent, k.BytesSent, kind)
		counter(descBytesRecv, k.BytesRecv, kind)
	}
	counter(descPushes, s.PushesSent)
	counter(descPushFails, s.PushesFailed)
	counter(descApplied, s.EntriesApplied)
	counter(descRounds, s.SyncRounds)
	counter(descRepaired, s.SyncRepaired)
	for reason, n := range s.Drops {
		counter(descMalformed, n, reason)
	}
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(s.LagMillis))
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(s.Pending))
}
