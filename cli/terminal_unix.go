//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package cli

import (
	"io"
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

// readNoEcho reads a line from the terminal f without echo, as
// term.ReadPassword does, except that Ctrl-D on an empty line is io.EOF:
// ReadPassword takes the terminal's end of input (a read of 0 bytes, no
// error) as nothing and reads on, so Ctrl-D did nothing at a secret
// prompt.
func readNoEcho(f *os.File) ([]byte, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
	if err != nil {
		return nil, err
	}
	mode := *old
	mode.Lflag &^= unix.ECHO
	mode.Lflag |= unix.ICANON | unix.ISIG
	mode.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, ioctlSetTermios, &mode); err != nil {
		return nil, err
	}
	defer unix.IoctlSetTermios(fd, ioctlSetTermios, old)
	var line []byte
	var buf [256]byte
	for {
		n, err := unix.Read(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 { // Ctrl-D: the end of input, or of a line typed so far
			if len(line) == 0 {
				return nil, io.EOF
			}
			return line, nil
		}
		for _, c := range buf[:n] {
			switch c {
			case '\n':
				return line, nil
			case '\b':
				if len(line) > 0 {
					line = line[:len(line)-1]
				}
			default:
				line = append(line, c)
			}
		}
	}
}
