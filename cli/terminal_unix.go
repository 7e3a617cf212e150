//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package cli

import (
	"os"
	"os/signal"
	"sync"

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

// consoleMode puts the terminal f in the mode the console's line editor
// needs (admin.Terminal): non-canonical, so that keys arrive as typed,
// without echo, since the editor echoes them; signals and output
// processing stay as they were, so Ctrl-C and Ctrl-Z keep working.
// restore puts back the mode it found; it may be called more than once.
func consoleMode(f *os.File) (restore func(), err error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
	if err != nil {
		return nil, err
	}
	mode := *old
	mode.Lflag &^= unix.ECHO | unix.ICANON
	mode.Cc[unix.VMIN], mode.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, ioctlSetTermios, &mode); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { unix.IoctlSetTermios(fd, ioctlSetTermios, old) }) }, nil
}
