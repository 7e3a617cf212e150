// Command securechat is a self-hosted, end-to-end-encrypted chat server
// (securechat serve) and its clients, in one binary. See README.md; the
// commands are in package cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/securechat/securechat/cli"
)

// version is set by the build (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	status := cli.Main(ctx, os.Args[1:], cli.OSEnv(), version)
	stop()
	os.Exit(status)
}
