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
