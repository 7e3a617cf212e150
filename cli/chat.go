package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/internal/qrterm"
	"github.com/securechat/securechat/internal/usage"
	"github.com/securechat/securechat/transport"
	"github.com/securechat/securechat/ui"
)

// Chat is `securechat chat`: the terminal client (docs/design.md §6). On the first
// run in a home it walks through the server (showing its key fingerprint
// to confirm), registering or logging in, and the passphrase that seals the
// home; later runs ask for the passphrase and go straight in.
func Chat(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("chat", env.Stderr)
	dir := homeFlag(fs, env)
	server := fs.String("server", "", "server `HOST:PORT` (first run; the port defaults to 4433)")
	serverKey := fs.String("server-key", "", "expected server key `fingerprint` (first run)")
	invite := fs.String("invite", "", "invite `code`, when the server registers by invitation (first run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usage.Errorf("chat: unexpected argument %q", fs.Arg(0))
	}
	var pin transport.Fingerprint
	if *serverKey != "" {
		var err error
		if pin, err = transport.ParseFingerprint(*serverKey); err != nil {
			return usage.Errorf("chat: --server-key: %v", err)
		}
	}
	setup := firstRunOptions{dir: *dir, server: *server, pin: pin, invite: *invite}
	h, err := openOrSetUp(ctx, env, setup)
	if err != nil {
		return err
	}
	defer h.Close()
	if pending, _ := h.PendingHistory(); pending != nil {
		// The history a linking device sent (the first run's link, or a
		// fetch cut short), before the terminal client starts, so that it
		// opens on the same conversations.
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		c, err := client.Connect(cctx, h, client.Options{})
		cancel()
		if err == nil {
			receiveHistory(ctx, c, env.Stderr)
			c.Close()
		}
	}
	engine, err := client.StartEngine(h, client.EngineOptions{})
	if err != nil {
		return err
	}
	defer engine.Close()
	return ui.New(engine, ui.Options{}).Run(ctx, nil)
}

// firstRunOptions are what the command line gave the first run.
type firstRunOptions struct {
	dir, server string
	pin         transport.Fingerprint
	invite      string
}

// passphraseTries is how often a wrong passphrase is asked again.
const passphraseTries = 3

// openOrSetUp opens a registered home, or runs the first-run dialogue.
func openOrSetUp(ctx context.Context, env Env, o firstRunOptions) (*home.Home, error) {
	if !home.Exists(o.dir) {
		return firstRun(ctx, env, o, env.Getenv("SECURECHAT_PASSPHRASE"))
	}
	h, pass, err := openHome(ctx, env, o.dir)
	if err != nil {
		return nil, err
	}
	warnRolledBack(env, h)
	if _, err := h.Profile(); err == nil {
		return h, nil
	} else if !errors.Is(err, home.ErrNotRegistered) {
		h.Close()
		return nil, err
	}
	h.Close() // sealed but never registered: finish setting it up
	return firstRun(ctx, env, o, pass)
}

// openHome opens an existing home with its passphrase: from
// SECURECHAT_PASSPHRASE, or asked on the terminal and asked again when
// wrong.
func openHome(ctx context.Context, env Env, dir string) (*home.Home, string, error) {
	if pass := env.Getenv("SECURECHAT_PASSPHRASE"); pass != "" {
		h, err := home.Open(dir, home.Options{Passphrase: pass})
		return h, pass, err
	}
	tty, err := openTTY(env)
	if err != nil {
		return nil, "", errors.New("no passphrase for the home: set SECURECHAT_PASSPHRASE or run in a terminal")
	}
	defer tty.close()
	for try := 1; ; try++ {
		pass, err := tty.secret(ctx, "passphrase for this home", false)
		if err != nil {
			return nil, "", err
		}
		h, err := home.Open(dir, home.Options{Passphrase: pass})
		if errors.Is(err, home.ErrWrongPassphrase) && try < passphraseTries {
			fmt.Fprintln(tty.w, "Wrong passphrase, try again.")
			continue
		}
		return h, pass, err
	}
}

