package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/internal/usage"
)

// The operator's command language (docs/design.md §4): one interpreter behind the
// server's stdin console, script files (`securechat admin run FILE`) and
// single commands (`securechat admin COMMAND ARGS...`). A line is a
// command and its arguments separated by spaces; a leading '!' (the
// console's habit) is optional; an argument that starts with a quote runs
// to the matching quote; blank lines and lines starting with '#' do
// nothing. The CLI's flag forms (ban --reason TEXT --for DURATION) are
// accepted beside the positional ones.

// consoleHelp lists the commands; help prints it.
const consoleHelp = `commands (a leading ! is optional):
  help                                 this list
  stats                                the server's counters
  users                                accounts, devices, who is online
  groups                               group ids, accounts last addressed, messages
                                       (the server never has a group's title)
  bans                                 bans in force
  ban TARGET [DURATION] [REASON...]    ban an IP, a CIDR prefix or user:NAME
                                       (also --for DURATION --reason TEXT)
  unban TARGET                         lift a ban
  kick USER                            disconnect USER's devices now
  delete USER                          delete USER's account, devices and queued messages
  mute USER [DURATION]                 stop USER from sending (also --for)
  unmute USER                          let USER send again
  invite [USES] [DURATION]             create an invite code and print it
                                       (also --uses N --for DURATION)
  invites                              invite codes still usable
  revoke CODE                          delete an invite code
  broadcast TEXT...                    a notice signed by the server key, to everyone
  backup [--force] FILE                write a hot copy of the store to FILE
                                       (--force replaces an existing FILE)
  backups                              the automatic backups: name, age, size
  restore FILE                         put a backup in place of the store, with
                                       the server stopped (securechat admin only)
  check                                check the store as the server's start does: its pages,
                                       its records, what is damaged
  salvage OUT                          copy what can be read of a damaged store into the new
                                       file OUT (securechat admin --data DIR only, server stopped)
  events [N]                           the N (default 50) most recent events
  limits                               the rate limits in force
  limit KEY VALUE                      change one rate limit now (limits lists the keys)
  shutdown                             stop the server gracefully (console only)
  passwd [--password-stdin | --clear]  set or remove the web admin's password
                                       (securechat admin only, not the console)
  exit                                 leave the console or script; the server keeps running
DURATION is like 30m, 24h or 7d; 0 or forever means no expiry (the default).
`

// consoleLeft is the console's last line, unless it shut the server down.
const consoleLeft = "left the console; the server keeps running (stop it with SIGTERM or Ctrl-C)"

// consolePrompt is the console's prompt.
const consolePrompt = "securechat> "

// maxLine bounds a command line.
const maxLine = 64 << 10

// ErrExit is returned by Exec for exit, and for shutdown once the server
// was told to stop: the console or script ends there, without error.
var ErrExit = errors.New("exit")

// errShutdown is ErrExit after shutdown.
var errShutdown = fmt.Errorf("shutdown: %w", ErrExit)

// Interpreter runs operator commands against a Server: the running
// appliance in-process (the console), or a Remote over the admin API.
// It is not safe for concurrent use.
type Interpreter struct {
	srv      Server
	out      io.Writer
	shutdown func() // nil: shutdown is refused
}

// NewInterpreter returns an interpreter that writes command output to out.
// shutdown stops the server (nil where the interpreter cannot: over the
// admin API there is no shutdown).
func NewInterpreter(srv Server, out io.Writer, shutdown func()) *Interpreter {
	return &Interpreter{srv: srv, out: out, shutdown: shutdown}
}

// action is a parsed command, ready to run.
type action func(ctx context.Context, in *Interpreter) error

// Exec runs one line.
func (in *Interpreter) Exec(ctx context.Context, line string) error {
	args, err := splitLine(line)
	if err != nil || len(args) == 0 {
		return err
	}
	return in.ExecArgs(ctx, args)
}

// ExecArgs runs one command already split into words, as the CLI has it.
func (in *Interpreter) ExecArgs(ctx context.Context, args []string) error {
	act, err := parse(args)
	if err != nil || act == nil {
		return err
	}
	return act(ctx, in)
}

// Check reports whether args is a well-formed command, without running it,
// so that `securechat admin` reports a usage error before it looks for a
// server.
func Check(args []string) error {
	_, err := parse(args)
	return err
}

