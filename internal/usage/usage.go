// Package usage carries command-line usage errors from the subcommands to
// main, which exits 2 for them (DESIGN §7) and 1 for every other error.
package usage

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Error is a command-line usage error.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// Errorf returns a usage Error.
func Errorf(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

// Is reports whether err is a usage error (including -h).
func Is(err error) bool {
	var ue *Error
	return errors.As(err, &ue) || errors.Is(err, flag.ErrHelp)
}

// NewFlagSet returns a flag set that reports errors instead of exiting and
// prints -h help to w.
func NewFlagSet(name string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fs.SetOutput(w)
		fmt.Fprintf(w, "usage: securechat %s [flags]\n", name)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// Parse parses args, turning flag errors into one-line usage errors.
func Parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return err
	}
	if err != nil {
		return &Error{Msg: fmt.Sprintf("%s: %v", fs.Name(), err)}
	}
	return nil
}

// Set reports whether the flag name was given on the command line.
func Set(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			found = true
		}
	})
	return found
}
