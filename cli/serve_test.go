package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/internal/usage"
)

// TestServeFlags: every setting of the table is a flag of serve, with the
// table's help and default.
func TestServeFlags(t *testing.T) {
	fs := usage.NewFlagSet("serve", io.Discard)
	var flags appliance.Config
	settingFlags(fs, &flags)
	for _, s := range appliance.Settings() {
		f := fs.Lookup(s.Flag)
		if f == nil {
			t.Errorf("setting %s: no flag --%s", s.Key, s.Flag)
			continue
		}
		if f.Usage != s.Usage() {
			t.Errorf("--%s: help %q", s.Flag, f.Usage)
		}
		if d := s.Default(); d != "" && !strings.Contains(f.Usage, "(default "+d+")") {
			t.Errorf("--%s: the help does not show the default %s", s.Flag, d)
		}
	}
}

// TestPrintConfigRoundTrip runs serve --print-config on a file and flags,
// and reads what it printed back with the loader: the same configuration,
// flags winning over the file.
func TestPrintConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "securechat.yaml")
	os.WriteFile(file, []byte("listen: \"127.0.0.1:5000\"\nmessage_rate: 3\nregistration: invite\n"), 0o600)
	var out, errOut bytes.Buffer
	env := Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	args := []string{"--config", file, "--print-config", "--data", dir, "--message-rate", "0.25",
		"--login-ban", "2h", "--admin-self-signed", "--byte-burst", "1000000000000000",
		"--register-rate", "1/60", "--mailbox-ttl", "1d12h", "--store-max-bytes", "1GiB", "--byte-rate", "2MiB"}
	cfg, done, err := serveConfig(args, env)
	if err != nil || !done {
		t.Fatalf("serve %v: %v %v (%s)", args, done, err, errOut.String())
	}
	printed := filepath.Join(dir, "printed.yaml")
	os.WriteFile(printed, out.Bytes(), 0o600)
	back, err := appliance.LoadConfig(printed)
	if err != nil {
		t.Fatalf("loading what --print-config printed: %v\n%s", err, out.String())
	}
	want := map[string]string{"listen": "127.0.0.1:5000", "message_rate": "0.25", "registration": "invite", "data": dir,
		"login_ban": "2h", "admin_self_signed": "true", "byte_burst": "1000000000000000", "message_burst": "60",
		"register_rate": "1/60", "mailbox_ttl": "1d12h", "store_max_bytes": "1GiB", "byte_rate": "2MiB"}
	for _, s := range appliance.Settings() {
		if got := s.Text(&back); got != s.Text(&cfg) {
			t.Errorf("%s: printed %q, loaded back %q", s.Key, s.Text(&cfg), got)
		}
		if w, ok := want[s.Key]; ok && s.Text(&back) != w {
			t.Errorf("%s = %q, want %q", s.Key, s.Text(&back), w)
		}
	}
	for _, line := range []string{"register_rate: 1/60\n", "store_max_bytes: 1GiB\n", "byte_rate: 2MiB\n"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("printed config lacks %q", line)
		}
	}
	// What it printed is a configuration serve takes as it is.
	out.Reset()
	if _, done, err := serveConfig([]string{"--config", printed, "--check-config"}, env); err != nil || !done || out.String() != "configuration ok\n" {
		t.Errorf("--check-config on the printed file: %v %q", err, out.String())
	}
}

func TestServeConfigErrors(t *testing.T) {
	env := Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	for _, tc := range []struct {
		args  []string
		err   string
		usage bool
	}{
		{[]string{"--mailbox-ttl", "soon"}, "not a duration", true},
		{[]string{"--max-frame", "x"}, `serve: --max-frame: "x" is not a size in bytes like 65536 or 64KiB`, true},
		{[]string{"--log-level", "inof"}, `config: log_level: "inof" is not debug, info, warn or error; did you mean info?`, false},
		{[]string{"extra"}, "unexpected argument", true},
		{[]string{"--max-frame", "5", "--check-config"}, "max_frame must be between 64KiB and 64MiB (got 5)", false},
		{[]string{"--config", "/nonexistent/securechat.yaml"}, "config:", false},
		{[]string{"--register-rate", "fast"}, `serve: --register-rate: "fast" is not a rate like 20, 0.5 or 1/60`, true},
		{[]string{"--listen", "localhost:70000", "--check-config"}, `config: listen: "localhost:70000": the port "70000" is not a number from 0 to 65535`, false},
	} {
		_, _, err := serveConfig(tc.args, env)
		if err == nil || !strings.Contains(err.Error(), tc.err) || usage.Is(err) != tc.usage {
			t.Errorf("%v: %v, want %q (usage error %v)", tc.args, err, tc.err, tc.usage)
		}
	}
}

// TestServeEveryBadFlag: serve reports every bad flag, one line each, with
// the mistakes of the configuration, as a usage error; a flag near a known
// one names it, a choice near a known word names the word.
func TestServeEveryBadFlag(t *testing.T) {
	env := Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	_, _, err := serveConfig([]string{"--lsten", ":1", "--frame-timeout", "10x", "--max-conns", "many", "--log-level", "wran",
		"--registration", "invit", "--frame-timeout=1ms", "--check-config"}, env)
	want := []string{
		"serve: unknown flag --lsten; did you mean --listen?",
		`serve: --frame-timeout: "10x" is not a duration like 30s, 12h or 30d`,
		`serve: --max-conns: "many" is not a whole number`,
		"config: frame_timeout must be at least 100ms (got 1ms)",
		`config: registration: "invit" is not open, invite or closed; did you mean invite?`,
		`config: log_level: "wran" is not debug, info, warn or error; did you mean warn?`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") || !usage.Is(err) {
		t.Fatalf("got (usage error %v):\n%v\nwant:\n%s", usage.Is(err), err, strings.Join(want, "\n"))
	}
}

// TestCheckConfigEveryMistake: --check-config reports each mistake of the
// file and the flags on a line of its own.
func TestCheckConfigEveryMistake(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "securechat.yaml")
	os.WriteFile(file, []byte("massage_rate: 3\nmessage_rate: fast\nadmin: localhost\n"), 0o600)
	env := Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	_, _, err := serveConfig([]string{"--config", file, "--max-frame", "5", "--check-config"}, env)
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"line 1: massage_rate: unknown setting; did you mean message_rate?", `line 2: message_rate: "fast" is not a rate`,
		`config: admin: "localhost" is not HOST:PORT`, "config: max_frame must be between"}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %q, want %q", i+1, lines[i], w)
		}
	}
}
