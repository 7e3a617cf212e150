package chat

import (
	"strings"
	"testing"
	"time"
)

func TestFormatFingerprint(t *testing.T) {
	const fp = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	tests := []struct{ in, want string }{
		{fp, "0001 0203 0405 0607 0809 0a0b 0c0d 0e0f 1011 1213 1415 1617 1819 1a1b 1c1d 1e1f"},
		{fp[:16], "0001 0203 0405 0607"}, // the status bar's prefix
		{fp[:6], "0001 02"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := FormatFingerprint(tt.in); got != tt.want {
			t.Errorf("FormatFingerprint(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

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
