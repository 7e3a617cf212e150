package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/internal/usage"
)

// recServer is a Server that records each call as one line, with its
// arguments, and fails the calls whose first argument is "fail", or every
// call while failAll is set.
type recServer struct {
	failAll  bool
	calls    []string
	now      time.Time
	limits   appliance.Limits
	password string
	events   []appliance.Event // recorded with RecordEvent
	// banReason, if set, is the reason of the account ban Bans lists.
	banReason string
	// disk is the disk state Snapshot reports.
	diskFull, diskLow bool
}

var errFake = errors.New("fake failure")

func (f *recServer) rec(format string, args ...any) error {
	c := fmt.Sprintf(format, args...)
	f.calls = append(f.calls, c)
	if f.failAll || strings.Contains(c, "(fail") {
		return errFake
	}
	return nil
}

func (f *recServer) Ban(_ context.Context, target, reason string, d time.Duration) (appliance.Ban, error) {
	err := f.rec("Ban(%s, %q, %v)", target, reason, d)
	b := appliance.Ban{Target: target, Reason: reason, Created: f.now}
	if d > 0 {
		b.Expires = f.now.Add(d)
	}
	return b, err
}
func (f *recServer) Unban(_ context.Context, target string) error { return f.rec("Unban(%s)", target) }
func (f *recServer) Bans(context.Context) ([]appliance.Ban, error) {
	reason := "spam"
	if f.banReason != "" {
		reason = f.banReason
	}
	return []appliance.Ban{{Target: "10.0.0.0/8", Reason: "noisy net", Created: f.now}, {Target: "user:eve", Reason: reason, Created: f.now, Expires: f.now.Add(time.Hour)}}, f.rec("Bans()")
}
func (f *recServer) Kick(_ context.Context, user string) (int, error) {
	return 2, f.rec("Kick(%s)", user)
}
func (f *recServer) DeleteUser(_ context.Context, user string) error {
	return f.rec("DeleteUser(%s)", user)
}
func (f *recServer) Mute(_ context.Context, user string, d time.Duration) error {
	return f.rec("Mute(%s, %v)", user, d)
}
func (f *recServer) Unmute(_ context.Context, user string) error { return f.rec("Unmute(%s)", user) }
func (f *recServer) CreateInvite(_ context.Context, uses int, d time.Duration) (appliance.Invite, error) {
	inv := appliance.Invite{Code: "abcdefghijklmnop", Uses: uses, Created: f.now}
	if d > 0 {
		inv.Expires = f.now.Add(d)
	}
	return inv, f.rec("CreateInvite(%d, %v)", uses, d)
}
func (f *recServer) Invites(context.Context) ([]appliance.Invite, error) {
	return []appliance.Invite{{Code: "abcdefghijklmnop", Uses: 3, Created: f.now}}, f.rec("Invites()")
}
func (f *recServer) RevokeInvite(_ context.Context, code string) error {
	return f.rec("RevokeInvite(%s)", code)
}
func (f *recServer) Broadcast(_ context.Context, text string) (int, error) {
	return 7, f.rec("Broadcast(%q)", text)
}
func (f *recServer) Users(context.Context) ([]appliance.UserInfo, error) {
	return []appliance.UserInfo{
		{Name: "alice", Devices: 2, Online: 1, LastSeen: f.now, DeviceList: []appliance.DeviceInfo{
			{ID: 1, Name: "laptop", Added: f.now.Add(-time.Hour), LastSeen: f.now},
			{ID: 3, Name: "phone <b>", Added: f.now},
		}},
		{Name: "bob", Devices: 1},
	}, f.rec("Users()")
}
func (f *recServer) Groups(context.Context) ([]appliance.GroupInfo, error) {
	return []appliance.GroupInfo{{ID: "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b", Members: 5, Creator: "alice", Created: f.now, LastMessage: f.now, Messages: 12}}, f.rec("Groups()")
}
func (f *recServer) Snapshot(context.Context) (appliance.StatsSnapshot, error) {
	var s appliance.StatsSnapshot // the fingerprint as the API's JSON gives it
	if err := json.Unmarshal([]byte(`{"fingerprint":"`+strings.Repeat("ab", 32)+`"}`), &s); err != nil {
		return s, err
	}
	s.Uptime, s.Connections, s.Refused = "1h", 3, 4
	s.Time, s.StorageFull, s.DiskLow, s.DiskFree, s.DiskSize, s.DiskFreeWarn = f.now, f.diskFull, f.diskLow, 100<<20, 8<<30, 256<<20
	return s, f.rec("Snapshot()")
}
func (f *recServer) Backup(_ context.Context, w io.Writer) (int64, error) {
	f.rec("Backup()")
	n, err := w.Write([]byte("the store"))
	return int64(n), err
}