// firstRun asks on the terminal for what a new home needs. Each answer is
// checked as soon as it can be, and asked again when wrong: the server
// address and its key, then the name, which the server checks at once
// when registering (CheckName: free, taken, invite needed), the invite
// code, the password; only then the passphrase, and the home is created
// last, just before registering or logging in. What the server can refuse
// only then (a wrong password at login, an invite code not valid, a name
// taken meanwhile) is asked again without starting over. A first run that
// does not finish (an error, Ctrl-C, Ctrl-D) leaves no home behind: what
// it created in dir is removed.
func firstRun(ctx context.Context, env Env, o firstRunOptions, pass string) (h *home.Home, err error) {
	tty, err := openTTY(env)
	if err != nil {
		return nil, err
	}
	defer tty.close()
	undo := undoCreate(o.dir)
	defer func() {
		if err != nil {
			if h != nil {
				h.Close()
				h = nil
			}
			undo()
		}
	}()
	fmt.Fprintf(tty.w, "Setting up securechat in %s.\n", o.dir)
	server, pin, err := askServer(ctx, tty, o.server, o.pin)
	if err != nil {
		return nil, err
	}
	invite := o.invite
	var login bool
	var user string
	for user == "" {
		mode, err := tty.ask(ctx, "Register a new account, link this device to yours on another device, or log in? [r/k/l] ")
		if err != nil {
			return nil, err
		}
		switch strings.ToLower(mode) {
		case "k", "link":
			if user, err = askUser(ctx, tty); err != nil {
				return nil, err
			}
			return linkFirstRun(ctx, tty, o.dir, server, pin, user, pass)
		case "l", "login":
			login = true
			if user, err = askUser(ctx, tty); err != nil {
				return nil, err
			}
		case "r", "register":
			var needInvite bool
			user, needInvite, err = askFreeName(ctx, tty, server, pin)
			if errors.Is(err, errRegClosed) {
				fmt.Fprintln(tty.w, "Registration is closed on this server: log in to an existing account (or Ctrl-C to stop).")
				continue
			}
			if err != nil {
				return nil, err
			}
			if needInvite && invite == "" {
				fmt.Fprintln(tty.w, "This server registers by invitation: its operator gives out invite codes.")
				if invite, err = askInvite(ctx, tty); err != nil {
					return nil, err
				}
			}
		}
	}
	envPassword := env.Getenv("SECURECHAT_PASSWORD")
	if !login && envPassword != "" && len(envPassword) < appliance.MinPassword {
		return nil, fmt.Errorf("SECURECHAT_PASSWORD: password must be at least %d characters", appliance.MinPassword)
	}
	askPassword := func() (string, error) {
		if envPassword != "" {
			return envPassword, nil
		}
		return askAccountPassword(ctx, tty, !login)
	}
	password, err := askPassword()
	if err != nil {
		return nil, err
	}
	if pass == "" {
		if pass, err = tty.secret(ctx, "new passphrase to seal this home (keys and history are encrypted with it)", true); err != nil {
			return nil, err
		}
		warnWeakPassphrase(tty.w, pass)
	}
	if h, err = home.Open(o.dir, home.Options{Passphrase: pass, Create: true}); err != nil {
		return nil, err
	}
	enroll := client.Register
	if login {
		enroll = client.Login
	}
	for {
		fmt.Fprintf(tty.w, "Connecting to %s…\n", server)
		ectx, cancel := context.WithTimeout(ctx, connectTimeout)
		prof, eerr := enroll(ectx, h, client.EnrollOptions{Server: server, User: user, Password: password, Pin: pin, Invite: invite, DeviceName: hostname()})
		cancel()
		if ctx.Err() != nil {
			return h, errInterrupted
		}
		if prof != nil {
			if eerr != nil { // enrolled; only publishing keys failed, and is retried
				fmt.Fprintf(tty.w, "%v\n", eerr)
			}
			fmt.Fprintf(tty.w, "Welcome, %s (device %d). Starting…\n", prof.User, prof.Device)
			time.Sleep(300 * time.Millisecond)
			return h, nil
		}
		var te *transport.Error
		if !errors.As(eerr, &te) {
			return h, eerr
		}
		switch {
		case !login && (te.Code == transport.ErrUserExists || te.Code == transport.ErrInvalidName):
			// Taken since CheckName said it was free (or a server
			// without CheckName).
			fmt.Fprintf(tty.w, "%v: choose another name.\n", te)
			if user, _, err = askFreeName(ctx, tty, server, pin); err != nil {
				return h, err
			}
		case !login && te.Code == transport.ErrRegClosed && strings.Contains(te.Message, "invite"):
			if invite == "" {
				fmt.Fprintln(tty.w, "This server registers by invitation: its operator gives out invite codes.")
			} else {
				fmt.Fprintln(tty.w, "That invite code is unknown, used up or expired.")
			}
			if invite, err = askInvite(ctx, tty); err != nil {
				return h, err
			}
		case login && te.Code == transport.ErrUnauthorized:
			fmt.Fprintln(tty.w, "Wrong user name or password, try again.")
			if user, err = askUser(ctx, tty); err != nil {
				return h, err
			}
			if password, err = askPassword(); err != nil {
				return h, err
			}
		default:
			return h, eerr
		}
	}
}

