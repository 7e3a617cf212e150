package chat

import (
	"strings"
	"testing"
	"time"
)

// TestFormatTime: local time with the zone's name, whatever zone t is in.
func TestFormatTime(t *testing.T) {
	loc := time.FixedZone("XYZ", 5*3600+30*60)
	saved := time.Local
	time.Local = loc
	t.Cleanup(func() { time.Local = saved })
	at := time.Date(2026, 11, 22, 5, 5, 46, 0, time.UTC)
	if got, want := FormatTime(at), "2026-11-22 10:35:46 XYZ"; got != want {
		t.Errorf("FormatTime = %q, want %q", got, want)
	}
	if back, err := time.ParseInLocation(TimeLayout, FormatTime(at), loc); err != nil || !back.Equal(at) || !strings.HasSuffix(FormatTime(at), " XYZ") {
		t.Errorf("FormatTime does not read back: %v %v", back, err)
	}
}

// TestFormatProgress: the bar fills in proportion; rate and time left are
// shown once known, the time left only while not done.
func TestFormatProgress(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		done, total int64
		rate        float64
		left        time.Duration
		want        string
	}{
		{0, 50 * mib, 0, 0, "[----------] 0 bytes of 50 MiB"},
		{12 * mib, 50 * mib, 4.1 * mib, 9400 * time.Millisecond, "[##--------] 12 MiB of 50 MiB, 4.1 MiB/s, 9s left"},
		{50 * mib, 50 * mib, 5 * mib, 0, "[##########] 50 MiB of 50 MiB, 5 MiB/s"},
		{0, 0, 0, 0, "[----------] 0 bytes of 0 bytes"},
	} {
		if got := FormatProgress(c.done, c.total, c.rate, c.left, 10); got != c.want {
			t.Errorf("FormatProgress(%d, %d, %v, %v) = %q, want %q", c.done, c.total, c.rate, c.left, got, c.want)
		}
	}
}
