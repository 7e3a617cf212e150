package appliance

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/transport"
)

// TestSettingsTable checks every entry: a key, its flag, help, a default
// within its bounds, a field of a type the flags and the file can carry,
// and no two entries sharing a key or a field.
func TestSettingsTable(t *testing.T) {
	keys := map[string]bool{}
	fields := map[any]string{}
	var probe Config
	for _, s := range Settings() {
		if s.Key == "" || strings.Trim(s.Key, "abcdefghijklmnopqrstuvwxyz_0123456789") != "" || strings.Trim(s.Key[:1], "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Errorf("setting %q: the key is not lower_case", s.Key)
		}
		if keys[s.Key] {
			t.Errorf("setting %s: twice in the table", s.Key)
		}
		keys[s.Key] = true
		if s.Flag != strings.ReplaceAll(s.Key, "_", "-") {
			t.Errorf("setting %s: flag %q", s.Key, s.Flag)
		}
		if s.Help == "" || strings.Contains(s.Help, "default") {
			t.Errorf("setting %s: help %q (the default is added from the table)", s.Key, s.Help)
		}
		switch p := s.Field(&probe).(type) {
		case *string, *int, *float64, *bool, *Duration:
			if other, ok := fields[p]; ok {
				t.Errorf("settings %s and %s share a field", s.Key, other)
			}
			fields[p] = s.Key
		default:
			t.Errorf("setting %s: a field of type %T", s.Key, p)
		}
		var c Config
		s.v.setDefault(&c)
		if err := s.Check(&c); err != nil {
			t.Errorf("setting %s: the default is out of bounds: %v", s.Key, err)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}

// TestLimitsJSONNames pins the admin API's names of the live settings
// (docs/operations.md and scripts use them) and checks that the JSON form
// round-trips.
func TestLimitsJSONNames(t *testing.T) {
	l := Config{}.WithDefaults().limits()
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	want := []string{"account_login_failures", "ack_burst", "ack_rate", "byte_burst", "byte_rate", "conn_burst", "conn_rate", "flood_ban", "group_max_members", "group_max_per_account", "key_fetch_burst", "key_fetch_rate",
		"login_ban", "login_failure_window", "login_failures", "lookup_burst", "lookup_rate", "max_conns", "max_conns_per_account", "max_conns_per_address",
		"message_burst", "message_rate", "name_check_burst", "name_check_rate", "publish_keys_burst", "publish_keys_rate", "register_burst", "register_rate"}
	if slices.Sort(got); !slices.Equal(got, want) {
		t.Errorf("JSON keys %v, want %v", got, want)
	}
	if m["login_ban"] != "15m0s" || m["message_burst"] != 60.0 {
		t.Errorf("JSON values: %s", b)
	}
	var back Limits
	back.MessageBurst = 9 // a key left out keeps its value
	if err := json.Unmarshal([]byte(`{"message_rate": 0.5, "login_ban": "1h"}`), &back); err != nil {
		t.Fatal(err)
	}
	if back.MessageRate != 0.5 || back.LoginBan != Duration(time.Hour) || back.MessageBurst != 9 {
		t.Errorf("decoded %+v", back)
	}
	for _, bad := range []string{`{"listen": ":1"}`, `{"nope": 1}`, `{"message_burst": "x"}`, `[]`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// TestConfigRoundTrip writes a configuration as --print-config does and
// reads it back with the loader: every setting comes back as it was.
func TestConfigRoundTrip(t *testing.T) {
	c := Config{
		Listen: "127.0.0.1:5000", AdminSelfSigned: true, Data: "/var/lib/secure chat",
		MailboxTTL: Duration(36 * time.Hour), RegisterRate: 1.0 / 3, ByteRate: 1e15, ByteBurst: 1 << 40,
		FloodBan: 7, AFKTimeout: Duration(90 * time.Second), Registration: RegistrationInvite, LogFormat: "json",
	}.WithDefaults()
	b, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	back, err := LoadConfig(file)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	for _, s := range Settings() {
		if got, want := s.Text(&back), s.Text(&c); got != want || !s.v.equal(&back, &c) {
			t.Errorf("%s: %q came back as %q", s.Key, want, got)
		}
	}
	if err := back.Validate(); err != nil {
		t.Error(err)
	}
	// The file lists every key once, in the table's order.
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		lines = append(lines, strings.SplitN(l, ":", 2)[0])
	}
	var keys []string
	for _, s := range Settings() {
		keys = append(keys, s.Key)
	}
	if !slices.Equal(lines, keys) {
		t.Errorf("printed keys %v", lines)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	for _, tc := range []struct{ file, err string }{
		{"listen: \":1\"\nlisten_addr: x\n", `line 2: listen_addr: unknown setting; did you mean listen?`},
		{"massage_rate: 3\n", `line 1: massage_rate: unknown setting; did you mean message_rate?`},
		{"message_rate: fast\n", `line 1: message_rate: "fast" is not a rate like 20, 0.5 or 1/60`},
		{"max_conns: 1.5\n", `line 1: max_conns: "1.5" is not a whole number`},
		{"message_rate: 1\nmessage_rate: 2\n", "line 2: message_rate is set twice"},
		{"max_frame: lots\n", `line 1: max_frame: "lots" is not a size in bytes like 65536 or 64KiB`},
		{"login_ban: 5\n", `line 1: login_ban: "5" is not a duration like 30s, 12h or 30d`},
		{"admin_insecure: maybe\n", `admin_insecure: "maybe" is not true or false`},
		{"data: [a, b]\n", "data:"},
		{"- listen\n", "not a list of settings"},
	} {
		file := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(file, []byte(tc.file), 0o600)
		_, err := LoadConfig(file)
		if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line with %q", tc.file, err, tc.err)
		}
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("# nothing set\nmessage_burst:\n"), 0o600)
	if c, err := LoadConfig(file); err != nil || c.MessageBurst != 0 {
		t.Errorf("an empty value: %+v, %v", c.MessageBurst, err)
	}
}

func TestConfigValidateBounds(t *testing.T) {
	for name, c := range map[string]Config{
		"negative rate":    {MessageRate: -1},
		"NaN rate":         {ConnRate: math.NaN()},
		"small frame":      {MaxFrame: 1000},
		"short mailbox":    {MailboxTTL: Duration(time.Millisecond)},
		"negative ban":     {LoginBan: Duration(-time.Minute)},
		"tiny byte burst":  {ByteBurst: transport.MaxPayload - 1},
		"registration":     {Registration: "sometimes"},
		"log level":        {LogLevel: "loud"},
		"listen":           {Listen: "4433"},
		"cert without key": {AdminCert: "a.pem"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The error names the key and its bounds.
	for c, want := range map[*Config]string{
		{MessageRate: -1}:                          "message_rate must be between 0 and 1000000000 (got -1)",
		{RegisterRate: 1e10}:                       "register_rate must be between 0 and 1000000000 (got 10000000000)",
		{MailboxTTL: Duration(time.Second / 2)}:    "mailbox_ttl must be at least 1s (got 500ms)",
		{FrameTimeout: Duration(time.Millisecond)}: "frame_timeout must be at least 100ms (got 1ms)",
		{MaxFrame: 100 << 20}:                      "max_frame must be between 64KiB and 64MiB (got 100MiB)",
		{ByteBurst: 1000}:                          "byte_burst must be between 256KiB and 1024TiB (got 1000)",
		{ByteRate: -1}:                             "byte_rate must be between 0 and 1000000000000000 (got -1)",
		{HandshakeRate: -0.5}:                      "handshake_rate must be at least 0 (got -0.5)",
		{IPv6Prefix: 8}:                            "ipv6_prefix must be between 16 and 128 (got 8)",
		{LogLevel: "inof"}:                         `log_level: "inof" is not debug, info, warn or error; did you mean info?`,
		{Registration: "invtie"}:                   `registration: "invtie" is not open, invite or closed; did you mean invite?`,
		{LogFormat: "yaml"}:                        `log_format: "yaml" is not text or json`,
		{Listen: "4433"}:                           `listen: "4433" is not HOST:PORT (like 127.0.0.1:8080 or :4433)`,
		{Admin: "localhost:99999"}:                 `admin: "localhost:99999": the port "99999" is not a number from 0 to 65535`,
		{Listen: ":http"}:                          `listen: ":http": the port "http" is not a number from 0 to 65535`,
	} {
		if err := c.Validate(); err == nil || err.Error() != want {
			t.Errorf("%v, want %q", err, want)
		}
	}
	// What the load bench and the soak test give.
	lifted := Config{MessageRate: 1e9, MessageBurst: 1e9, ByteRate: 1e15, ByteBurst: 1e15, ConnRate: 1e6, ConnBurst: 1e6,
		RegisterRate: 1e6, RegisterBurst: 1e6, KeyFetchRate: 1e6, KeyFetchBurst: 1e6}
	if err := lifted.Validate(); err != nil {
		t.Errorf("lifted limits: %v", err)
	}
	if err := lifted.WithDefaults().limits().Validate(); err != nil {
		t.Errorf("lifted limits, live: %v", err)
	}
}

func TestLimitsSetAndDiff(t *testing.T) {
	a := Config{}.WithDefaults().limits()
	b := a
	if err := b.Set("message_burst", " 1 "); err != nil {
		t.Fatal(err)
	}
	if err := b.Set("login_ban", "1h"); err != nil {
		t.Fatal(err)
	}
	if err := b.Set("listen", ":1"); err == nil || !strings.Contains(err.Error(), `unknown setting "listen"`) {
		t.Errorf("a setting that is not live: %v", err)
	}
	if err := b.Set("message_rate", "fast"); err == nil {
		t.Error("a bad number was taken")
	}
	if got := strings.Join(diffLimits(a, b), ", "); got != "message_burst 60→1, login_ban 15m→1h" {
		t.Errorf("diff %q", got)
	}
	if got := b.Get("message_burst"); got != "1" {
		t.Errorf("Get %q", got)
	}
}

// TestSettingForms: durations take days as the admin's commands do, rates
// the fractions their help shows, byte sizes their units; and each is
// written back in the same form (--print-config, help).
func TestSettingForms(t *testing.T) {
	for _, tc := range []struct{ key, in, text string }{
		{"mailbox_ttl", "30d", "30d"},
		{"mailbox_ttl", "1d12h", "1d12h"},
		{"mailbox_ttl", "36h", "1d12h"},
		{"login_ban", "90m", "1h30m"},
		{"frame_timeout", "90s", "1m30s"},
		{"frame_timeout", "1500ms", "1.5s"},
		{"register_rate", "1/60", "1/60"},
		{"register_rate", "0.5", "0.5"},
		{"message_rate", "1/3", "1/3"},
		{"max_frame", "4MiB", "4MiB"},
		{"max_frame", "65536", "64KiB"},
		{"store_max_bytes", "1GiB", "1GiB"},
		{"byte_rate", "1MiB", "1MiB"},
		{"byte_rate", "1048576", "1MiB"},
		{"byte_burst", "1000000", "1000000"},
	} {
		s, _ := lookup(tc.key)
		var c Config
		if err := s.Set(&c, tc.in); err != nil {
			t.Errorf("%s %q: %v", tc.key, tc.in, err)
			continue
		}
		if got := s.Text(&c); got != tc.text {
			t.Errorf("%s %q reads back as %q, want %q", tc.key, tc.in, got, tc.text)
		}
		var back Config
		if err := s.Set(&back, s.Text(&c)); err != nil || !s.v.equal(&back, &c) {
			t.Errorf("%s %q: its text %q does not read back: %v", tc.key, tc.in, s.Text(&c), err)
		}
	}
	for _, tc := range []struct{ key, in string }{
		{"mailbox_ttl", "30days"}, {"mailbox_ttl", "d"}, {"register_rate", "1/0"}, {"register_rate", "fast"},
		{"max_frame", "4 parsecs"}, {"max_frame", "1.5"},
	} {
		s, _ := lookup(tc.key)
		if err := s.Set(&Config{}, tc.in); err == nil || !strings.HasPrefix(err.Error(), tc.key+": ") || strings.Contains(err.Error(), "strconv") {
			t.Errorf("%s %q: %v", tc.key, tc.in, err)
		}
	}
	for _, d := range []struct {
		in   string
		want time.Duration
	}{{"30d", 30 * 24 * time.Hour}, {"1d12h", 36 * time.Hour}, {"0", 0}, {"15m", 15 * time.Minute}} {
		if got, err := ParseDuration(d.in); err != nil || got != d.want {
			t.Errorf("ParseDuration(%q) = %v, %v", d.in, got, err)
		}
	}
	// The help shows defaults in the same forms.
	for key, want := range map[string]string{"mailbox_ttl": "30d", "register_rate": "1/60", "byte_rate": "1MiB", "store_max_bytes": "4GiB"} {
		if s, _ := lookup(key); s.Default() != want {
			t.Errorf("%s default shown %q, want %q", key, s.Default(), want)
		}
	}
}

// TestFormatDuration: durations are written as people write them, and
// ParseDuration reads each back exactly.
func TestFormatDuration(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {30 * day, "30d"}, {36 * time.Hour, "1d12h"}, {90 * time.Minute, "1h30m"}, {90 * time.Second, "1m30s"},
		{time.Hour, "1h"}, {time.Hour + 30*time.Second, "1h30s"}, {day + time.Second, "1d1s"}, {1500 * time.Millisecond, "1.5s"},
		{100 * time.Millisecond, "100ms"}, {time.Nanosecond, "1ns"}, {time.Minute + time.Millisecond, "1m1ms"},
		{-36 * time.Hour, "-36h"}, {-time.Second, "-1s"}, {15 * time.Minute, "15m"},
	} {
		if got := FormatDuration(tc.d); got != tc.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	for _, d := range []time.Duration{1, 999, time.Second - 1, day - 1, 400*day + 3*time.Hour + 7*time.Second + 5, math.MaxInt64, -math.MaxInt64, math.MinInt64} {
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("%d: %q reads back as %v, %v", d, FormatDuration(d), back, err)
		}
	}
}

// FuzzFormatDuration: whatever the duration, ParseDuration reads
// FormatDuration's text back exactly, and the text has no zero units.
func FuzzFormatDuration(f *testing.F) {
	for _, d := range []int64{0, 1, int64(time.Hour), int64(36 * time.Hour), math.MaxInt64, math.MinInt64, -int64(time.Minute)} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		d := time.Duration(n)
		s := FormatDuration(d)
		back, err := ParseDuration(s)
		if err != nil || back != d {
			t.Fatalf("%d: %q reads back as %v, %v", n, s, back, err)
		}
		if d != 0 && (strings.HasPrefix(s, "0") || strings.Contains(s, "d0") || strings.Contains(s, "h0") || strings.Contains(s, "m0")) {
			t.Fatalf("%d: %q has a zero unit", n, s)
		}
	})
}

// TestPrintedForms: --print-config writes sizes and rates as people write
// them, not as YAML floats.
func TestPrintedForms(t *testing.T) {
	b, err := Config{}.WithDefaults().YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"byte_rate: 1MiB\n", "register_rate: 1/60\n", "store_max_bytes: 4GiB\n", "message_rate: 20\n", "listen: :4433\n",
		"mailbox_ttl: 30d\n", "login_ban: 15m\n", "frame_timeout: 30s\n", "afk_timeout: 0s\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("printed config lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "e+") {
		t.Errorf("printed config has an exponent:\n%s", b)
	}
}

// TestGroupSettings: group_max_members (default 1000, at most the
// envelopes one group Send can carry) and group_max_per_account (default
// 100) come from the file, a flag or a live change alike, within their
// bounds (protocol.md §6.7).
func TestGroupSettings(t *testing.T) {
	d := Config{}.WithDefaults()
	if d.GroupMaxMembers != 1000 || d.GroupMaxPerAccount != 100 {
		t.Errorf("defaults %d, %d", d.GroupMaxMembers, d.GroupMaxPerAccount)
	}
	for c, want := range map[*Config]string{
		{GroupMaxMembers: transport.MaxGroupEnvelopes + 1}: "group_max_members must be between 1 and 8192 (got 8193)",
		{GroupMaxMembers: -1}:                              "group_max_members must be between 1 and 8192 (got -1)",
		{GroupMaxPerAccount: 1<<20 + 1}:                    "group_max_per_account must be between 1 and 1048576 (got 1048577)",
	} {
		if err := c.Validate(); err == nil || err.Error() != want {
			t.Errorf("%+v: %v, want %q", *c, err, want)
		}
	}
	l := d.limits()
	l.GroupMaxPerAccount = 0
	if err := l.Validate(); err == nil {
		t.Error("a live group_max_per_account of 0 accepted")
	}
	if err := l.Set("group_max_members", "50"); err != nil || l.Get("group_max_members") != "50" {
		t.Errorf("live set: %v %q", err, l.Get("group_max_members"))
	}
	b, err := d.YAML()
	if err != nil || !strings.Contains(string(b), "group_max_members: 1000\n") || !strings.Contains(string(b), "group_max_per_account: 100\n") {
		t.Errorf("printed config: %v\n%s", err, b)
	}
}
