package chat

import (
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