// linkFirstRun is the first run's link (securechat link, cli/devices.go):
// the home is sealed, the code shown with a QR code, and the run waits for
// a device of the account to approve it. Ctrl-C, or the code expiring,
// leaves no home behind (firstRun's undo).
func linkFirstRun(ctx context.Context, tty *ttyIO, dir, server string, pin transport.Fingerprint, user, pass string) (*home.Home, error) {
	nl, err := client.PrepareLink(user, nil)
	if err != nil {
		return nil, err
	}
	if pass == "" {
		if pass, err = tty.secret(ctx, "new passphrase to seal this home (keys and history are encrypted with it)", true); err != nil {
			return nil, err
		}
		warnWeakPassphrase(tty.w, pass)
	}
	h, err := home.Open(dir, home.Options{Passphrase: pass, Create: true})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(tty.w, "Connecting to %s…\n", server)
	sctx, cancel := context.WithTimeout(ctx, connectTimeout)
	w, err := nl.Start(sctx, server, pin, hostname())
	cancel()
	if ctx.Err() != nil {
		return h, errInterrupted
	}
	if err != nil {
		return h, err
	}
	defer w.Close()
	fmt.Fprintf(tty.w, "Link code: %s\nOn a device of %s, type /devices approve %s in securechat chat (or run securechat devices approve %s). The code is valid until %s; Ctrl-C stops.\n",
		nl.Code, user, nl.Code, nl.Code, chat.FormatTime(w.Expires.Local()))
	if qr, err := qrterm.Render(linkQRPrefix + user + ":" + nl.Code); err == nil {
		io.WriteString(tty.w, qr)
	}
	a, err := w.Wait(ctx)
	if ctx.Err() != nil {
		return h, errInterrupted
	}
	if err != nil {
		return h, linkEnded(err)
	}
	w.Close()
	prof, err := nl.Finish(h, server, w.Fingerprint, a)
	if err != nil {
		return h, err
	}
	fmt.Fprintf(tty.w, "Linked: welcome, %s (device %d). Starting…\n", prof.User, prof.Device)
	time.Sleep(300 * time.Millisecond)
	return h, nil
}

