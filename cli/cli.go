// Package cli implements securechat's scriptable commands of docs/design.md §7
// (register, login, send, recv, fingerprint, trust) on top of the client
// engine, for people, scripts, bots and tests.
package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/internal/usage"
	"github.com/securechat/securechat/transport"
)

// Env is what a command reads and writes besides its arguments.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// OSEnv is the process's environment.
func OSEnv() Env {
	return Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// connectTimeout bounds dialing and authenticating.
const connectTimeout = 15 * time.Second

func homeFlag(fs *usage.FlagSet, env Env) *string {
	def := env.Getenv("SECURECHAT_HOME")
	if def == "" {
		def = home.Default()
	}
	return fs.String("home", def, "client home `directory` (env SECURECHAT_HOME)")
}

// Register is `securechat register` and, with login set, `securechat login`.
func Register(ctx context.Context, args []string, env Env, login bool) error {
	name := "register"
	if login {
		name = "login"
	}
	fs := usage.NewFlagSet(name, env.Stderr)
	dir := homeFlag(fs, env)
	server := fs.String("server", "", "server `HOST:PORT`")
	user := fs.String("user", "", "user `name`")
	serverKey := fs.String("server-key", "", "expected server key `fingerprint` (64 hex digits); without it the key is trusted on first use")
	invite := fs.String("invite", "", "invite `code`, when registration is invite-only")
	deviceName := fs.String("device-name", hostname(), "a `name` for this device")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usage.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	if *server == "" || *user == "" {
		return usage.Errorf("%s: --server and --user are required", name)
	}
	if login && *invite != "" {
		return usage.Errorf("login: --invite is for register")
	}
	var pin transport.Fingerprint
	if *serverKey != "" {
		var err error
		if pin, err = transport.ParseFingerprint(*serverKey); err != nil {
			return usage.Errorf("%s: --server-key: %v", name, err)
		}
	}
	// A home that holds an account is refused before anything is asked
	// or sent: its account would otherwise be found only after the
	// password and the passphrase.
	if err := refuseRegistered(env, *dir); err != nil {
		return err
	}
	canonical, err := transport.CanonicalUser(*user)
	if err != nil {
		return err
	}
	// login's note that the device cannot send or receive yet comes before
	// the password is asked on the terminal, so that a person learns it
	// before typing; otherwise only after success, so that a failure
	// stays one line of stderr.
	noteFirst := login && passwordPrompted(env, *pwStdin)
	if noteFirst {
		fmt.Fprintln(env.Stderr, loginNote(canonical))
	}
	password, err := readPassword(env, *pwStdin, !login)
	if errors.Is(err, errEndOfInput) {
		return errInterrupted // nothing was created yet
	}
	if err != nil {
		return err
	}
	if !login && len(password) < appliance.MinPassword {
		return fmt.Errorf("password must be at least %d characters", appliance.MinPassword)
	}
	pass, err := readPassphrase(env, true)
	if errors.Is(err, errEndOfInput) {
		return errInterrupted
	}
	if err != nil {
		return err
	}
	warnWeakPassphrase(env.Stderr, pass)
	// A register or login that fails leaves no half-made home: what it
	// created in dir is removed, so that the next try may choose another
	// passphrase.
	undo := undoCreate(*dir)
	h, err := home.Open(*dir, home.Options{Passphrase: pass, Create: true})
	if err != nil {
		undo()
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	opts := client.EnrollOptions{Server: *server, User: *user, Password: password, Pin: pin, Invite: *invite, DeviceName: *deviceName}
	enroll := client.Register
	if login {
		enroll = client.Login
	}
	prof, err := enroll(ctx, h, opts)
	if prof == nil {
		h.Close()
		undo()
		return err
	}
	if err != nil { // enrolled; only publishing the keys failed, and is retried
		fmt.Fprintf(env.Stderr, "securechat: warning: %v\n", err)
	}
	defer h.Close()
	if pin.IsZero() {
		fmt.Fprintf(env.Stderr, "server key fingerprint: %s\n  trusted on first use and pinned: compare it with the fingerprint the server printed at start\n", prof.Fingerprint.Grouped())
	}
	verb := "registered"
	if login {
		verb = "logged in"
	}
	fmt.Fprintf(env.Stdout, "%s %s (device %d) on %s\n", verb, prof.User, prof.Device, prof.Server)
	if login && !noteFirst {
		fmt.Fprintln(env.Stderr, loginNote(prof.User))
	}
	return nil
}

// refuseRegistered refuses a home that already holds an account, without
// a prompt and without changing it. The account's name is sealed: it is
// named when SECURECHAT_PASSPHRASE opens the home.
func refuseRegistered(env Env, dir string) error {
	registered, p, err := home.Registered(dir, env.Getenv("SECURECHAT_PASSPHRASE"))
	switch {
	case err != nil:
		return err
	case !registered:
		return nil
	case p != nil:
		return fmt.Errorf("%s already holds the account %s (device %d): use another --home", dir, p.User, p.Device)
	default:
		return fmt.Errorf("%s already holds an account: use another --home", dir)
	}
}

// loginNote is what login says of the device it adds: link makes a device
// that can.
func loginNote(user string) string {
	return fmt.Sprintf("note: a device added with login is not linked to %s's identity key yet: it can log in, but cannot send or receive end-to-end encrypted messages: securechat link (approved on a device of %s) makes a device that can", user, user)
}

// passwordPrompted reports whether readPassword will ask on the terminal:
// no --password-stdin, no SECURECHAT_PASSWORD, and a terminal to ask on.
func passwordPrompted(env Env, fromStdin bool) bool {
	if fromStdin || env.Getenv("SECURECHAT_PASSWORD") != "" {
		return false
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer tty.Close()
	return term.IsTerminal(int(tty.Fd()))
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// readPassword takes the account password from --password-stdin,
// SECURECHAT_PASSWORD or a prompt on the terminal, in that order (docs/design.md §7).
func readPassword(env Env, fromStdin, confirm bool) (string, error) {
	return readSecret(env, fromStdin, confirm, "account password")
}

func readSecret(env Env, fromStdin, confirm bool, what string) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(env.Stdin).ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return "", errors.New("--password-stdin: no password on standard input")
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	if p := env.Getenv("SECURECHAT_PASSWORD"); p != "" {
		return p, nil
	}
	return prompt(what, confirm, "no password: set SECURECHAT_PASSWORD or use --password-stdin")
}

// readPassphrase takes the passphrase that seals the home from
// SECURECHAT_PASSPHRASE or a prompt on the terminal.
// minPassphrase is the passphrase length below which a new home gets a
// warning: the argon2id cost is all that stands between a copied home and
// an offline guesser (docs/security.md §4.10).
const minPassphrase = 12

// warnWeakPassphrase warns, without refusing, about a short passphrase for
// a new home.
func warnWeakPassphrase(w io.Writer, pass string) {
	if n := utf8.RuneCountInString(pass); n < minPassphrase {
		fmt.Fprintf(w, "securechat: warning: a passphrase of %d characters is weak: anyone who copies this home can try guesses offline; %d or more, a few words, is far harder\n", n, minPassphrase)
	}
}

func readPassphrase(env Env, confirm bool) (string, error) {
	if p := env.Getenv("SECURECHAT_PASSPHRASE"); p != "" {
		return p, nil
	}
	what := "passphrase for this home"
	if confirm {
		what = "new passphrase to seal this home (keys and history are encrypted with it)"
	}
	return prompt(what, confirm, "no passphrase for the home: set SECURECHAT_PASSPHRASE or run in a terminal")
}

// errEndOfInput is Ctrl-D at a prompt.
var errEndOfInput = errors.New("interrupted")

// prompt reads a secret from the controlling terminal without echo; Ctrl-D
// on an empty line ends it with errEndOfInput.
func prompt(what string, confirm bool, noTTY string) (string, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", errors.New(noTTY)
	}
	defer tty.Close()
	fd := int(tty.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New(noTTY)
	}
	fmt.Fprintf(tty, "%s: ", what)
	b, err := readNoEcho(tty)
	fmt.Fprintln(tty)
	if errors.Is(err, io.EOF) {
		return "", errEndOfInput
	}
	if err != nil {
		return "", err
	}
	if confirm {
		fmt.Fprint(tty, "again: ")
		again, err := readNoEcho(tty)
		fmt.Fprintln(tty)
		if errors.Is(err, io.EOF) {
			return "", errEndOfInput
		}
		if err != nil {
			return "", err
		}
		if string(again) != string(b) {
			return "", errors.New("the two entries do not match")
		}
	}
	return string(b), nil
}

// warnRolledBack says so when the home was found to be an older copy of
// itself (docs/security.md §4.6).
func warnRolledBack(env Env, h *home.Home) {
	if h.RolledBack() {
		fmt.Fprintf(env.Stderr, "securechat: warning: this home is older than the last one used here (a backup restored?); its sessions were reset so that no message key is used twice. Messages sent to it on the old sessions cannot be read\n")
	}
}

// openEngine opens the home and a one-shot engine on it (docs/design.md
// §6.3): every command goes through the engine.
func openEngine(env Env, dir string) (*home.Home, *client.Engine, error) {
	pass, err := readPassphrase(env, false)
	if err != nil {
		return nil, nil, err
	}
	h, err := home.Open(dir, home.Options{Passphrase: pass})
	if err != nil {
		return nil, nil, err
	}
	warnRolledBack(env, h)
	e, err := client.OpenEngine(h, client.EngineOptions{})
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return h, e, nil
}

// connect opens the home and authenticates.
func connect(ctx context.Context, env Env, dir string, receive bool) (*home.Home, *client.Engine, error) {
	h, e, err := openEngine(env, dir)
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := e.Connect(cctx, receive); err != nil {
		e.Close()
		h.Close()
		return nil, nil, err
	}
	if err := e.KeysError(); err != nil {
		fmt.Fprintf(env.Stderr, "securechat: warning: %v\n", err)
	}
	rctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	st, found, err := e.ResumeHistory(rctx, progressLine(env.Stderr, "receiving your history"))
	reportHistory(env.Stderr, st, found, err)
	return h, e, nil
}

// receiveHistory fetches over c the history a linking device sent, if the
// home still waits for it (client.ResumeHistory: kept until it comes),
// and says on w how it went.
func receiveHistory(ctx context.Context, c *client.Client, w io.Writer) {
	rctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	st, found, err := c.ResumeHistory(rctx, progressLine(w, "receiving your history"))
	reportHistory(w, st, found, err)
}

// reportHistory says what a history fetch brought; a failure is a
// warning, since the fetch is tried again at the next connection.
func reportHistory(w io.Writer, st home.ArchiveStats, found bool, err error) {
	switch {
	case !found:
	case err != nil:
		fmt.Fprintf(w, "securechat: warning: the history did not come yet (it is tried again at the next connection): %v\n", err)
	default:
		fmt.Fprintf(w, "history: %d messages in %d conversations\n", st.Messages, st.Conversations)
	}
}

// flushOutbox resends messages whose confirmation an earlier run lost, and
// what the engine queued.
func flushOutbox(ctx context.Context, e *client.Engine, env Env) error {
	done, err := e.FlushOutbox(ctx)
	for _, o := range done {
		var ue *client.UnconfirmedError
		switch {
		case errors.As(o.Err, &ue):
			fmt.Fprintf(env.Stderr, "earlier message to %s not sent yet: %v\n", o.To, o.Err)
		case o.Err != nil:
			fmt.Fprintf(env.Stderr, "earlier message to %s failed: %v\n", o.To, o.Err)
		}
	}
	return err
}

// recipientFlags adds --to and --group to a command that sends.
func recipientFlags(fs *usage.FlagSet) (to, group *string) {
	return fs.String("to", "", "recipient user `name`"), fs.String("group", "", "the group's `title` (or g:ID), instead of --to")
}

// checkRecipient refuses neither --to nor --group, or both.
func checkRecipient(cmd, to, group string) error {
	switch {
	case to == "" && group == "":
		return usage.Errorf("%s: --to is required (or --group TITLE)", cmd)
	case to != "" && group != "":
		return usage.Errorf("%s: give --to NAME or --group TITLE, not both", cmd)
	}
	return nil
}

// Send is `securechat send`.
func Send(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("send", env.Stderr).Synopsis("TEXT... (or - to read the text from stdin)").After(usage.Text, "the message text")
	dir := homeFlag(fs, env)
	to, group := recipientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkRecipient("send", *to, *group); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usage.Errorf("send: no message text")
	}
	text := strings.Join(fs.Args(), " ")
	if fs.NArg() == 1 && fs.Arg(0) == "-" { // the text from standard input
		b, err := io.ReadAll(io.LimitReader(env.Stdin, client.MaxTextLen+1))
		if err != nil {
			return fmt.Errorf("send: reading the text: %w", err)
		}
		if len(b) > client.MaxTextLen {
			return fmt.Errorf("send: the text is longer than %d bytes", client.MaxTextLen)
		}
		if text = strings.TrimSuffix(string(b), "\n"); text == "" {
			return usage.Errorf("send: no message text on standard input")
		}
	}
	h, e, err := connect(ctx, env, *dir, false)
	if err != nil {
		return err
	}
	defer h.Close()
	defer e.Close()
	if err := flushOutbox(ctx, e, env); err != nil {
		return fmt.Errorf("this message was not sent, since an earlier one still waits: %w", err)
	}
	if *group != "" {
		g, err := e.ResolveGroup(*group)
		if err != nil {
			return err
		}
		_, err = e.SendGroupText(ctx, g.Conversation, text)
		return err
	}
	_, err = e.SendText(ctx, *to, text)
	return err
}

// jsonMessage is one line of `recv --json` (docs/design.md §7).
type jsonMessage struct {
	ID      string           `json:"id"`
	From    string           `json:"from"`
	Group   string           `json:"group"`              // the group's title; "" for a message to you alone
	GroupID string           `json:"group_id,omitempty"` // the group's id (hex)
	Text    string           `json:"text"`
	SentAt  string           `json:"sent_at"`
	Kind    chat.ContentKind `json:"kind"` // by name
	// Verified is false when the message came with an identity key not
	// accepted for From (docs/protocol.md §8.1): From is only claimed.
	Verified bool `json:"verified"`
	// File is the file a message of kind "file" offers (Text is its
	// name): securechat files get ID fetches it.
	File *jsonFileRef `json:"file,omitempty"`
}

// jsonFileRef is a file message's file in `recv --json`.
type jsonFileRef struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	Type string `json:"type"`
}