func (f *recServer) Backups(context.Context) ([]appliance.BackupInfo, error) {
	return []appliance.BackupInfo{{Name: "server-20261203T020000Z.db", Path: "/data/backups/server-20261203T020000Z.db", Time: f.now.Add(-26 * time.Hour), Size: 65536}}, f.rec("Backups()")
}

func (f *recServer) CheckStore(context.Context) (appliance.StoreCheck, error) {
	f.rec("CheckStore()")
	return appliance.StoreCheck{Path: "DATA/server.db", Records: []appliance.BucketCount{{Bucket: "users", Records: 2}}}, nil
}

func (f *recServer) Events(_ context.Context, n int) ([]appliance.Event, error) {
	return []appliance.Event{{Time: f.now, Kind: chat.EventBan, Subject: "10.0.0.1", Detail: "spam", Count: 1}}, f.rec("Events(%d)", n)
}
func (f *recServer) Limits(context.Context) (appliance.Limits, error) {
	return f.limits, f.rec("Limits()")
}
func (f *recServer) SetLimits(_ context.Context, l appliance.Limits) error {
	if err := f.rec("SetLimits(%d)", l.MessageBurst); err != nil {
		return err
	}
	if err := l.Validate(); err != nil {
		return err
	}
	f.limits = l
	return nil
}
func (f *recServer) SetAdminPassword(_ context.Context, pw string) error {
	return f.rec("SetAdminPassword(%s)", pw)
}
func (f *recServer) CheckAdminPassword(_ context.Context, pw string) (bool, error) {
	return pw != "" && pw == f.password, f.rec("CheckAdminPassword()")
}
func (f *recServer) RecordEvent(_ context.Context, kind chat.EventKind, subject, detail string) {
	f.events = append(f.events, appliance.Event{Kind: kind, Subject: subject, Detail: detail})
}