// askServer asks for the server's address until one answers, shows the key
// it presents and asks the person to confirm it; not confirmed, the
// address is asked again (a mistyped address is the usual cause). With
// --server-key (pin) nothing is shown: the key is checked when connecting.
func askServer(ctx context.Context, tty *ttyIO, server string, pin transport.Fingerprint) (string, transport.Fingerprint, error) {
	for {
		if server == "" {
			var err error
			if server, err = tty.ask(ctx, "Server (host:port): "); err != nil {
				return "", pin, err
			}
			if server == "" {
				continue
			}
		}
		server = withDefaultPort(server)
		if !pin.IsZero() {
			return server, pin, nil
		}
		fmt.Fprintf(tty.w, "Connecting to %s…\n", server)
		pctx, cancel := context.WithTimeout(ctx, connectTimeout)
		seen, perr := client.ProbeServer(pctx, server)
		cancel()
		if ctx.Err() != nil {
			return "", pin, errInterrupted
		}
		if perr != nil {
			fmt.Fprintf(tty.w, "%v\n", perr)
			server = ""
			continue
		}
		fmt.Fprintf(tty.w, "The server's key fingerprint is\n  %s\nCompare it with the one the server printed at start (server.fingerprint).\n", seen.Grouped())
		answer, err := tty.ask(ctx, "Is it the same? [y/N] ")
		if err != nil {
			return "", pin, err
		}
		if strings.EqualFold(answer, "y") || strings.EqualFold(answer, "yes") {
			return server, seen, nil
		}
		fmt.Fprintln(tty.w, "Not confirmed; enter the server again (or Ctrl-C to stop).")
		server = ""
	}
}

// errRegClosed is a server closed to registration, as CheckName found.
var errRegClosed = errors.New("registration is closed on this server")

// askFreeName asks for a name to register until the server says it is free
// (CheckName, protocol.md §5.1), so that a taken name is asked again
// before any password. invite reports that registering needs an invite
// code. A server too old to check names takes the name unchecked: its
// Register says.
func askFreeName(ctx context.Context, tty *ttyIO, server string, pin transport.Fingerprint) (user string, invite bool, err error) {
	for {
		if user, err = askUser(ctx, tty); err != nil {
			return "", false, err
		}
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		free, cerr := client.CheckName(cctx, server, pin, user)
		cancel()
		if ctx.Err() != nil {
			return "", false, errInterrupted
		}
		if cerr == nil {
			return user, free.Invite, nil
		}
		var te *transport.Error
		if !errors.As(cerr, &te) {
			return "", false, cerr
		}
		switch te.Code {
		case transport.ErrUserExists, transport.ErrInvalidName:
			fmt.Fprintf(tty.w, "%v: choose another name.\n", te)
		case transport.ErrRateLimited:
			fmt.Fprintf(tty.w, "%v\n", te)
		case transport.ErrRegClosed:
			return "", false, errRegClosed
		case transport.ErrBadRequest: // a server without CheckName
			return user, false, nil
		default:
			return "", false, cerr
		}
	}
}

// askInvite asks for an invite code until one is typed.
func askInvite(ctx context.Context, tty *ttyIO) (string, error) {
	for {
		invite, err := tty.ask(ctx, "Invite code: ")
		if err != nil || invite != "" {
			return invite, err
		}
	}
}

// errInterrupted ends a first run cut short with Ctrl-C or Ctrl-D.
var errInterrupted = errors.New("interrupted: nothing was set up")

// askUser asks for a user name until it has a valid one.
func askUser(ctx context.Context, tty *ttyIO) (string, error) {
	for {
		user, err := tty.ask(ctx, "User name: ")
		if err != nil {
			return "", err
		}
		if user == "" {
			fmt.Fprintln(tty.w, "A name is needed.")
			continue
		}
		if _, err := transport.CanonicalUser(user); err != nil {
			fmt.Fprintf(tty.w, "%v\n", err)
			continue
		}
		return user, nil
	}
}

