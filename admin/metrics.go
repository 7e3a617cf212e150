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
// token like every other route.
func metricsHandler(srv Server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&snapshotCollector{srv: srv})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
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
	{desc("queue_depth", "Messages waiting in mailboxes."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.QueueDepth) }},
	{desc("bans", "Bans in force."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.Bans) }},
	{desc("store_bytes", "Size of the store file."), prometheus.GaugeValue, func(s appliance.StatsSnapshot) float64 { return float64(s.StoreBytes) }},
}

// snapshotCollector turns the server's snapshot into metrics.
type snapshotCollector struct{ srv Server }

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range metrics {
		ch <- m.desc
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.srv.Snapshot()
	for _, m := range metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(s))
	}
}
