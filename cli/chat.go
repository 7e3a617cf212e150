package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

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
	server := fs.String("server", "", "server `HOST:PORT` (first run)")
	serverKey := fs.String("server-key", "", "expected server key `fingerprint` (first run)")
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
	h, err := openOrSetUp(ctx, env, *dir, *server, pin)
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

// openOrSetUp opens a registered home, or runs the first-run dialogue.
func openOrSetUp(ctx context.Context, env Env, dir, server string, pin transport.Fingerprint) (*home.Home, error) {
	if !home.Exists(dir) {
		return firstRun(ctx, env, dir, server, pin, env.Getenv("SECURECHAT_PASSPHRASE"))
	}
	pass, err := readPassphrase(env, false)
	if err != nil {
		return nil, err
	}
	h, err := home.Open(dir, home.Options{Passphrase: pass})
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
	return firstRun(ctx, env, dir, server, pin, pass)
}

// firstRun asks on the terminal for what a new home needs.
func firstRun(ctx context.Context, env Env, dir, server string, pin transport.Fingerprint, pass string) (*home.Home, error) {
	tty, err := openTTY(env)
	if err != nil {
		return nil, err
	}
	defer tty.close()
	fmt.Fprintf(tty.w, "Setting up securechat in %s.\n", dir)
	if server == "" {
		if server, err = tty.ask("Server (host:port): "); err != nil {
			return nil, err
		}
	}
	if pin.IsZero() {
		pctx, cancel := context.WithTimeout(ctx, connectTimeout)
		seen, err := client.ProbeServer(pctx, server)
		cancel()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(tty.w, "The server's key fingerprint is\n  %s\nCompare it with the one the server printed at start (server.fingerprint).\n", seen.Grouped())
		answer, err := tty.ask("Is it the same? [y/N] ")
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(answer, "y") && !strings.EqualFold(answer, "yes") {
			return nil, errors.New("server key not confirmed: nothing was changed")
		}
		pin = seen
	}
	mode, err := tty.ask("Register a new account or log in to an existing one? [r/l] ")
	if err != nil {
		return nil, err
	}
	login := strings.HasPrefix(strings.ToLower(mode), "l")
	user, err := tty.ask("User name: ")
	if err != nil {
		return nil, err
	}
	if _, err := transport.CanonicalUser(user); err != nil {
		return nil, err
	}
	password := env.Getenv("SECURECHAT_PASSWORD")
	if password == "" {
		if password, err = prompt("account password", !login, "no password: set SECURECHAT_PASSWORD or run in a terminal"); err != nil {
			return nil, err
		}
	}
	if pass == "" {
		if pass, err = readPassphrase(env, true); err != nil {
			return nil, err
		}
	}
	h, err := home.Open(dir, home.Options{Passphrase: pass, Create: true})
	if err != nil {
		return nil, err
	}
	enroll := client.Register
	if login {
		enroll = client.Login
	}
	ectx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	prof, err := enroll(ectx, h, client.EnrollOptions{Server: server, User: user, Password: password, Pin: pin, DeviceName: hostname()})
	if err != nil {
		h.Close()
		return nil, err
	}
	fmt.Fprintf(tty.w, "Welcome, %s (device %d). Starting…\n", prof.User, prof.Device)
	time.Sleep(300 * time.Millisecond)
	return h, nil
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

func (t *ttyIO) ask(question string) (string, error) {
	fmt.Fprint(t.w, question)
	line, err := t.r.ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no answer")
	}
	return strings.TrimSpace(line), nil
}

func (t *ttyIO) close() { t.f.Close() }
