// Command securechat is a self-hosted, end-to-end-encrypted chat server
// (securechat serve) and its clients, in one binary. See README.md; the
// commands are in package cli.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/securechat/securechat/cli"
	"github.com/securechat/securechat/internal/usage"
)

// version is set by the build (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], cli.OSEnv(), version)
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
