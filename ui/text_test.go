package ui

import (
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/client"
)

func plain(lines []line) []string {
	var out []string
	for _, l := range lines {
		var b strings.Builder
		for _, c := range l {
			b.WriteString(c.text)
		}
		out = append(out, b.String())
	}
	return out
}

func TestWrap(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		text          string
		width, indent int
		want          []string
	}{
		{"short", 10, 0, []string{"short"}},
		{"the quick brown fox", 10, 0, []string{"the quick", "brown fox"}},
		{"the quick brown fox", 10, 2, []string{"the quick", "  brown", "  fox"}},
		{"abcdefghijklmnop", 6, 0, []string{"abcdef", "ghijkl", "mnop"}},
		{"one\ntwo", 10, 3, []string{"one", "   two"}},
		{"a\n\nb", 10, 0, []string{"a", "", "b"}},
		{"日本語のテキスト", 6, 0, []string{"日本語", "のテキ", "スト"}},
		{"x", 0, 0, []string{"x"}},
		{"", 5, 0, []string{""}},
	} {
		got := plain(wrap(cells(span{text: c.text}), c.width, c.indent))
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("wrap(%q, %d, %d) = %q, want %q", c.text, c.width, c.indent, got, c.want)
		}
		for _, l := range wrap(cells(span{text: c.text}), c.width, c.indent) {
			if c.width > 0 && l.width() > c.width {
				t.Errorf("wrap(%q, %d): line %q wider than %d", c.text, c.width, plain([]line{l}), c.width)
			}
		}
	}
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain text":             "plain text",
		"two\nlines":             "two\nlines",
		"esc\x1b[31mred":         "esc\uFFFD[31mred",
		"bell\a cr\r\n":          "bell\uFFFD cr\n",
		"tab\there":              "tab    here",
		"c1\u009bx":              "c1\uFFFDx",
		"rtl\u202eevil\u2066":    "rtl\uFFFDevil\uFFFD",
		"bad utf8 \xff":          "bad utf8 \uFFFD",
		"emoji 👋 and 日本":         "emoji 👋 and 日本",
		"zero\u200bwidth joiner": "zero\u200bwidth joiner",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
	if got := sanitizeLine("a\nb"); got != "a b" {
		t.Errorf("sanitizeLine = %q", got)
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	if got := plain([]line{truncate(cells(span{text: "abcdefgh"}), 5)}); got[0] != "abcd…" {
		t.Errorf("truncate = %q", got)
	}
	if got := plain([]line{truncate(cells(span{text: "abc"}), 5)}); got[0] != "abc" {
		t.Errorf("truncate = %q", got)
	}
}

func TestAdvances(t *testing.T) {
	t.Parallel()
	const (
		sending   = client.StateSending
		stored    = client.StateStored
		delivered = client.StateDelivered
		read      = client.StateRead
		failed    = client.StateFailed
	)
	for _, c := range []struct {
		old, new client.DeliveryState
		want     bool
	}{
		{sending, stored, true}, {stored, delivered, true}, {delivered, read, true}, {sending, read, true},
		{read, delivered, false}, {delivered, stored, false}, {stored, stored, false},
		{sending, failed, true}, {stored, failed, true}, {delivered, failed, false}, {read, failed, false},
		{failed, sending, true}, {failed, stored, true},
	} {
		if got := advances(c.old, c.new); got != c.want {
			t.Errorf("advances(%v, %v) = %v, want %v", c.old, c.new, got, c.want)
		}
	}
}

func TestCanonicalName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"bob": "bob", "Bob": "bob", "a.b_c-9": "a.b_c-9"} {
		if got, err := canonicalName(in); err != nil || got != want {
			t.Errorf("canonicalName(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "bo b", "bob!", "\u212a", strings.Repeat("a", 33)} {
		if _, err := canonicalName(in); err == nil {
			t.Errorf("canonicalName(%q) accepted", in)
		}
	}
}

func TestShortFingerprint(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"f90a d123 8ca2 52e4 a599 dbf8 9c8b 07f8 05d6 a365 539a cda5 060a 197c e444 3bdf": "f90a d123 8ca2 52e4",
		"abcd ef": "abcd ef",
		"":        "unknown",
	} {
		if got := shortFingerprint(in); got != want {
			t.Errorf("shortFingerprint(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSafetyGrid(t *testing.T) {
	t.Parallel()
	got := safetyGrid("109298690037597182824433643673902327584245815618333740623784")
	want := "    10929 86900 37597 18282\n    44336 43673 90232 75842\n    45815 61833 37406 23784"
	if got != want {
		t.Errorf("safetyGrid =\n%s\nwant\n%s", got, want)
	}
}

func TestActivityTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{now.Add(-time.Hour), "11:00"},
		{now.Add(-24 * time.Hour), "Fri"},
		{now.Add(-10 * 24 * time.Hour), "4 Mar"},
		{time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), "Dec 25"},
	} {
		if got := activityTime(c.t, now); got != c.want {
			t.Errorf("activityTime(%v) = %q, want %q", c.t, got, c.want)
		}
	}
}

func TestWrapKeepsGluedMarkTogether(t *testing.T) {
	t.Parallel()
	l := append(cells(span{text: "12:00 alice: hello"}), glue(cells(span{text: " ✓✓ read"}))...)
	got := plain(wrap(l, 22, 6))
	if want := []string{"12:00 alice: hello", "      ✓✓ read"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("wrap = %q, want %q", got, want)
	}
}
