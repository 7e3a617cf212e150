package transport

import (
	"strings"
	"testing"
)

func TestCanonicalUser(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string // want "" means refused
	}{
		{"alice", "alice"},
		{"Alice", "alice"},
		{"ALICE", "alice"},
		{"a.b-c_d", "a.b-c_d"},
		{"0", "0"},
		{"_", "_"},
		{"..", ".."},
		{"Zz09", "zz09"},
		{strings.Repeat("A", MaxUserName), strings.Repeat("a", MaxUserName)},
		{"", ""},
		{strings.Repeat("a", MaxUserName+1), ""},
		{"a b", ""},
		{" alice", ""},
		{"alice\n", ""},
		{"a\tb", ""},
		{"a\x00b", ""},
		{"a/b", ""},
		{"a@b", ""},
		{"a+b", ""},
		{"élise", ""},
		{"ālice", ""},
		{"\u212Aelvin", ""},                // KELVIN SIGN, which Unicode folds to "k"
		{"\u017Fam", ""},                   // LATIN SMALL LETTER LONG S, which folds to "s"
		{"\uff41lice", ""},                 // FULLWIDTH LATIN SMALL LETTER A
		{"\xff", ""},                       // not UTF-8
		{strings.Repeat("\u212A", 10), ""}, // 30 bytes: refused for its characters
		{strings.Repeat("\u212A", MaxUserName), ""}, // 96 bytes: refused for its length
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := CanonicalUser(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Errorf("CanonicalUser(%q) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("CanonicalUser(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if again, err := CanonicalUser(got); err != nil || again != got {
				t.Errorf("CanonicalUser is not idempotent on %q: %q, %v", got, again, err)
			}
		})
	}
}
