// Command securechat is a self-hosted, end-to-end-encrypted chat server
// (securechat serve) and its clients, in one binary. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/securechat/securechat/admin"
	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/cli"
	"github.com/securechat/securechat/internal/usage"
)

// version is set by the build (-ldflags "-X main.version=…").
var version = "dev"

const help = `usage: securechat COMMAND [flags]

commands:
  serve      run the server
  chat       the terminal client
  register   create an account with this home as its first device
  login      add this home as a device of an existing account
  send       send a message
  recv       print received messages
  fingerprint [NAME]  your fingerprint, or the safety number with NAME
  trust NAME          accept NAME's changed identity key
  admin      operate a running server: ban, unban, bans, kick, mute, invite,
             broadcast, users, stats, backup ...; admin run FILE runs a script
  version    print the version

Run securechat COMMAND -h for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], cli.OSEnv())
	stop()
	switch {
	case err == nil:
	case usage.Is(err):
		if _, ok := err.(*usage.Error); ok {
			fmt.Fprintln(os.Stderr, "securechat:", err)
		}
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "securechat:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, env cli.Env) error {
	if len(args) == 0 {
		io.WriteString(env.Stderr, help)
		return usage.Errorf("no command given")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, args, env)
	case "chat":
		return cli.Chat(ctx, args, env)
	case "register":
		return cli.Register(ctx, args, env, false)
	case "login":
		return cli.Register(ctx, args, env, true)
	case "send":
		return cli.Send(ctx, args, env)
	case "recv":
		return cli.Recv(ctx, args, env)
	case "fingerprint":
		return cli.Fingerprint(ctx, args, env)
	case "trust":
		return cli.Trust(ctx, args, env)
	case "admin":
		return cli.Admin(ctx, args, env)
	case "version", "--version":
		fmt.Fprintln(env.Stdout, "securechat", version)
		return nil
	case "help", "-h", "--help":
		io.WriteString(env.Stdout, help)
		return nil
	}
	return usage.Errorf("unknown command %q (run securechat help)", cmd)
}

// serve is `securechat serve`. appliance cannot import admin (admin imports
// appliance), so main hands it the admin handler's factory, and the same
// factory starts the stdin console: appliance calls it once, when the
// server is up, with the *appliance.Server the console needs. The console
// runs only when stdin is a terminal in the foreground (consoleTerminal);
// its shutdown cancels serve's context,
// which stops the server gracefully, as SIGTERM does.
func serve(ctx context.Context, args []string, env cli.Env) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var console sync.Once
	return appliance.Run(ctx, args, env.Stdout, env.Stderr, func(s *appliance.Server, token string, log *slog.Logger) http.Handler {
		if f, ok := env.Stdin.(*os.File); ok && consoleTerminal(f) {
			console.Do(func() {
				go func() {
					if err := admin.NewInterpreter(s, env.Stdout, cancel).Console(ctx, f); err != nil {
						log.Warn("console ended; the server keeps running", "err", err)
					}
				}()
			})
		}
		return admin.NewHandler(s, admin.Options{Token: token, Version: version, Log: log})
	})
}