// ScriptError is a script's first failing line.
type ScriptError struct {
	Line int // 1-based
	Err  error
}

func (e *ScriptError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *ScriptError) Unwrap() error { return e.Err }

// RunScript runs a script: one command a line. Every line is parsed
// before the first runs, so a typo on line 9 does not leave lines 1–8
// applied; then the lines run in order and the first failure stops the
// script with a *ScriptError. exit ends the script early without error.
func (in *Interpreter) RunScript(ctx context.Context, r io.Reader) error {
	type step struct {
		line int
		act  action
	}
	var steps []step
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	for n := 1; sc.Scan(); n++ {
		args, err := splitLine(sc.Text())
		if err == nil && len(args) > 0 {
			var act action
			if act, err = parse(args); act != nil {
				steps = append(steps, step{n, act})
			}
		}
		if err != nil {
			return &ScriptError{Line: n, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the script: %w", err)
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return &ScriptError{Line: s.line, Err: err}
		}
		err := s.act(ctx, in)
		if errors.Is(err, ErrExit) {
			return nil
		}
		if err != nil {
			return &ScriptError{Line: s.line, Err: err}
		}
	}
	return nil
}

// Console is the interactive loop on the server's terminal: a prompt, a
// line, its output or its error, and again, until EOF, exit, shutdown or
// the end of ctx. An error ends only the command, never the console.
// Console reads r line by line, as a terminal in its usual (canonical)
// mode gives them; ConsoleTerminal edits the line itself.
func (in *Interpreter) Console(ctx context.Context, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	return in.console(ctx, consoleInput{
		read: func() (string, error) {
			if sc.Scan() {
				return sc.Text(), nil
			}
			if err := sc.Err(); err != nil {
				return "", err
			}
			return "", io.EOF
		},
		prompt: func() { fmt.Fprint(in.out, consolePrompt) },
	})
}

// consoleInput is where the console's lines come from.
type consoleInput struct {
	read   func() (string, error) // the next line; io.EOF at the end
	prompt func()                 // shows the prompt before a read; nil if read does
	end    func()                 // if not nil, runs before the console's last words
}

func (in *Interpreter) console(ctx context.Context, src consoleInput) error {
	type result struct {
		line string
		err  error
	}
	want := make(chan struct{})
	reads := make(chan result, 1)
	done := make(chan struct{})
	defer close(done)
	// Read in a goroutine so that the console ends with ctx even while a
	// read blocks; a goroutine blocked on the terminal ends with the
	// process. It reads a line only when asked: a line editor shows its
	// prompt as it starts to read, which must come after the output of the
	// command before.
	go func() {
		for {
			select {
			case <-want:
			case <-done:
				return
			}
			line, err := src.read()
			reads <- result{line, err}
			if err != nil {
				return
			}
		}
	}()
	end := func() {
		if src.end != nil {
			src.end()
		}
	}
	fmt.Fprintln(in.out, "admin console: type help for the commands, exit to leave the console")
	for {
		if src.prompt != nil {
			src.prompt()
		}
		want <- struct{}{}
		select {
		case <-ctx.Done():
			end()
			fmt.Fprintln(in.out)
			return nil
		case r := <-reads:
			if r.err != nil {
				end()
				fmt.Fprintln(in.out)
				if r.err != io.EOF {
					return r.err
				}
				fmt.Fprintln(in.out, consoleLeft)
				return nil
			}
			line := r.line
			err := in.Exec(ctx, line)
			if errors.Is(err, ErrExit) {
				end()
				if err != errShutdown {
					fmt.Fprintln(in.out, consoleLeft)
				}
				return nil
			}
			if err != nil {
				fmt.Fprintf(in.out, "error: %v\n", err)
			}
		}
	}
}

// splitLine splits a line into words. A word that starts with " or '
// runs to the matching quote, so a reason or a broadcast can keep its
// spacing; quotes inside a word (don't) are ordinary characters.
func splitLine(line string) ([]string, error) {
	line = strings.TrimSpace(line)
	line = strings.TrimSpace(strings.TrimPrefix(line, "!"))
	if line == "" || line[0] == '#' {
		return nil, nil
	}
	var words []string
	for {
		line = strings.TrimLeft(line, " \t")
		if line == "" {
			return words, nil
		}
		if q := line[0]; q == '"' || q == '\'' {
			end := strings.IndexByte(line[1:], q)
			if end < 0 {
				return nil, usage.Errorf("unterminated %c quote", q)
			}
			words = append(words, line[1:1+end])
			line = line[2+end:]
			continue
		}
		end := strings.IndexAny(line, " \t")
		if end < 0 {
			end = len(line)
		}
		words = append(words, line[:end])
		line = line[end:]
	}
}

// parse turns a command's words into an action. Syntax errors are
// usage errors (exit status 2 from the CLI). An empty command is nil.
func parse(args []string) (action, error) {
	if len(args) == 0 {
		return nil, nil
	}
	name, args := strings.TrimPrefix(args[0], "!"), args[1:]
	switch name {
	case "help":
		return func(_ context.Context, in *Interpreter) error {
			_, err := io.WriteString(in.out, consoleHelp)
			return err
		}, nil
	case "stats":
		return noArgs(name, args, cmdStats)
	case "users":
		return noArgs(name, args, cmdUsers)
	case "groups":
		return noArgs(name, args, cmdGroups)
	case "bans":
		return noArgs(name, args, cmdBans)
	case "backups":
		return noArgs(name, args, cmdBackups)
	case "restore":
		// The server must be stopped: not something a running server's
		// console or its API can do.
		return nil, usage.Errorf("restore works with the server stopped: stop it, then run securechat admin --data DIR restore FILE")
	case "invites":
		return noArgs(name, args, cmdInvites)
	case "exit", "quit":
		return noArgs(name, args, func(context.Context, *Interpreter) error { return ErrExit })
	case "shutdown":
		return noArgs(name, args, cmdShutdown)
	case "ban":
		return parseBan(args)
	case "unban":
		target, err := one(args, "unban TARGET")
		return func(ctx context.Context, in *Interpreter) error {
			if err := in.srv.Unban(ctx, target); err != nil {
				return err
			}
			return in.printf("unbanned %s\n", target)
		}, err
	case "kick":
		user, err := one(args, "kick USER")
		return func(ctx context.Context, in *Interpreter) error {
			n, err := in.srv.Kick(ctx, user)
			if err != nil {
				return err
			}
			return in.printf("disconnected %s (%d connections)\n", user, n)
		}, err
	case "delete":
		user, err := one(args, "delete USER")
		return func(ctx context.Context, in *Interpreter) error {
			if err := in.srv.DeleteUser(ctx, user); err != nil {
				return err
			}
			return in.printf("deleted %s\n", user)
		}, err
	case "mute":
		return parseMute(args)
	case "unmute":
		user, err := one(args, "unmute USER")
		return func(ctx context.Context, in *Interpreter) error {
			if err := in.srv.Unmute(ctx, user); err != nil {
				return err
			}
			return in.printf("unmuted %s\n", user)
		}, err
	case "invite":
		return parseInvite(args)
	case "revoke":
		code, err := one(args, "revoke CODE")
		return func(ctx context.Context, in *Interpreter) error {
			if err := in.srv.RevokeInvite(ctx, code); err != nil {
				return err
			}
			return in.printf("revoked invite %s\n", code)
		}, err
	case "broadcast":
		if len(args) == 0 {
			return nil, usage.Errorf("usage: broadcast TEXT...")
		}
		text := strings.Join(args, " ")
		return func(ctx context.Context, in *Interpreter) error {
			n, err := in.srv.Broadcast(ctx, text)
			if err != nil {
				return err
			}
			return in.printf("broadcast queued for %d accounts\n", n)
		}, nil
	case "events":
		n := 50
		if len(args) > 1 {
			return nil, usage.Errorf("usage: events [N]")
		}
		if len(args) == 1 {
			v, err := strconv.Atoi(args[0])
			if err != nil || v < 1 {
				return nil, usage.Errorf("events: %q is not a positive number", args[0])
			}
			n = v
		}
		return func(ctx context.Context, in *Interpreter) error {
			events, err := in.srv.Events(ctx, n)
			if err != nil {
				return err
			}
			return writeEvents(in.out, events)
		}, nil
	case "limits":
		return noArgs(name, args, func(ctx context.Context, in *Interpreter) error {
			l, err := in.srv.Limits(ctx)
			if err != nil {
				return err
			}
			return writeLimits(in.out, l)
		})
	case "limit":
		if len(args) != 2 {
			return nil, usage.Errorf("usage: limit KEY VALUE (limits lists the keys)")
		}
		key, value := args[0], args[1]
		var probe appliance.Limits
		if err := probe.Set(key, value); err != nil {
			return nil, usage.Errorf("limit: %v", err)
		}
		return func(ctx context.Context, in *Interpreter) error {
			l, err := in.srv.Limits(ctx)
			if err != nil {
				return err
			}
			if err := l.Set(key, value); err != nil {
				return err
			}
			if err := in.srv.SetLimits(ctx, l); err != nil {
				return err
			}
			return in.printf("%s is now %s (until the server stops; put it in the config file to keep it)\n", key, value)
		}, nil
	case "passwd":
		// A password typed here would echo on the server's terminal and
		// stay in a script file.
		return nil, usage.Errorf("passwd is not a console command: run securechat admin --data DIR passwd, which asks for it without echo")
	case "check":
		if len(args) != 0 {
			return nil, usage.Errorf("usage: check")
		}
		return func(ctx context.Context, in *Interpreter) error {
			c, err := in.srv.CheckStore(ctx)
			if err != nil {
				return err
			}
			return PrintStoreCheck(in.out, c)
		}, nil
	case "salvage":
		return nil, usage.Errorf("salvage is not a console command: stop the server, then run securechat admin --data DIR salvage OUT")
	case "backup":
		force := slices.Contains(args, "--force")
		file, err := one(slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "--force" }), "backup [--force] FILE")
		return func(ctx context.Context, in *Interpreter) error { return in.backup(ctx, file, force) }, err
	}
	if near := nearestCommand(name); near != "" {
		return nil, usage.Errorf("unknown command %q: did you mean %s? (help lists the commands)", name, near)
	}
	return nil, usage.Errorf("unknown command %q (help lists the commands)", name)
}

