package chat

import (
	"fmt"
	"time"
)

// How both sides show people a time (docs/design.md §9), so that it reads
// the same in the terminal client, the console, `securechat admin`, the web
// admin and the errors a client shows. A server key is shown by
// transport.Fingerprint.Grouped, a duration by appliance.FormatDuration.

// TimeLayout is how a time is shown to people: local time with its zone.
const TimeLayout = "2006-01-02 15:04:05 MST"

// FormatTime is t in the local time zone, in TimeLayout.
func FormatTime(t time.Time) string { return t.Local().Format(TimeLayout) }

// FormatBytes writes a byte count as people read it: 100 MiB, 1.5 GiB,
// 512 KiB, 17 bytes.
func FormatBytes(n int64) string {
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	if n < 1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	v, u := float64(n)/1024, 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %s", int64(v), units[u])
	}
	return fmt.Sprintf("%.1f %s", v, units[u])
}