// askAccountPassword asks for the account password; a new one must be as
// long as the server requires (appliance.MinPassword) and typed twice the
// same, and is asked again at once otherwise.
func askAccountPassword(ctx context.Context, tty *ttyIO, isNew bool) (string, error) {
	for {
		if isNew {
			p, err := tty.secret(ctx, "account password", false)
			if err != nil {
				return "", err
			}
			if len(p) < appliance.MinPassword {
				fmt.Fprintf(tty.w, "The password must be at least %d characters, try again.\n", appliance.MinPassword)
				continue
			}
			again, err := tty.secret(ctx, "again", false)
			if err != nil {
				return "", err
			}
			if again != p {
				fmt.Fprintln(tty.w, "The two entries do not match, try again.")
				continue
			}
			return p, nil
		}
		p, err := tty.secret(ctx, "account password", false)
		if err != nil || p != "" {
			return p, err
		}
	}
}

// defaultPort is the server's QUIC port when an address names none.
const defaultPort = "4433"

// withDefaultPort adds defaultPort to an address without a port.
func withDefaultPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	return net.JoinHostPort(host, defaultPort)
}

// undoCreate returns a function that removes what was created in dir
// since: dir itself if it did not exist, else the entries that were not
// there.
func undoCreate(dir string) func() {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, iofs.ErrNotExist) {
		return func() { os.RemoveAll(dir) }
	}
	before := map[string]bool{}
	for _, e := range entries {
		before[e.Name()] = true
	}
	return func() {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !before[e.Name()] {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}
}

// ttyIO reads answers from the controlling terminal.
type ttyIO struct {
	r *bufio.Reader
	w io.Writer
	f *os.File
}

func openTTY(env Env) (*ttyIO, error) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, errors.New("this home has no account yet and there is no terminal to set one up: run securechat register first")
	}
	return &ttyIO{r: bufio.NewReader(f), w: f, f: f}, nil
}

// ask asks a question and returns the answer; Ctrl-C (ctx cancelled) or
// Ctrl-D (the end of input) ends it with errInterrupted.
func (t *ttyIO) ask(ctx context.Context, question string) (string, error) {
	fmt.Fprint(t.w, question)
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := t.r.ReadString('\n')
		ch <- answer{line, err}
	}()
	select {
	case a := <-ch:
		if a.err != nil && a.line == "" {
			fmt.Fprintln(t.w)
			if a.err == io.EOF {
				return "", errInterrupted
			}
			return "", a.err
		}
		return strings.TrimSpace(a.line), nil
	case <-ctx.Done():
		fmt.Fprintln(t.w)
		return "", errInterrupted
	}
}

// secret reads a secret without echo, twice if confirm; Ctrl-C (ctx
// cancelled) restores the terminal and ends it with errInterrupted, as
// Ctrl-D does (term.ReadPassword's io.EOF on an empty line).
func (t *ttyIO) secret(ctx context.Context, what string, confirm bool) (string, error) {
	fd := int(t.f.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("no terminal to read the " + what + " from")
	}
	read := func(q string) (string, error) {
		state, err := term.GetState(fd)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(t.w, "%s: ", q)
		type answer struct {
			b   []byte
			err error
		}
		ch := make(chan answer, 1)
		go func() {
			b, err := readNoEcho(t.f)
			ch <- answer{b, err}
		}()
		select {
		case a := <-ch:
			fmt.Fprintln(t.w)
			if errors.Is(a.err, io.EOF) {
				return "", errInterrupted
			}
			return string(a.b), a.err
		case <-ctx.Done():
			term.Restore(fd, state)
			fmt.Fprintln(t.w)
			return "", errInterrupted
		}
	}
	for {
		p, err := read(what)
		if err != nil || !confirm {
			return p, err
		}
		again, err := read("again")
		if err != nil {
			return "", err
		}
		if again == p {
			return p, nil
		}
		fmt.Fprintln(t.w, "The two entries do not match, try again.")
	}
}

func (t *ttyIO) close() { t.f.Close() }
