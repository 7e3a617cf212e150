//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package cli

import (
	"errors"
	"os"

	"golang.org/x/term"
)

// consoleTerminal reports whether the server may run its console on f.
func consoleTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// consoleMode is not available here: the console reads whole lines.
func consoleMode(*os.File) (func(), error) { return nil, errors.ErrUnsupported }

// readNoEcho reads a line from the terminal f without echo.
func readNoEcho(f *os.File) ([]byte, error) { return term.ReadPassword(int(f.Fd())) }
