package e2e

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCheckConfigEveryMistake: serve --check-config on a file with three
// mistakes prints three lines, each naming its key, an unknown key with
// the one meant, and no Go type names.
func TestCheckConfigEveryMistake(t *testing.T) {
	file := writeTemp(t, "massage_rate: 3\nmax_frame: lots\nlisten: \"localhost:99999\"\nregister_rate: 1/60\nmailbox_ttl: 30d\n")
	r := run(t, nil, "", "serve", "--config", file, "--check-config")
	if r.Code != 1 {
		t.Fatalf("exit %d, want 1: %s", r.Code, r.Stderr)
	}
	lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
	want := []string{
		"line 1: massage_rate: unknown setting; did you mean message_rate?",
		`line 2: max_frame: "lots" is not a size in bytes`,
		`listen: "localhost:99999": the port "99999" is not a number from 0 to 65535`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), r.Stderr)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %q, want %q", i+1, lines[i], w)
		}
	}
	for _, goism := range []string{"unmarshal", "!!str", "int64", "float64", "strconv"} {
		if strings.Contains(r.Stderr, goism) {
			t.Errorf("the errors mention %q: %s", goism, r.Stderr)
		}
	}
	// Fixed, the same file is fine.
	fixed := writeTemp(t, "message_rate: 3\nmax_frame: 1MiB\nlisten: \"localhost:9999\"\nregister_rate: 1/60\nmailbox_ttl: 30d\n")
	if out := ok(t, nil, "serve", "--config", fixed, "--check-config").Stdout; out != "configuration ok\n" {
		t.Errorf("check-config on the fixed file: %q", out)
	}
}

// TestServeEveryBadFlag: serve with several bad flags reports every one,
// one line each (as --check-config does for a file), exit status 2: a
// misspelt flag names the one meant, a value out of bounds says so in the
// setting's own form, a choice near a known word names it.
func TestServeEveryBadFlag(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	r := run(t, nil, "", "serve", "--data", data, "--lsten", "127.0.0.1:0", "--frame-timeout", "10m0", "--max-frame", "1GiB",
		"--log-level", "wanr", "--register-rate", "1/0", "--mailbox-ttl", "0.5s")
	if r.Code != 2 {
		t.Fatalf("exit %d, want 2: %s", r.Code, r.Stderr)
	}
	want := []string{
		"securechat: serve: unknown flag --lsten; did you mean --listen?",
		`serve: --frame-timeout: "10m0" is not a duration like 30s, 12h or 30d`,
		`serve: --register-rate: "1/0" is not a rate like 20, 0.5 or 1/60`,
		"config: mailbox_ttl must be at least 1s (got 500ms)",
		"config: max_frame must be between 64KiB and 64MiB (got 1GiB)",
		`config: log_level: "wanr" is not debug, info, warn or error; did you mean warn?`,
	}
	if got := strings.TrimRight(r.Stderr, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("serve with bad flags made %s: %v", data, err)
	}
	for _, goism := range []string{"e+", "ns", "parse error", "flag provided"} {
		if strings.Contains(r.Stderr, goism) {
			t.Errorf("the errors mention %q: %s", goism, r.Stderr)
		}
	}
}

// TestPrintConfigForms: --print-config prints sizes and rates as they are
// written, and takes them back, from flags as from the file.
func TestPrintConfigForms(t *testing.T) {
	out := ok(t, nil, "serve", "--print-config", "--register-rate", "1/60", "--mailbox-ttl", "1d12h", "--byte-rate", "2MiB").Stdout
	for _, line := range []string{"register_rate: 1/60\n", "byte_rate: 2MiB\n", "store_max_bytes: 4GiB\n", "mailbox_ttl: 1d12h\n",
		"login_ban: 15m\n", "idle_timeout: 1m\n", "afk_timeout: 0s\n"} {
		if !strings.Contains(out, line) {
			t.Errorf("printed config lacks %q:\n%s", line, out)
		}
	}
	if strings.Contains(out, "e+") {
		t.Errorf("printed config has an exponent:\n%s", out)
	}
	if zero := regexp.MustCompile(`\d[dhm]0[hms]?\n`).FindString(out); zero != "" {
		t.Errorf("printed config has a duration with a zero unit (%q):\n%s", zero, out)
	}
	file := writeTemp(t, out)
	if back := ok(t, nil, "serve", "--config", file, "--print-config").Stdout; back != out {
		t.Errorf("printed again differs:\n%s\nfirst:\n%s", back, out)
	}
}

// TestAdminOff: --admin off serves no admin listener; clients are served.
func TestAdminOff(t *testing.T) {
	s := startServer(t, "--admin", "off")
	if _, err := os.Stat(filepath.Join(s.data, "admin.addr")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("admin.addr with --admin off: %v", err)
	}
	if strings.Contains(s.stdout.String(), "web admin") {
		t.Errorf("--admin off printed a web admin address: %s", s.stdout.String())
	}
	fails(t, 1, "the server runs with --admin off: no admin listener", nil, "admin", "--data", s.data, "stats")
	alice := register(t, s, "alice")
	register(t, s, "bob")
	alice.send(t, "bob", "hello")
	// Every log line is the server's slog format.
	for _, l := range strings.Split(strings.TrimSpace(s.stderr.String()), "\n") {
		if !strings.HasPrefix(l, "time=") {
			t.Errorf("a log line not in the server's format: %q", l)
		}
	}
}

// TestFailedStartLeavesNoDataDir: a start that fails (its port taken)
// removes the data directory it made.
func TestFailedStartLeavesNoDataDir(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := filepath.Join(t.TempDir(), "data")
	r := run(t, nil, "", "serve", "--listen", busy.LocalAddr().String(), "--data", data, "--admin", "127.0.0.1:0")
	if r.Code != 1 {
		t.Fatalf("exit %d, want 1: %s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the failed start left %s: %v", data, err)
	}
	admin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	r = run(t, nil, "", "serve", "--listen", "127.0.0.1:0", "--data", data, "--admin", admin.Addr().String())
	if r.Code != 1 {
		t.Fatalf("exit %d, want 1: %s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the failed start (admin port taken) left %s: %v", data, err)
	}
}
