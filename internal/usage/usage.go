// Package usage carries command-line usage errors from the subcommands to
// main, which exits 2 for them (docs/design.md §7) and 1 for every other
// error, and parses a command's flags the way docs/design.md §7 says:
// flags first, then the arguments.
package usage

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Error is a command-line usage error. Its message is one line, or one
// line per mistake when a command line has several.
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

// After is what a command makes of a flag after its first argument.
type After int

const (
	// Refused: a flag after the arguments is an error, never an argument
	// (the default; docs/design.md §7).
	Refused After = iota
	// Text: the arguments are free text (send's message): one of the
	// command's flags among them is refused, any other word is text, and
	// -- lets the text start with a dash.
	Text
	// Anywhere: flags may come after the arguments too (trust NAME
	// --safety-number DIGITS).
	Anywhere
	// Command: the arguments are a command with flags of its own (admin
	// COMMAND ...): parsing ends at the first argument.
	Command
)

// FlagSet is a flag.FlagSet whose flags are defined as usual but whose
// argument list it parses itself: every mistake is reported, one line each,
// as a usage error; an unknown flag names the one meant; only -h prints the
// help.
type FlagSet struct {
	*flag.FlagSet
	help     io.Writer
	synopsis string // the arguments after the flags, for -h
	after    After
	text     string // what the arguments are, for Text: "the message text"
}

// Synopsis names the command's arguments after its flags in the -h help
// ("[NAME]", "--to NAME TEXT..."), and returns fs.
func (fs *FlagSet) Synopsis(s string) *FlagSet {
	fs.synopsis = s
	return fs
}

// After sets what a flag after the first argument is (Refused unless set);
// what names the arguments in the error for Text ("the message text").
func (fs *FlagSet) After(a After, what string) *FlagSet {
	fs.after, fs.text = a, what
	return fs
}

// NewFlagSet returns a FlagSet for the subcommand name that prints -h help to w.
func NewFlagSet(name string, w io.Writer) *FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &FlagSet{FlagSet: fs, help: w}
}

// Parse parses args: flags (-name, --name, --name=value, --name value)
// up to the first argument or --, then the arguments, among which a flag
// is what fs.After says. It reports every mistake, each on its own line
// naming the command: an unknown flag (with the one meant, when one is
// near), a value a flag does not take, a flag after the arguments. -h or
// --help prints the help and returns flag.ErrHelp.
func (fs *FlagSet) Parse(args []string) error {
	var errs []string
	fail := func(format string, a ...any) { errs = append(errs, fs.Name()+": "+fmt.Sprintf(format, a...)) }
	var rest []string
	inArgs := false // an argument was seen
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		name, value, hasValue, isFlag := splitFlag(a)
		switch {
		case !isFlag:
			inArgs = true
			rest = append(rest, a)
			if fs.after == Command {
				rest = append(rest, args[i+1:]...)
				i = len(args)
			}
			continue
		case inArgs && fs.after == Text && !fs.known(name):
			rest = append(rest, a) // a word of the text that starts with a dash
			continue
		case inArgs && fs.after == Refused && fs.Lookup(name) == nil && (name == "h" || name == "help"):
			fs.printHelp() // fingerprint NAME --help
			return flag.ErrHelp
		case inArgs && fs.after != Anywhere:
			switch {
			case fs.after == Text:
				fail("flag %s after %s: put flags first (or use -- before text starting with -)", a, fs.text)
			case fs.Lookup(name) != nil:
				fail("flag %s after the arguments: put flags first", a)
			default:
				fail("unknown flag %s%s", dashes(a, name), fs.suggest(name))
			}
			continue
		}
		if name == "" || strings.HasPrefix(name, "-") || strings.HasPrefix(name, "=") {
			fail("bad flag syntax: %s", a)
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			if name == "h" || name == "help" {
				fs.printHelp()
				return flag.ErrHelp
			}
			hint := ""
			if fs.after == Text {
				hint = " (use -- before text starting with -)"
			}
			fail("unknown flag %s%s%s", dashes(a, name), fs.suggest(name), hint)
			if !hasValue && i+1 < len(args) && fs.takesValue(fs.Lookup(fs.nearest(name))) && !strings.HasPrefix(args[i+1], "-") {
				i++ // the value of the flag meant, not an argument
			}
			continue
		}
		if !hasValue {
			if isBool(f) {
				value = "true"
			} else if i+1 < len(args) {
				i++
				value = args[i]
			} else {
				fail("flag --%s needs a value", name)
				continue
			}
		}
		if err := fs.FlagSet.Set(name, value); err != nil {
			fail("--%s: %s", name, valueError(f, value, err))
		}
	}
	fs.setArgs(rest)
	if len(errs) > 0 {
		return &Error{Msg: strings.Join(errs, "\n")}
	}
	return nil
}