// Recv is `securechat recv`: it prints what the server has queued, then
// what arrives until --wait passes with nothing new.
func Recv(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("recv", env.Stderr)
	dir := homeFlag(fs, env)
	wait := fs.Duration("wait", 0, "after the queue is empty, keep waiting this long for new messages")
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usage.Errorf("recv: unexpected argument %q", fs.Arg(0))
	}
	if *wait < 0 {
		return usage.Errorf("recv: --wait must not be negative")
	}
	h, e, err := connect(ctx, env, *dir, true)
	if err != nil {
		return err
	}
	defer h.Close()
	defer e.Close()
	if prof, err := h.Profile(); err == nil && len(prof.Keys) == 0 {
		// Only the server's notices can arrive for it: say why nothing else does.
		fmt.Fprintf(env.Stderr, "securechat: warning: %v; only the server's notices arrive here\n", client.ErrNotLinked)
	}
	if err := flushOutbox(ctx, e, env); err != nil && !client.StorageFull(err) {
		return err // a full server's storage only delays what was queued: receive all the same
	}
	titles := make(map[chat.Conversation]string)
	groupTitle := func(m *client.Message) string {
		if !m.Conversation.IsGroup() {
			return ""
		}
		if t, ok := titles[m.Conversation]; ok {
			return t
		}
		t := "g:" + m.Conversation.ID()[:8]
		if gs, err := client.Groups(h); err == nil {
			for _, g := range gs {
				if g.Conversation == m.Conversation {
					t = g.Title
				}
			}
		}
		titles[m.Conversation] = t
		return t
	}
	out := bufio.NewWriter(env.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)

	// show prints a message before the engine keeps and acks it: a message
	// that could not be printed is not acked, and the server keeps it.
	// Receipts are acked, not printed (the engine's rules).
	show := func(m *client.Message) error {
		if *asJSON {
			j := jsonMessage{ID: m.ID, From: m.From.User, Group: groupTitle(m), GroupID: m.Group, Text: m.Text, SentAt: m.SentAt.UTC().Format(time.RFC3339Nano), Kind: m.Kind, Verified: m.Verified()}
			if m.File != nil {
				j.File = &jsonFileRef{Name: m.File.Name, Size: m.File.Plain, Type: m.File.Type}
			}
			if err := enc.Encode(j); err != nil {
				return err
			}
		} else {
			from := m.From.User
			if m.Kind == chat.KindSystem {
				from = client.SystemConversation.String()
			}
			if !m.Verified() && m.Kind != chat.KindSystem {
				from += " (unverified)" // a changed key, or unreadable: from is only claimed
			}
			if t := groupTitle(m); t != "" {
				from += " in " + strconv.Quote(t)
			}
			text := m.Text
			if m.File != nil {
				text = fileLine(m)
			}
			if _, err := fmt.Fprintf(out, "[%s] %s: %s\n", m.SentAt.Local().Format("2006-01-02 15:04:05"), from, text); err != nil {
				return err
			}
		}
		if err := out.Flush(); err != nil {
			return err
		}
		if m.IdentityChanged {
			fmt.Fprintf(env.Stderr, "securechat: warning: %s's identity key has changed; the message above came with the new key. Check the safety number (securechat fingerprint %s) before trusting it\n", m.From.User, m.From.User)
		}
		return nil
	}
	// What recv prints is read: not unread in the terminal client, and
	// answered with a read receipt as well (docs/protocol.md §8.1).
	return e.Receive(ctx, client.ReceiveOptions{Wait: *wait, Show: show, Read: true})
}