// consoleCommands are the command names consoleHelp lists.
var consoleCommands = func() []string {
	var names []string
	for _, line := range strings.Split(consoleHelp, "\n") {
		if w, ok := strings.CutPrefix(line, "  "); ok && w != "" && w[0] >= 'a' && w[0] <= 'z' {
			names = append(names, strings.Fields(w)[0])
		}
	}
	return names
}()

// nearestCommand is the command a mistyped name most likely meant: one
// that starts with it, or one at most two edits away; "" if none is.
func nearestCommand(name string) string {
	best, bestD := "", 3
	for _, c := range consoleCommands {
		d := editDistance(name, c)
		if len(name) >= 2 && strings.HasPrefix(c, name) {
			d = 1
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the edit distance of a and b, counting a swap of two
// neighbouring letters as one edit (optimal string alignment).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func noArgs(name string, args []string, act action) (action, error) {
	if len(args) > 0 {
		return nil, usage.Errorf("%s takes no arguments", name)
	}
	return act, nil
}

func one(args []string, use string) (string, error) {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return "", usage.Errorf("usage: %s", use)
	}
	return args[0], nil
}

// splitFlags separates the CLI's --name VALUE and --name=VALUE options
// (one or two dashes) from the positional words; "--" ends the options.
func splitFlags(args []string, names ...string) (pos []string, opts map[string]string, err error) {
	opts = make(map[string]string)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(pos, args[i+1:]...), opts, nil
		}
		if len(a) < 2 || a[0] != '-' || !isLetter(strings.TrimLeft(a, "-")) {
			pos = append(pos, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		known := false
		for _, n := range names {
			known = known || n == name
		}
		if !known {
			return nil, nil, usage.Errorf("unknown option %s", a)
		}
		if !hasValue {
			if i+1 == len(args) {
				return nil, nil, usage.Errorf("option %s needs a value", a)
			}
			i++
			value = args[i]
		}
		opts[name] = value
	}
	return pos, opts, nil
}

func isLetter(s string) bool {
	return s != "" && ('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z')
}

// parseDuration reads an expiry as the server's settings read a duration
// (appliance.ParseDuration: 30m, 24h, 7d, 1d12h), up to 100 years, or 0,
// forever or never for none.
func parseDuration(s string) (time.Duration, error) {
	switch s {
	case "0", "forever", "never":
		return 0, nil
	}
	d, err := appliance.ParseDuration(s)
	if err != nil || d <= 0 || d > 100*365*24*time.Hour {
		return 0, usage.Errorf("%q is not a duration like 30m, 24h or 7d (0 or forever: no expiry)", s)
	}
	return d, nil
}

// parseBan reads ban TARGET [DURATION] [REASON...], or the flag forms
// --for DURATION and --reason TEXT. A second word that reads as a
// duration is the duration, one that starts like a number must be one;
// the rest is the reason.
func parseBan(args []string) (action, error) {
	const use = "usage: ban TARGET [DURATION] [REASON...] (or --for DURATION --reason TEXT)"
	pos, opts, err := splitFlags(args, "for", "reason")
	if err != nil {
		return nil, err
	}
	if len(pos) == 0 {
		return nil, usage.Errorf(use)
	}
	target, rest := pos[0], pos[1:]
	var d time.Duration
	if v, ok := opts["for"]; ok {
		if d, err = parseDuration(v); err != nil {
			return nil, err
		}
	} else if len(rest) > 0 {
		v, err := parseDuration(rest[0])
		switch {
		case err == nil:
			d, rest = v, rest[1:]
		case strings.TrimLeft(rest[0], "-+.0123456789") != rest[0]:
			// "5 minutes" or "-1h" would otherwise become a reason and
			// the ban permanent.
			return nil, err
		}
	}
	reason, hasReason := opts["reason"]
	if len(rest) > 0 {
		if hasReason {
			return nil, usage.Errorf("ban: the reason is given twice (%q and --reason)", strings.Join(rest, " "))
		}
		reason = strings.Join(rest, " ")
	}
	return func(ctx context.Context, in *Interpreter) error {
		b, err := in.srv.Ban(ctx, target, reason, d)
		if err != nil {
			return err
		}
		return in.printf("banned %s%s\n", b.Target, untilText(b.Expires))
	}, nil
}

// parseMute reads mute USER [DURATION] or mute USER --for DURATION.
func parseMute(args []string) (action, error) {
	const use = "usage: mute USER [DURATION]"
	pos, opts, err := splitFlags(args, "for")
	if err != nil {
		return nil, err
	}
	if len(pos) == 0 || len(pos) > 2 || (len(pos) == 2 && opts["for"] != "") {
		return nil, usage.Errorf(use)
	}
	user, dur := pos[0], opts["for"]
	if len(pos) == 2 {
		dur = pos[1]
	}
	var d time.Duration
	if dur != "" {
		if d, err = parseDuration(dur); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context, in *Interpreter) error {
		if err := in.srv.Mute(ctx, user, d); err != nil {
			return err
		}
		until := " until unmuted"
		if d > 0 {
			until = " for " + appliance.FormatDuration(d)
		}
		return in.printf("muted %s%s\n", user, until)
	}, nil
}

// parseInvite reads invite [USES] [DURATION] or --uses N --for DURATION.
func parseInvite(args []string) (action, error) {
	const use = "usage: invite [USES] [DURATION]"
	pos, opts, err := splitFlags(args, "uses", "for")
	if err != nil {
		return nil, err
	}
	uses, dur := opts["uses"], opts["for"]
	switch {
	case len(pos) > 2:
		return nil, usage.Errorf(use)
	case len(pos) == 2:
		if uses != "" || dur != "" {
			return nil, usage.Errorf(use)
		}
		uses, dur = pos[0], pos[1]
	case len(pos) == 1:
		// One word: a count of uses, or else a duration.
		if _, err := strconv.Atoi(pos[0]); err == nil && uses == "" {
			uses = pos[0]
		} else if dur == "" {
			dur = pos[0]
		} else {
			return nil, usage.Errorf(use)
		}
	}
	n := 1
	if uses != "" {
		if n, err = strconv.Atoi(uses); err != nil || n < 1 {
			return nil, usage.Errorf("invite: %q is not a number of uses (1 or more)", uses)
		}
	}
	var d time.Duration
	if dur != "" {
		if d, err = parseDuration(dur); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context, in *Interpreter) error {
		inv, err := in.srv.CreateInvite(ctx, n, d)
		if err != nil {
			return err
		}
		// The code alone on the line, so a script can capture it.
		return in.printf("%s\n", inv.Code)
	}, nil
}

func (in *Interpreter) printf(format string, args ...any) error {
	_, err := fmt.Fprintf(in.out, format, args...)
	return err
}

func cmdStats(ctx context.Context, in *Interpreter) error {
	s, err := in.srv.Snapshot(ctx)
	if err != nil {
		return err
	}
	return writeStats(in.out, s)
}

func cmdUsers(ctx context.Context, in *Interpreter) error {
	users, err := in.srv.Users(ctx)
	if err != nil {
		return err
	}
	return writeUsers(in.out, users)
}

func cmdGroups(ctx context.Context, in *Interpreter) error {
	groups, err := in.srv.Groups(ctx)
	if err != nil {
		return err
	}
	return writeGroups(in.out, groups)
}

func cmdBans(ctx context.Context, in *Interpreter) error {
	bans, err := in.srv.Bans(ctx)
	if err != nil {
		return err
	}
	return writeBans(in.out, bans)
}

func cmdBackups(ctx context.Context, in *Interpreter) error {
	list, err := in.srv.Backups(ctx)
	if err != nil {
		return err
	}
	return writeBackups(in.out, list, time.Now())
}

func cmdInvites(ctx context.Context, in *Interpreter) error {
	invites, err := in.srv.Invites(ctx)
	if err != nil {
		return err
	}
	return writeInvites(in.out, invites)
}

func cmdShutdown(_ context.Context, in *Interpreter) error {
	if in.shutdown == nil {
		return errors.New("shutdown works only in the server's own console; stop the server with SIGTERM (or Ctrl-C)")
	}
	in.printf("shutting down\n")
	in.shutdown()
	return errShutdown
}

// PrintStoreCheck prints a check of the store: its size, its records per
// bucket, notes and each damaged part; a damaged store is an error with
// the ways out.
func PrintStoreCheck(out io.Writer, c appliance.StoreCheck) error {
	fmt.Fprintf(out, "store %s: %d bytes, %d pages, transaction %d\n", c.Path, c.Bytes, c.Pages, c.TxID)
	var counts []string
	for _, b := range c.Records {
		counts = append(counts, fmt.Sprintf("%s %d", b.Bucket, b.Records))
	}
	fmt.Fprintf(out, "records read: %s\n", strings.Join(counts, ", "))
	for _, n := range c.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	for _, d := range c.Damage {
		fmt.Fprintf(out, "damaged: %s\n", d)
	}
	if len(c.Damage) > 0 {
		return fmt.Errorf("the store %s is damaged (%d damaged parts, listed above); %s", c.Path, len(c.Damage), appliance.StoreDamageHelp(c.Dir))
	}
	_, err := fmt.Fprintln(out, "store ok")
	return err
}

// backup writes a hot copy of the store to file, atomically: into a
// temporary file beside it, synced, then renamed.
// backup writes the store's hot copy to file through a temporary file
// beside it, renamed into place once synced. An existing file is kept
// unless force; errors name file, never the temporary one.
func (in *Interpreter) backup(ctx context.Context, file string, force bool) error {
	if _, err := os.Lstat(file); err == nil && !force {
		return fmt.Errorf("backup: %s already exists (backup --force FILE replaces it)", file)
	}
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*.partial")
	if err != nil {
		return fmt.Errorf("backup: cannot write in %s: %w", filepath.Dir(file), errors.Unwrap(err))
	}
	tmp := f.Name()
	n, err := in.srv.Backup(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if rerr := os.Rename(tmp, file); rerr != nil {
			err = fmt.Errorf("cannot write %s: %w", file, errors.Unwrap(rerr))
		}
	}
	if err != nil {
		os.Remove(tmp)
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Path == tmp {
			err = fmt.Errorf("writing %s: %w", file, pe.Err)
		}
		return fmt.Errorf("backup: %w", err)
	}
	return in.printf("backup written to %s (%d bytes), mode 0600; it holds the server key and every password hash: keep it as private as the server; restore by stopping the server and copying it to DATA/%s\n", file, n, appliance.FileDB)
}

// Tables, shared by the console and `securechat admin`.

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func timeText(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return chat.FormatTime(t)
}

func untilText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return " until " + timeText(t, "")
}

