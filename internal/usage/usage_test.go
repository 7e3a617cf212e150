package usage

import (
	"bytes"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
)

// sendFlags is a FlagSet like send's: --home, --to, --group, free text.
func sendFlags(help *bytes.Buffer) (*FlagSet, *string, *string) {
	fs := NewFlagSet("send", help).Synopsis("TEXT...").After(Text, "the message text")
	fs.String("home", "", "home")
	to := fs.String("to", "", "recipient")
	group := fs.String("group", "", "group")
	return fs, to, group
}

// TestParseText: flags go first; after the text one of the command's
// flags is refused, saying where it goes; other words that start with a
// dash are text; -- ends the flags and is dropped; - alone is an argument.
func TestParseText(t *testing.T) {
	for _, tc := range []struct {
		args []string
		to   string
		text []string
		err  string
	}{
		{args: []string{"--to", "bob", "hello", "world"}, to: "bob", text: []string{"hello", "world"}},
		{args: []string{"-to=bob", "-"}, to: "bob", text: []string{"-"}},
		{args: []string{"--to", "bob", "a", "-5", "--b"}, to: "bob", text: []string{"a", "-5", "--b"}},
		{args: []string{"--to", "bob", "--", "--to", "is", "a", "flag"}, to: "bob", text: []string{"--to", "is", "a", "flag"}},
		{args: []string{"--to", "bob", "x", "--", "--to"}, to: "bob", text: []string{"x", "--to"}},
		{args: []string{"hello", "--to", "bob"}, err: "send: flag --to after the message text: put flags first (or use -- before text starting with -)"},
		{args: []string{"--to", "bob", "hi", "--group=g"}, err: "send: flag --group=g after the message text: put flags first"},
		{args: []string{"--too", "bob", "hello"}, err: "send: unknown flag --too; did you mean --to? (use -- before text starting with -)"},
		{args: []string{"--to", "bob", "-5", "degrees"}, err: "send: unknown flag -5 (use -- before text starting with -)"},
		{args: []string{"--to"}, err: "send: flag --to needs a value"},
		{args: []string{"---to", "bob"}, err: "send: bad flag syntax: ---to"},
	} {
		fs, to, _ := sendFlags(new(bytes.Buffer))
		err := fs.Parse(tc.args)
		if tc.err != "" {
			var ue *Error
			if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%q: %v, want one usage line starting %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || *to != tc.to || !slices.Equal(fs.Args(), tc.text) {
			t.Errorf("%q: to %q, args %q, %v; want %q, %q", tc.args, *to, fs.Args(), err, tc.to, tc.text)
		}
	}
}

// TestParseEveryMistake: every mistake is reported, one line each, and a
// bad value says what the flag takes.
func TestParseEveryMistake(t *testing.T) {
	fs := NewFlagSet("serve", new(bytes.Buffer))
	fs.String("listen", "", "")
	fs.Int("max-conns", 0, "")
	fs.Bool("check-config", false, "")
	fs.Duration("wait", 0, "")
	fs.Float64("rate", 0, "")
	err := fs.Parse([]string{"--lsten", ":1", "--max-conns", "many", "--check-config=maybe", "--wait", "soon", "--rate=fast", "--nothing-like-it"})
	want := []string{
		"serve: unknown flag --lsten; did you mean --listen?",
		`serve: --max-conns: "many" is not a whole number`,
		`serve: --check-config: "maybe" is not true or false`,
		`serve: --wait: "soon" is not a duration like 30s, 5m or 1h`,
		`serve: --rate: "fast" is not a number`,
		"serve: unknown flag --nothing-like-it",
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("got:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	if !Is(err) {
		t.Error("not a usage error")
	}
	if len(fs.Args()) != 0 {
		t.Errorf("the unknown flag's value became an argument: %q", fs.Args())
	}
}

// TestParseAfter: a flag after the arguments is refused by default, taken
// by Anywhere, and left to the subcommand by Command.
func TestParseAfter(t *testing.T) {
	fs := NewFlagSet("fingerprint", new(bytes.Buffer))
	home := fs.String("home", "", "")
	if err := fs.Parse([]string{"bob", "--home", "x"}); err == nil || err.Error() != "fingerprint: flag --home after the arguments: put flags first" || *home != "" {
		t.Errorf("refused: %v (home %q)", err, *home)
	}
	fs = NewFlagSet("fingerprint", new(bytes.Buffer))
	fs.String("home", "", "")
	if err := fs.Parse([]string{"bob", "--hme", "x"}); err == nil || err.Error() != "fingerprint: unknown flag --hme; did you mean --home?" {
		t.Errorf("refused, unknown: %v", err)
	}

	fs = NewFlagSet("trust", new(bytes.Buffer)).After(Anywhere, "")
	home = fs.String("home", "", "")
	num := fs.String("safety-number", "", "")
	if err := fs.Parse([]string{"--home", "h", "bob", "--safety-number", "123"}); err != nil || *home != "h" || *num != "123" || !slices.Equal(fs.Args(), []string{"bob"}) {
		t.Errorf("anywhere: %v %q %q %q", err, *home, *num, fs.Args())
	}
	if !fs.Set("safety-number") || fs.Set("nothing") {
		t.Error("Set does not report what was given")
	}

	fs = NewFlagSet("admin", new(bytes.Buffer)).After(Command, "")
	data := fs.String("data", "", "")
	if err := fs.Parse([]string{"--data", "d", "ban", "1.2.3.4", "--for", "1h", "--", "x"}); err != nil || *data != "d" || !slices.Equal(fs.Args(), []string{"ban", "1.2.3.4", "--for", "1h", "--", "x"}) {
		t.Errorf("command: %v %q %q", err, *data, fs.Args())
	}
	words, err := fs.CheckText([]string{"hello", "-x", "--", "--data"}, "the broadcast text")
	if err != nil || !slices.Equal(words, []string{"hello", "-x", "--data"}) {
		t.Errorf("CheckText: %q %v", words, err)
	}
	if _, err := fs.CheckText([]string{"hello", "--data", "d"}, "the broadcast text"); err == nil || err.Error() != "admin: flag --data after the broadcast text: put flags first (or use -- before text starting with -)" {
		t.Errorf("CheckText of a flag: %v", err)
	}
}

// TestParseHelp: -h and --help print the help and succeed, also after a
// name; a flag given as -h's neighbour does not matter.
func TestParseHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"bob", "--help"}, {"--home", "x", "-help"}} {
		var help bytes.Buffer
		fs := NewFlagSet("fingerprint", &help).Synopsis("[NAME]")
		fs.String("home", "", "client home `directory`")
		if err := fs.Parse(args); !errors.Is(err, flag.ErrHelp) || !IsHelp(err) {
			t.Errorf("%q: %v", args, err)
		}
		if !strings.HasPrefix(help.String(), "usage: securechat fingerprint [flags] [NAME]\n") || !strings.Contains(help.String(), "-home directory") {
			t.Errorf("%q: help %q", args, help.String())
		}
	}
	var help bytes.Buffer
	fs, _, _ := sendFlags(&help)
	if err := fs.Parse([]string{"--to", "bob", "see", "--help"}); err == nil || IsHelp(err) {
		t.Errorf("--help in the message text: %v", err)
	}
}
