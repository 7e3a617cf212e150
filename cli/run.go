package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/securechat/securechat/internal/usage"
)

const help = `usage: securechat COMMAND [flags]

commands:
  serve      run the server
  chat       the terminal client
  register   create an account with this home as its first device
  login      add this home as a device of an existing account, not linked
             (it cannot send or receive messages)
  link       make this home a linked device of an existing account: prints
             a code to approve on one of its devices
  devices    approve (a link code), list, rename, revoke: your devices
  send       send a message (--to NAME, or --group TITLE)
  recv       print received messages
  send-file  send a file, end-to-end encrypted (--to NAME, or --group TITLE)
  files      list the files sent and received; get ID fetches and saves one
  fingerprint [NAME]  your fingerprint, or the safety number with NAME
  trust NAME          accept NAME's changed identity key: the one whose
                      number fingerprint NAME showed (or --safety-number)
  group      create, add, remove, leave, role, list, info: groups
  admin      operate a running server: ban, unban, bans, kick, mute, invite,
             broadcast, users, stats, backup, check ...; admin run FILE runs a
             script; admin salvage OUT saves what a damaged store holds
  home       check this home's file, or salvage a damaged one: check, salvage OUT
  version    print the version

Run securechat COMMAND -h (or securechat help COMMAND) for a command's flags.
`

// Main is the securechat command (docs/design.md §7): args are its
// arguments after the program name, version what `securechat version`
// prints. It returns the exit status: 0 ok, 1 error, 2 usage error, with
// the error on one line of stderr.
func Main(ctx context.Context, args []string, env Env, version string) int {
	err := run(ctx, args, env, version)
	switch {
	case err == nil, usage.IsHelp(err):
		return 0
	case usage.Is(err):
		if _, ok := err.(*usage.Error); ok { // not for -h, which printed the help
			fmt.Fprintln(env.Stderr, "securechat:", err)
		}
		return 2
	default:
		fmt.Fprintln(env.Stderr, "securechat:", err)
		return 1
	}
}

func run(ctx context.Context, args []string, env Env, version string) error {
	if len(args) == 0 {
		io.WriteString(env.Stderr, help)
		return usage.Errorf("no command given")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		return Serve(ctx, args, env, version)
	case "chat":
		return Chat(ctx, args, env)
	case "register":
		return Register(ctx, args, env, false)
	case "login":
		return Register(ctx, args, env, true)
	case "link":
		return Link(ctx, args, env)
	case "devices":
		return Devices(ctx, args, env)
	case "send":
		return Send(ctx, args, env)
	case "recv":
		return Recv(ctx, args, env)
	case "send-file":
		return SendFile(ctx, args, env)
	case "files":
		return Files(ctx, args, env)
	case "fingerprint":
		return Fingerprint(ctx, args, env)
	case "trust":
		return Trust(ctx, args, env)
	case "group":
		return Group(ctx, args, env)
	case "admin":
		return Admin(ctx, args, env)
	case "home":
		return HomeCmd(ctx, args, env)
	case "version", "--version":
		fmt.Fprintln(env.Stdout, "securechat", version)
		return nil
	case "help", "-h", "--help":
		if len(args) > 0 && args[0] != "help" && args[0] != "-h" && args[0] != "--help" {
			return run(ctx, []string{args[0], "--help"}, env, version) // help serve: serve's help
		}
		io.WriteString(env.Stdout, help)
		return nil
	}
	return usage.Errorf("unknown command %q (run securechat help)", cmd)
}
