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
// checked as soon as it can be, and asked again when wrong; what only the
// server can refuse (a taken name, a missing or spent invite code, a wrong
// password at login) is asked again without starting over. A first run
// that does not finish leaves no home behind: what it created in dir is
// removed.
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
	server, pin := o.server, o.pin
	for {
		if server == "" {
			if server, err = tty.ask(ctx, "Server (host:port): "); err != nil {
				return nil, err
			}
			if server == "" {
				continue
			}
		}
		server = withDefaultPort(server)
		if !pin.IsZero() {
			break
		}
		fmt.Fprintf(tty.w, "Connecting to %s…\n", server)
		pctx, cancel := context.WithTimeout(ctx, connectTimeout)
		seen, perr := client.ProbeServer(pctx, server)
		cancel()
		if ctx.Err() != nil {
			return nil, errInterrupted
		}
		if perr != nil {
			fmt.Fprintf(tty.w, "%v\n", perr)
			server = ""
			continue
		}
		fmt.Fprintf(tty.w, "The server's key fingerprint is\n  %s\nCompare it with the one the server printed at start (server.fingerprint).\n", chat.FormatFingerprint(seen.String()))
		answer, err := tty.ask(ctx, "Is it the same? [y/N] ")
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(answer, "y") && !strings.EqualFold(answer, "yes") {
			return nil, errors.New("server key not confirmed: nothing was changed")
		}
		pin = seen
		break
	}
	var login bool
	for {
		mode, err := tty.ask(ctx, "Register a new account or log in to an existing one? [r/l] ")
		if err != nil {
			return nil, err
		}
		if mode = strings.ToLower(mode); mode == "r" || mode == "register" || mode == "l" || mode == "login" {
			login = mode[0] == 'l'
			break
		}
	}
	user, err := askUser(ctx, tty)
	if err != nil {
		return nil, err
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
	invite := o.invite
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
			fmt.Fprintf(tty.w, "%v: choose another name.\n", te)
			if user, err = askUser(ctx, tty); err != nil {
				return h, err
			}
		case !login && te.Code == transport.ErrRegClosed && strings.Contains(te.Message, "invite"):
			if invite == "" {
				fmt.Fprintln(tty.w, "This server registers by invitation: its operator gives out invite codes.")
			} else {
				fmt.Fprintln(tty.w, "That invite code is unknown, used up or expired.")
			}
			for invite = ""; invite == ""; {
				if invite, err = tty.ask(ctx, "Invite code: "); err != nil {
					return h, err
				}
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

// errInterrupted ends a first run cut short with Ctrl-C.
var errInterrupted = errors.New("interrupted: nothing was set up")

// askUser asks for a user name until it has a valid one.
func askUser(ctx context.Context, tty *ttyIO) (string, error) {
	for {
		user, err := tty.ask(ctx, "User name: ")
		if err != nil {
			return "", err
		}
		if user == "" {
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

// ask asks a question and returns the answer; Ctrl-C (ctx cancelled)
// ends it with errInterrupted.
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
			return "", errors.New("no answer")
		}
		return strings.TrimSpace(a.line), nil
	case <-ctx.Done():
		fmt.Fprintln(t.w)
		return "", errInterrupted
	}
}

// secret reads a secret without echo, twice if confirm; Ctrl-C (ctx
// cancelled) restores the terminal and ends it with errInterrupted.
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
			b, err := term.ReadPassword(fd)
			ch <- answer{b, err}
		}()
		select {
		case a := <-ch:
			fmt.Fprintln(t.w)
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
