// Package usage carries command-line usage errors from the subcommands to
// main, which exits 2 for them (docs/design.md §7) and 1 for every other error.
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

// FlagSet is a flag.FlagSet that reports errors as one-line usage errors
// instead of printing help and exiting; only -h prints the help.
type FlagSet struct {
	*flag.FlagSet
	help io.Writer
}

// NewFlagSet returns a FlagSet for the subcommand name that prints -h help to w.
func NewFlagSet(name string, w io.Writer) *FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &FlagSet{FlagSet: fs, help: w}
}

// Parse parses args.
func (fs *FlagSet) Parse(args []string) error {
	err := fs.FlagSet.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(fs.help, "usage: securechat %s [flags]\n", fs.Name())
		fs.SetOutput(fs.help)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		return err
	}
	if err != nil {
		return &Error{Msg: fmt.Sprintf("%s: %v", fs.Name(), err)}
	}
	return nil
}

// Set reports whether the flag name was given on the command line.
func (fs *FlagSet) Set(name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			found = true
		}
	})
	return found
}