// CheckText checks args, the free text a command takes after a
// subcommand (admin broadcast TEXT...), as Parse checks a Text command's
// arguments: one of fs's flags among them is refused; the first -- ends the
// check and is dropped. It returns the text's words.
func (fs *FlagSet) CheckText(args []string, what string) ([]string, error) {
	var words, errs []string
	for i, a := range args {
		if a == "--" {
			words = append(words, args[i+1:]...)
			break
		}
		if name, _, _, isFlag := splitFlag(a); isFlag && fs.known(name) {
			errs = append(errs, fmt.Sprintf("%s: flag %s after %s: put flags first (or use -- before text starting with -)", fs.Name(), a, what))
			continue
		}
		words = append(words, a)
	}
	if len(errs) > 0 {
		return nil, &Error{Msg: strings.Join(errs, "\n")}
	}
	return words, nil
}

// setArgs leaves rest as fs.Args(): the embedded flag.FlagSet parses a
// list that is all arguments.
func (fs *FlagSet) setArgs(rest []string) {
	fs.FlagSet.Parse(append([]string{"--"}, rest...)) //nolint:errcheck // "--" then arguments: cannot fail
}

func (fs *FlagSet) printHelp() {
	line := "usage: securechat " + fs.Name() + " [flags]"
	if fs.synopsis != "" {
		line += " " + fs.synopsis
	}
	fmt.Fprintln(fs.help, line)
	fs.SetOutput(fs.help)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// splitFlag reads a as a flag: -name, --name, -name=value, --name=value.
// A lone - is an argument (standard input), as is anything without a
// leading dash.
func splitFlag(a string) (name, value string, hasValue, isFlag bool) {
	if len(a) < 2 || a[0] != '-' {
		return "", "", false, false
	}
	name, value, hasValue = strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
	return name, value, hasValue, true
}

// dashes is the flag a as typed, without its value.
func dashes(a, name string) string {
	if strings.HasPrefix(a, "--") {
		return "--" + name
	}
	return "-" + name
}

func (fs *FlagSet) known(name string) bool {
	return fs.Lookup(name) != nil || name == "h" || name == "help"
}

func (fs *FlagSet) takesValue(f *flag.Flag) bool { return f != nil && !isBool(f) }

// nearest is the command's flag nearest to name, at most 2 edits away
// and fewer than name has letters (-5 is not a misspelt --to); "" if none
// is.
func (fs *FlagSet) nearest(name string) string {
	best, dist := "", min(3, len(name))
	fs.VisitAll(func(f *flag.Flag) {
		if d := EditDistance(name, f.Name); d < dist {
			best, dist = f.Name, d
		}
	})
	return best
}

// suggest is "; did you mean --NAME?" for the flag nearest to name.
func (fs *FlagSet) suggest(name string) string {
	if near := fs.nearest(name); near != "" {
		return "; did you mean --" + near + "?"
	}
	return ""
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// valueError says why value is not one f takes, in words rather than the
// flag package's "parse error".
func valueError(f *flag.Flag, value string, err error) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return err.Error()
	}
	switch g.Get().(type) {
	case bool:
		return strconv.Quote(value) + " is not true or false"
	case int, int64, uint, uint64:
		return strconv.Quote(value) + " is not a whole number"
	case float64:
		return strconv.Quote(value) + " is not a number"
	case time.Duration:
		return strconv.Quote(value) + " is not a duration like 30s, 5m or 1h"
	}
	return err.Error()
}

// EditDistance is the Levenshtein distance between a and b: what every
// "did you mean" measures.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
