package admin

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/securechat/securechat/appliance"
)

// Metrics exposes the server's counters to Prometheus (docs/design.md §5), read at
// scrape time from the same snapshot the stats API returns, plus the Go
// runtime and process collectors. It is served at /metrics behind the admin
// token like every other route. The snapshot is taken with the scrape's
// request context, before the collectors run (a Collect has no context).
func metricsHandler(srv Server) http.Handler {
	runtime := prometheus.NewRegistry()
	runtime.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap, err := srv.Snapshot(r.Context())
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		counters := prometheus.NewRegistry()
		counters.MustRegister(snapshotCollector{snap})
		promhttp.HandlerFor(prometheus.Gatherers{runtime, counters}, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	})
}

type metric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(s appliance.StatsSnapshot) float64
}

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("securechat_"+name, help, nil, nil)
}

var metrics = []metric{
	{desc("connections", "Open client connections."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.Connections) }},
	{desc("connections_accepted_total", "Connections accepted since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.Accepted) }},
	{desc("messages_in_total", "Messages durably stored since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.MessagesIn) }},
	{desc("bytes_in_total", "Payload bytes of the messages stored since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.BytesIn) }},
	{desc("bytes_out_total", "Payload bytes pushed to devices since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.BytesOut) }},
	{desc("uptime_seconds", "Seconds since the server started."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.UptimeSeconds) }},
	{desc("deliveries_total", "Mailbox entries pushed to devices since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.Deliveries) }},
	{desc("auth_failures_total", "Failed authentications since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.AuthFailed) }},
	{desc("refused_banned_total", "Connections refused for a ban since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.Refused) }},
	{desc("rate_limited_total", "Requests and connections refused by a rate limit since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.Limited) }},
	{desc("signals_dropped_total", "Signals and keys-low notices dropped for a device that does not read them."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.Dropped) }},
	{desc("queue_depth", "Messages waiting in mailboxes."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.QueueDepth) }},
	{desc("group_messages_total", "Group messages durably stored since start (counted in messages_in_total too)."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.GroupMessages) }},
	{desc("groups", "Group ids the server keeps records of (a group silent for mailbox_ttl is dropped)."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.Groups) }},
	{desc("shared_payload_bytes", "Bytes of the group messages' shared payloads, each stored once."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.SharedBytes) }},
	{desc("blobs", "Encrypted files stored, waiting for their recipients."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.Blobs) }},
	{desc("blob_bytes", "Bytes the encrypted files stored reserve (their whole sizes)."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.BlobBytes) }},
	{desc("blob_bytes_in_total", "Bytes of encrypted files uploaded since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.BlobBytesIn) }},
	{desc("blob_bytes_out_total", "Bytes of encrypted files downloaded since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.BlobBytesOut) }},
	{desc("bans", "Bans in force."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.Bans) }},
	{desc("store_damaged_total", "Store operations that met a damaged part of the store since start (each failed alone)."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.StoreDamaged) }},
	{desc("store_bytes", "Size of the store file."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.StoreBytes) }},
	{desc("disk_free_bytes", "Free bytes on the data directory's filesystem (0 where it cannot be read)."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.DiskFree) }},
	{desc("storage_full", "1 while the data directory's disk is full (a write found no room and room has not returned)."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return b2f(s.StorageFull) }},
	{desc("storage_full_refusals_total", "Requests refused because the disk was full, since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.StorageFullRefusals) }},
	{desc("backups_total", "Automatic backups written since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.Backups) }},
	{desc("backup_failures_total", "Automatic backups that failed since start."), prometheus.CounterValue, func(s appliance.StatsSnapshot) float64 { return float64(s.BackupsFailed) }},
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// snapshotCollector turns one snapshot into metrics.
type snapshotCollector struct{ s appliance.StatsSnapshot }

func (c snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range metrics {
		ch <- m.desc
	}
}

func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(c.s))
	}
}