func newTestInterpreter() (*Interpreter, *recServer, *bytes.Buffer, *int) {
	f := &recServer{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var out bytes.Buffer
	shutdowns := new(int)
	return NewInterpreter(f, &out, func() { *shutdowns++ }), f, &out, shutdowns
}

// TestCommands runs every command, in the console's and the CLI's forms,
// and checks the call it makes and what it prints.
func TestCommands(t *testing.T) {
	tests := []struct {
		line string
		call string // the Server call; "" for none
		out  string // a substring of the output
	}{
		{"stats", "Snapshot()", "refused (banned)  4"},
		{"stats", "Snapshot()", "server key        " + strings.TrimSpace(strings.Repeat("abab ", 16)) + "\n"},
		{"!stats", "Snapshot()", "uptime"},
		{"users", "Users()", "never"},
		{"groups", "Groups()", "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b  5        12"},
		{"bans", "Bans()", "noisy net"},
		{"backups", "Backups()", "server-20261203T020000Z.db"},
		{"ban 10.1.2.3", `Ban(10.1.2.3, "", 0s)`, "banned 10.1.2.3\n"},
		{"!ban 10.1.2.3 30m too many requests", `Ban(10.1.2.3, "too many requests", 30m0s)`, "banned 10.1.2.3 until"},
		{"ban 10.0.0.0/8 forever noisy net", `Ban(10.0.0.0/8, "noisy net", 0s)`, "banned 10.0.0.0/8"},
		{"ban user:bob 0 spam", `Ban(user:bob, "spam", 0s)`, "banned user:bob"},
		{"ban user:bob 7d", `Ban(user:bob, "", 168h0m0s)`, ""},
		{"ban user:bob spam and more", `Ban(user:bob, "spam and more", 0s)`, ""},
		{"ban 127.0.0.1 --reason 'testing the ban'", `Ban(127.0.0.1, "testing the ban", 0s)`, ""},
		{"ban 127.0.0.0/8 --for 1h", `Ban(127.0.0.0/8, "", 1h0m0s)`, ""},
		{"ban 127.0.0.0/8 --for 1h 30m", `Ban(127.0.0.0/8, "30m", 1h0m0s)`, ""},
		{"ban --for=2h ::1 --reason=x", `Ban(::1, "x", 2h0m0s)`, ""},
		{`ban 1.2.3.4 "a  quoted   reason"`, `Ban(1.2.3.4, "a  quoted   reason", 0s)`, ""},
		{"unban 10.1.2.3", "Unban(10.1.2.3)", "unbanned 10.1.2.3"},
		{"kick bob", "Kick(bob)", "disconnected bob (2 connections)"},
		{"delete bob", "DeleteUser(bob)", "deleted bob"},
		{"mute bob", "Mute(bob, 0s)", "muted bob until unmuted"},
		{"mute bob 15m", "Mute(bob, 15m0s)", "muted bob for 15m"},
		{"mute bob --for 2h", "Mute(bob, 2h0m0s)", ""},
		{"unmute bob", "Unmute(bob)", "unmuted bob"},
		{"invite", "CreateInvite(1, 0s)", "abcdefghijklmnop\n"},
		{"invite 5", "CreateInvite(5, 0s)", ""},
		{"invite 24h", "CreateInvite(1, 24h0m0s)", ""},
		{"invite 3 7d", "CreateInvite(3, 168h0m0s)", ""},
		{"invite --uses 2 --for 1h", "CreateInvite(2, 1h0m0s)", ""},
		{"invites", "Invites()", "abcdefghijklmnop  3"},
		{"revoke abcdefghijklmnop", "RevokeInvite(abcdefghijklmnop)", "revoked"},
		{"broadcast maintenance at 22:00, back soon", `Broadcast("maintenance at 22:00, back soon")`, "queued for 7 accounts"},
		{"help", "", "broadcast TEXT"},
		{"", "", ""},
		{"   # a comment", "", ""},
		{"!", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			in, f, out, _ := newTestInterpreter()
			if err := in.Exec(context.Background(), tc.line); err != nil {
				t.Fatalf("Exec(%q): %v", tc.line, err)
			}
			got := strings.Join(f.calls, "; ")
			if got != tc.call {
				t.Errorf("Exec(%q) called %q, want %q", tc.line, got, tc.call)
			}
			if !strings.Contains(out.String(), tc.out) {
				t.Errorf("Exec(%q) printed %q, want it to contain %q", tc.line, out, tc.out)
			}
		})
	}
}

// TestExecArgs is the CLI's path: words already split, quotes and all.
func TestExecArgs(t *testing.T) {
	in, f, _, _ := newTestInterpreter()
	if err := in.ExecArgs(context.Background(), []string{"ban", "127.0.0.1", "--reason", "two words"}); err != nil {
		t.Fatal(err)
	}
	if err := in.ExecArgs(context.Background(), []string{"broadcast", "it's", "'quoted'"}); err != nil {
		t.Fatal(err)
	}
	want := `Ban(127.0.0.1, "two words", 0s); Broadcast("it's 'quoted'")`
	if got := strings.Join(f.calls, "; "); got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
}

