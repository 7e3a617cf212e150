// Package usage carries command-line usage errors from the subcommands to
// main, which exits 2 for them (docs/design.md §7) and 1 for every other error.
package usage

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Error is a command-line usage error.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// Errorf returns a usage Error.
func Errorf(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

// IsHelp reports whether err is a request for help (-h, --help): the
// help was printed, and the command succeeded.
func IsHelp(err error) bool { return errors.Is(err, flag.ErrHelp) }

// Is reports whether err is a usage error (including -h).
func Is(err error) bool {
	var ue *Error
	return errors.As(err, &ue) || errors.Is(err, flag.ErrHelp)
}

// FlagSet is a flag.FlagSet that reports errors as one-line usage errors
// instead of printing help and exiting; only -h prints the help.
type FlagSet struct {
	*flag.FlagSet
	help     io.Writer
	synopsis string // the arguments after the flags, for -h
}

// Synopsis names the command's arguments after its flags in the -h help
// ("[NAME]", "--to NAME TEXT..."), and returns fs.
func (fs *FlagSet) Synopsis(s string) *FlagSet {
	fs.synopsis = s
	return fs
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
		line := "usage: securechat " + fs.Name() + " [flags]"
		if fs.synopsis != "" {
			line += " " + fs.synopsis
		}
		fmt.Fprintln(fs.help, line)
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

// FlagAmong returns the first of args that names one of fs's flags
// ("--to", "-to", "--to=x"), or "": a flag given after the arguments, which
// the flag package would take as an argument.
func (fs *FlagSet) FlagAmong(args []string) string {
	for _, a := range args {
		if a == "--" {
			return ""
		}
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			name, ok = strings.CutPrefix(a, "-")
		}
		name, _, _ = strings.Cut(name, "=")
		if ok && name != "" && fs.Lookup(name) != nil {
			return a
		}
	}
	return ""
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
