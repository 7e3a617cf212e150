package chat

import (
	"fmt"
	"strings"
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

// FormatProgress writes a transfer's bar, of bar characters, and its
// figures: "[#####-----] 12.0 MiB of 50.0 MiB, 4.1 MiB/s, 9s left". The
// rate and the time left are left out while unknown (rate 0), the time
// left once done; `send-file`, `files get` and the terminal client's file
// lines all show a transfer so.
func FormatProgress(done, total int64, rate float64, left time.Duration, bar int) string {
	n := 0
	if total > 0 {
		n = int(min(max(done, 0), total) * int64(bar) / total)
	}
	s := fmt.Sprintf("[%s%s] %s of %s", strings.Repeat("#", n), strings.Repeat("-", bar-n), FormatBytes(done), FormatBytes(total))
	if rate > 0 {
		s += fmt.Sprintf(", %s/s", FormatBytes(int64(rate)))
		if done < total {
			s += fmt.Sprintf(", %s left", left.Round(time.Second))
		}
	}
	return s
}
