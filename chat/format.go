package chat

import (
	"strings"
	"time"
)

// How both sides show people a server key and a time (docs/design.md §9),
// so that each reads the same in serve's output, the first run, register,
// the terminal client, the console, `securechat admin` and the web admin.

// FormatFingerprint is a server key fingerprint, 64 hex digits
// (protocol.md §2.1), as people compare it: groups of four digits
// separated by spaces. A prefix of it (the terminal client's status bar
// shows 16 digits) is grouped the same way. Parsers of a fingerprint
// accept this form.
func FormatFingerprint(hex string) string {
	var b strings.Builder
	for i, r := range hex {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TimeLayout is how a time is shown to people: local time with its zone.
const TimeLayout = "2006-01-02 15:04:05 MST"

// FormatTime is t in the local time zone, in TimeLayout.
func FormatTime(t time.Time) string { return t.Local().Format(TimeLayout) }