func writeStats(w io.Writer, s appliance.StatsSnapshot) error {
	tw := table(w)
	fmt.Fprintf(tw, "uptime\t%s\nconnections\t%d\naccepted\t%d\nmessages in\t%d\ngroup messages\t%d\nbytes in\t%d\ndeliveries\t%d\nbytes out\t%d\nauth failures\t%d\nrefused (banned)\t%d\nrate limited\t%d\nqueued\t%d\nstore bytes\t%d\nstore damaged\t%d\nfiles stored\t%d\nfile bytes\t%d\nfile bytes in\t%d\nfile bytes out\t%d\ngroups\t%d\nbans\t%d\n",
		s.Uptime, s.Connections, s.Accepted, s.MessagesIn, s.GroupMessages, s.BytesIn, s.Deliveries, s.BytesOut, s.AuthFailed, s.Refused, s.Limited, s.QueueDepth, s.StoreBytes, s.StoreDamaged,
		s.Blobs, s.BlobBytes, s.BlobBytesIn, s.BlobBytesOut, s.Groups, s.Bans)
	switch {
	case s.StorageFull:
		fmt.Fprintf(tw, "disk\tFULL: sends, registrations and uploads refused until there is room (%d bytes free)\n", s.DiskFree)
	case s.DiskLow:
		fmt.Fprintf(tw, "disk\tLOW: %d of %d bytes free, under disk_free_warn\n", s.DiskFree, s.DiskSize)
	case s.DiskSize > 0:
		fmt.Fprintf(tw, "disk\t%d of %d bytes free\n", s.DiskFree, s.DiskSize)
	}
	fmt.Fprintf(tw, "refused (full)\t%d\nbackups\t%d\nbackups failed\t%d\nserver key\t%s\n", s.StorageFullRefusals, s.Backups, s.BackupsFailed, s.Fingerprint.Grouped())
	return tw.Flush()
}

