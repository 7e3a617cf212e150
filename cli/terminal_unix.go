//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package cli

import (
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// consoleTerminal reports whether the server may run its console on f: f
// is a terminal and this process is in the terminal's foreground process
// group. A server started with & in an interactive shell still has the
// terminal as stdin, and its first read would stop the whole server
// (SIGTTIN). SIGTTIN is ignored too, so that a read after the server was
// moved to the background (Ctrl-Z, bg) fails instead, which ends only the
// console.
func consoleTerminal(f *os.File) bool {
	fd := int(f.Fd())
	if !term.IsTerminal(fd) {
		return false
	}
	pgrp, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || pgrp != unix.Getpgrp() {
		return false
	}
	signal.Ignore(unix.SIGTTIN)
	return true
}