func TestBadCommands(t *testing.T) {
	tests := []struct{ line, want string }{
		{"frobnicate now", `unknown command "frobnicate" (help lists the commands)`},
		{"ban", "usage: ban TARGET"},
		{"ban 1.2.3.4 spam --reason spam", `the reason is given twice`},
		{"ban 1.2.3.4 5 minutes", `"5" is not a duration`},
		{"ban 1.2.3.4 --for soon", `"soon" is not a duration`},
		{"ban 1.2.3.4 --frobnicate x", "unknown option --frobnicate"},
		{"ban 1.2.3.4 --reason", "option --reason needs a value"},
		{"ban 1.2.3.4 -5m", `"-5m" is not a duration`},
		{"unban", "usage: unban TARGET"},
		{"unban a b", "usage: unban TARGET"},
		{"kick", "usage: kick USER"},
		{"mute bob 1h 2h", "usage: mute USER"},
		{"mute bob later", `"later" is not a duration`},
		{"invite 0", `"0" is not a number of uses`},
		{"invite 1 2 3", "usage: invite"},
		{"invite soon", `"soon" is not a duration`},
		{"revoke", "usage: revoke CODE"},
		{"broadcast", "usage: broadcast TEXT"},
		{"backup", "usage: backup [--force] FILE"},
		{"stats now", "stats takes no arguments"},
		{"backups all", "backups takes no arguments"},
		{"restore backup.db", "restore works with the server stopped: stop it, then run securechat admin --data DIR restore FILE"},
		{`ban 1.2.3.4 "unterminated`, "unterminated \" quote"},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			in, f, _, _ := newTestInterpreter()
			err := in.Exec(context.Background(), tc.line)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Exec(%q) = %v, want an error containing %q", tc.line, err, tc.want)
			}
			if !usage.Is(err) {
				t.Errorf("Exec(%q): %v is not a usage error", tc.line, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Exec(%q): error is not one line: %q", tc.line, err)
			}
			if len(f.calls) != 0 {
				t.Errorf("Exec(%q) called %v", tc.line, f.calls)
			}
			if !strings.Contains(tc.line, `"`) && Check(strings.Fields(tc.line)) == nil {
				t.Errorf("Check(%q) = nil", tc.line)
			}
		})
	}
}

func TestServerErrorsPassThrough(t *testing.T) {
	in, _, _, _ := newTestInterpreter()
	if err := in.Exec(context.Background(), "kick fail"); !errors.Is(err, errFake) || usage.Is(err) {
		t.Errorf("kick fail: %v", err)
	}
}

func TestShutdownAndExit(t *testing.T) {
	in, _, out, shutdowns := newTestInterpreter()
	if err := in.Exec(context.Background(), "exit"); !errors.Is(err, ErrExit) || *shutdowns != 0 {
		t.Errorf("exit: %v, %d shutdowns", err, *shutdowns)
	}
	if err := in.Exec(context.Background(), "!shutdown"); !errors.Is(err, ErrExit) || *shutdowns != 1 {
		t.Errorf("shutdown: %v, %d shutdowns", err, *shutdowns)
	}
	if !strings.Contains(out.String(), "shutting down") {
		t.Errorf("shutdown printed %q", out)
	}
	remote := NewInterpreter(&recServer{}, io.Discard, nil)
	if err := remote.Exec(context.Background(), "shutdown"); err == nil || errors.Is(err, ErrExit) || !strings.Contains(err.Error(), "only in the server's own console") {
		t.Errorf("shutdown without a shutdown func: %v", err)
	}
}

func TestBackupToFile(t *testing.T) {
	in, f, out, _ := newTestInterpreter()
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.db")
	if err := in.Exec(context.Background(), "backup "+file); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "the store" {
		t.Fatalf("backup file: %q, %v", b, err)
	}
	if !strings.Contains(out.String(), "backup written to "+file+" (9 bytes)") || f.calls[0] != "Backup()" {
		t.Errorf("output %q, calls %v", out, f.calls)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	// A directory that does not exist: an error, nothing written, and the
	// temporary file's name appears nowhere.
	if err := in.Exec(context.Background(), "backup "+filepath.Join(dir, "no", "such.db")); err == nil || !strings.HasPrefix(err.Error(), "backup: ") || strings.Contains(err.Error(), ".partial") {
		t.Errorf("backup into a missing directory: %v", err)
	}
	// An existing file is kept unless --force.
	os.WriteFile(file, []byte("older"), 0o600)
	if err := in.Exec(context.Background(), "backup "+file); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("backup over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "older" {
		t.Errorf("the existing file was replaced: %q", b)
	}
	if err := in.Exec(context.Background(), "backup --force "+file); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); string(b) != "the store" {
		t.Errorf("--force did not replace the file: %q", b)
	}
}

func TestRunScript(t *testing.T) {
	in, f, out, _ := newTestInterpreter()
	script := `# nightly moderation
!ban 10.0.0.0/8 24h scanners

   # indented comment
kick bob
bans
unban 10.0.0.0/8
`
	if err := in.RunScript(context.Background(), strings.NewReader(script)); err != nil {
		t.Fatal(err)
	}
	want := `Ban(10.0.0.0/8, "scanners", 24h0m0s); Kick(bob); Bans(); Unban(10.0.0.0/8)`
	if got := strings.Join(f.calls, "; "); got != want {
		t.Errorf("calls %q, want %q", got, want)
	}
	if !strings.Contains(out.String(), "unbanned 10.0.0.0/8") {
		t.Errorf("output %q", out)
	}
}