// Fingerprint is `securechat fingerprint [NAME]`: this account's own
// fingerprint, or the safety number with NAME (docs/design.md §7).
func Fingerprint(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("fingerprint", env.Stderr).Synopsis("[NAME]")
	dir := homeFlag(fs, env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usage.Errorf("fingerprint: at most one user name")
	}
	var name string
	if fs.NArg() == 1 {
		var err error
		if name, err = transport.CanonicalUser(fs.Arg(0)); err != nil {
			return err
		}
	}
	// Nothing here needs the server but a contact met for the first time:
	// this account's fingerprint, and a known contact's number when the
	// server cannot be reached, come from the home's records.
	h, e, err := openEngine(env, *dir)
	if err != nil {
		return err
	}
	defer h.Close()
	defer e.Close()
	if name == "" {
		fp, err := e.Fingerprint()
		if err != nil {
			return err
		}
		user, _, _ := e.Self()
		fmt.Fprintf(env.Stdout, "%s's fingerprint: %s\n", user, e2ee.FormatSafetyNumber(fp))
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	connErr := e.Connect(cctx, false)
	cancel()
	if connErr != nil && ctx.Err() != nil {
		return connErr
	}
	if connErr == nil {
		if err := e.KeysError(); err != nil {
			fmt.Fprintf(env.Stderr, "securechat: warning: %v\n", err)
		}
	}
	info, err := e.SafetyNumber(chat.Peer(name))
	if errors.Is(err, client.ErrNotConnected) {
		return connErr // a contact never met: the server must be asked
	}
	if err != nil {
		return err
	}
	offline := ""
	if info.Offline {
		offline = " (offline: from your records)"
		fmt.Fprintf(env.Stderr, "securechat: warning: %v; showing the safety number this home recorded\n", connErr)
	}
	fmt.Fprintf(env.Stdout, "safety number with %s: %s%s\n", name, e2ee.FormatSafetyNumber(info.Number), offline)
	switch {
	case info.Changed:
		fmt.Fprintf(env.Stdout, "warning: %s's identity key has CHANGED; sending is blocked. Compare this number with %s in person or over a channel you trust, then run: securechat trust %s (it accepts only the key of this number)\n", name, name, name)
		if info.Conflict {
			fmt.Fprintf(env.Stdout, "warning: yet another new identity key was offered for %s since; it was not taken. Someone may be in the middle: do not accept a number you have not compared\n", name)
		}
	case info.Verified:
		fmt.Fprintln(env.Stdout, "verified")
	default:
		fmt.Fprintf(env.Stdout, "compare it with the number %s sees; it is the same on both sides\n", name)
	}
	if len(info.Unlinked) > 0 {
		fmt.Fprintf(env.Stdout, "note: %s\n", client.UnlinkedText(name, info.Unlinked))
	}
	return nil
}

// Trust is `securechat trust NAME`: accept NAME's changed identity key.
func Trust(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("trust", env.Stderr).Synopsis("NAME").After(usage.Anywhere, "")
	dir := homeFlag(fs, env)
	number := fs.String("safety-number", "", "accept the pending key only if its safety number is `DIGITS` (spaces ignored); without it, only the key whose number securechat fingerprint NAME last showed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Flags may follow the name too: trust NAME --safety-number DIGITS.
	names := fs.Args()
	if len(names) != 1 {
		return usage.Errorf("trust: name one user")
	}
	name, err := transport.CanonicalUser(names[0])
	if err != nil {
		return err
	}
	h, e, err := openEngine(env, *dir)
	if err != nil {
		return err
	}
	defer h.Close()
	defer e.Close()
	accepted, err := e.Trust(chat.Peer(name), *number)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "accepted %s's new identity key with safety number %s; new sessions will use it\n", name, e2ee.FormatSafetyNumber(accepted))
	return nil
}