func writeUsers(w io.Writer, users []appliance.UserInfo) error {
	tw := table(w)
	fmt.Fprintln(tw, "USER\tDEVICES\tONLINE\tLAST SEEN\tBANNED")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%v\n", u.Name, u.Devices, u.Online, timeText(u.LastSeen, "never"), u.Banned)
	}
	return tw.Flush()
}

// writeGroups lists groups by id: the server has no title to show.
func writeGroups(w io.Writer, groups []appliance.GroupInfo) error {
	tw := table(w)
	fmt.Fprintln(tw, "GROUP\tMEMBERS\tMESSAGES\tLAST ACTIVITY\tSTARTED BY\tCREATED")
	for _, g := range groups {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", g.ID, g.Members, g.Messages, timeText(g.LastMessage, "-"), g.Creator, timeText(g.Created, "-"))
	}
	return tw.Flush()
}

func writeBans(w io.Writer, bans []appliance.Ban) error {
	tw := table(w)
	fmt.Fprintln(tw, "TARGET\tEXPIRES\tREASON")
	for _, b := range bans {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", b.Target, timeText(b.Expires, "never"), visible(b.Reason))
	}
	return tw.Flush()
}

// writeBackups lists the automatic backups, newest first, with their age
// at now.
func writeBackups(w io.Writer, list []appliance.BackupInfo, now time.Time) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no automatic backups (backup_every sets how often they are taken)")
		return err
	}
	tw := table(w)
	fmt.Fprintln(tw, "BACKUP\tTAKEN\tAGE\tSIZE\tPATH")
	for _, b := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.Name, timeText(b.Time, "-"), appliance.FormatDuration(max(now.Sub(b.Time), 0).Round(time.Second)), b.Size, b.Path)
	}
	return tw.Flush()
}

func writeInvites(w io.Writer, invites []appliance.Invite) error {
	tw := table(w)
	fmt.Fprintln(tw, "CODE\tUSES LEFT\tCREATED\tEXPIRES")
	for _, inv := range invites {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", inv.Code, inv.Uses, timeText(inv.Created, ""), timeText(inv.Expires, "never"))
	}
	return tw.Flush()
}

// writeEvents prints events with what clients chose made visible, so no
// control sequence reaches the operator's terminal.
func writeEvents(w io.Writer, events []appliance.Event) error {
	tw := table(w)
	fmt.Fprintln(tw, "TIME\tKIND\tSUBJECT\tDETAIL\tTIMES")
	for _, e := range events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", timeText(e.Time, "-"), e.Kind, orDash(visible(e.Subject)), orDash(visible(e.Detail)), e.Count)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeLimits(w io.Writer, l appliance.Limits) error {
	for _, f := range limitFields(l) {
		if _, err := fmt.Fprintf(w, "%s: %s\n", f.Key, f.Value); err != nil {
			return err
		}
	}
	return nil
}