func TestRunScriptStopsAtFirstError(t *testing.T) {
	in, f, _, _ := newTestInterpreter()
	err := in.RunScript(context.Background(), strings.NewReader("kick alice\n# comment\nkick fail\nkick carol\n"))
	var se *ScriptError
	if !errors.As(err, &se) || se.Line != 3 || !errors.Is(err, errFake) || !strings.HasPrefix(err.Error(), "line 3: ") {
		t.Fatalf("err = %v, want line 3's failure", err)
	}
	if got := strings.Join(f.calls, "; "); got != "Kick(alice); Kick(fail)" {
		t.Errorf("calls %q: the script went on after the error", got)
	}
}

// A syntax error anywhere stops the script before its first line runs.
func TestRunScriptChecksSyntaxFirst(t *testing.T) {
	in, f, _, _ := newTestInterpreter()
	err := in.RunScript(context.Background(), strings.NewReader("kick alice\n\nfrobnicate\n"))
	var se *ScriptError
	if !errors.As(err, &se) || se.Line != 3 || !strings.Contains(err.Error(), `line 3: unknown command "frobnicate"`) {
		t.Fatalf("err = %v", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("calls %v before the syntax error was reported", f.calls)
	}
}

func TestRunScriptExit(t *testing.T) {
	in, f, _, _ := newTestInterpreter()
	if err := in.RunScript(context.Background(), strings.NewReader("kick alice\nexit\nkick bob\n")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.calls, "; "); got != "Kick(alice)" {
		t.Errorf("calls %q after exit", got)
	}
}

func TestConsole(t *testing.T) {
	in, f, out, shutdowns := newTestInterpreter()
	err := in.Console(context.Background(), strings.NewReader("stats\nfrobnicate\n!kick fail\nkick bob\n!exit\nkick never\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.calls, "; "); got != "Snapshot(); Kick(fail); Kick(bob)" {
		t.Errorf("calls %q", got)
	}
	o := out.String()
	for _, want := range []string{consolePrompt, `error: unknown command "frobnicate"`, "error: fake failure", "disconnected bob"} {
		if !strings.Contains(o, want) {
			t.Errorf("console output lacks %q:\n%s", want, o)
		}
	}
	if *shutdowns != 0 || !strings.Contains(o, consoleLeft) {
		t.Errorf("exit: %d shutdowns, output %q", *shutdowns, o)
	}
}

func TestConsoleShutdown(t *testing.T) {
	in, f, out, shutdowns := newTestInterpreter()
	if err := in.Console(context.Background(), strings.NewReader("shutdown\nkick bob\n")); err != nil {
		t.Fatal(err)
	}
	if *shutdowns != 1 || len(f.calls) != 0 || strings.Contains(out.String(), consoleLeft) {
		t.Errorf("%d shutdowns, calls %v", *shutdowns, f.calls)
	}
}

func TestConsoleEOF(t *testing.T) {
	in, f, _, shutdowns := newTestInterpreter()
	if err := in.Console(context.Background(), strings.NewReader("kick bob")); err != nil {
		t.Fatal(err)
	}
	if *shutdowns != 0 || len(f.calls) != 1 {
		t.Errorf("%d shutdowns, calls %v", *shutdowns, f.calls)
	}
}

// The console ends with its context even while the terminal is silent.
func TestConsoleContext(t *testing.T) {
	in, _, _, _ := newTestInterpreter()
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Console(ctx, pr) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the console did not end with its context")
	}
}

func Example() {
	srv := &recServer{}
	in := NewInterpreter(srv, os.Stdout, nil)
	in.RunScript(context.Background(), strings.NewReader(`
# ban a scanner for a day, then look
ban 203.0.113.0/24 forever port scanning
kick mallory
`))
	// Output:
	// banned 203.0.113.0/24
	// disconnected mallory (2 connections)
}

func TestEventsAndLimitsCommands(t *testing.T) {
	in, f, out, _ := newTestInterpreter()
	f.limits = appliance.Limits{MessageRate: 20, MessageBurst: 60, ByteRate: 1 << 20, ByteBurst: 8 << 20, ConnRate: 10, ConnBurst: 30,
		RegisterBurst: 5, LoginFailures: 10, LoginFailureWindow: appliance.Duration(time.Minute), LoginBan: appliance.Duration(15 * time.Minute),
		MaxConns: 20000, MaxConnsPerAddress: 256, MaxConnsPerAccount: 128, AckBurst: 16384, AccountLoginFailures: 20, GroupMaxMembers: 1000, GroupMaxPerAccount: 100}
	ctx := context.Background()
	if err := in.Exec(ctx, "events 5"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ban") || !strings.Contains(out.String(), "10.0.0.1") || f.calls[0] != "Events(5)" {
		t.Errorf("events: %q %q", out, f.calls)
	}
	out.Reset()
	if err := in.Exec(ctx, "limit message_burst 7"); err != nil {
		t.Fatal(err)
	}
	if f.limits.MessageBurst != 7 || !strings.Contains(out.String(), "message_burst is now 7") {
		t.Errorf("limit: %+v %q", f.limits, out)
	}
	out.Reset()
	if err := in.Exec(ctx, "limits"); err != nil || !strings.Contains(out.String(), "message_burst: 7\n") || !strings.Contains(out.String(), "login_ban: 15m\n") {
		t.Errorf("limits: %v %q", err, out)
	}
	for _, bad := range []string{"limit nope 1", "limit message_burst many", "limit message_burst", "events -1", "events 1 2"} {
		if err := Check(strings.Fields(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := in.Exec(ctx, "limit message_burst 0"); err == nil || f.limits.MessageBurst != 7 {
		t.Errorf("an invalid limit was taken: %v", err)
	}
}

func TestEventsCommandNeutralisesControls(t *testing.T) {
	var b bytes.Buffer
	writeEvents(&b, []appliance.Event{{Kind: "auth_failure", Subject: "\x1b[2J\x1b]0;pwned\x07", Detail: "evil\u202etxt"}})
	if strings.ContainsAny(b.String(), "\x1b\x07\u202e") || !strings.Contains(b.String(), "‹U+001B›") {
		t.Errorf("control characters reached the terminal: %q", b.String())
	}
}

// TestUnknownCommandSuggests: a mistyped command names the one it most
// likely meant; nonsense names none.
func TestUnknownCommandSuggests(t *testing.T) {
	for in, want := range map[string]string{"bna": "did you mean ban?", "stat": "did you mean stats?", "unbna": "did you mean unban?", "shutdwon": "did you mean shutdown?", "inv": "did you mean invite"} {
		_, err := parse([]string{in})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	if _, err := parse([]string{"zzzzzz"}); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("nonsense: %v", err)
	}
	if len(consoleCommands) < 20 || !slices.Contains(consoleCommands, "broadcast") {
		t.Errorf("commands read from the help: %v", consoleCommands)
	}
}

// TestBansShowHiddenCharacters: a ban reason's control and bidirectional
// characters are shown as the web page shows them, so a reason cannot
// reorder or hide the lines around it on the operator's terminal.
func TestBansShowHiddenCharacters(t *testing.T) {
	in, f, out, _ := newTestInterpreter()
	f.banReason = "spam\u202egnp.exe\x1b[2J"
	if err := in.Exec(context.Background(), "bans"); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.ContainsAny(got, "\u202e\x1b") || !strings.Contains(got, "‹U+202E›") || !strings.Contains(got, "‹U+001B›") {
		t.Errorf("bans printed %q", got)
	}
}

// TestOneTimeFormat: the console, securechat admin and the web pages show a
// time the same way, local with its zone; the web page's <time> element
// carries the instant for admin.js to show in the browser's zone.
func TestOneTimeFormat(t *testing.T) {
	tm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	want := `<time datetime="2026-01-02T03:04:05Z">` + timeText(tm, "") + `</time>`
	if string(when(tm)) != want || !strings.HasSuffix(timeText(tm, ""), " "+tm.Local().Format("MST")) {
		t.Errorf("web %q, console %q", when(tm), timeText(tm, ""))
	}
	if when(time.Time{}) != "—" {
		t.Errorf("no time on the web: %q", when(time.Time{}))
	}
}
