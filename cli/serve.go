package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/securechat/securechat/admin"
	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/internal/usage"
	"golang.org/x/term"
)

// Serve is `securechat serve` (docs/design.md §7): it serves until ctx
// ends. Its flags are the settings table's (appliance.Settings): a flag
// that is given wins over the --config file, and what neither sets takes
// its default.
//
// appliance cannot import admin (admin imports appliance), so Serve hands
// it the admin handler's factory, and the same factory starts the stdin
// console: appliance calls it once, when the server is up, with the
// *appliance.Server the console needs. The console runs only when stdin is
// a terminal in the foreground (consoleTerminal); its shutdown cancels
// Serve's context, which stops the server gracefully, as SIGTERM does.
func Serve(ctx context.Context, args []string, env Env, version string) error {
	cfg, done, err := serveConfig(args, env)
	if err != nil || done {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var console sync.Once
	// The log goes through the console's line editor while it runs on the
	// same terminal, so that a log line never overwrites the prompt or
	// what the operator is typing.
	logOut := &switchWriter{w: env.Stderr}
	var modeMu sync.Mutex // guards restore
	restore := func() {}
	defer func() {
		modeMu.Lock()
		defer modeMu.Unlock()
		restore() // the terminal's mode, whatever ended the server
	}()
	cfg.AdminHandler = func(s *appliance.Server, token string, log *slog.Logger) http.Handler {
		if f, ok := env.Stdin.(*os.File); ok && consoleTerminal(f) {
			console.Do(func() {
				in := admin.NewInterpreter(s, env.Stdout, cancel)
				run := func() error { return in.Console(ctx, f) }
				if back, err := consoleMode(f); err == nil {
					modeMu.Lock()
					restore = back
					modeMu.Unlock()
					t := admin.NewTerminal(f, env.Stdout)
					in = admin.NewInterpreter(s, t, cancel)
					run = func() error { return in.ConsoleTerminal(ctx, t) }
					if isTerminal(env.Stderr) {
						logOut.set(t)
					}
				}
				go func() {
					err := run()
					logOut.set(env.Stderr)
					modeMu.Lock()
					restore()
					modeMu.Unlock()
					if err != nil {
						log.Warn("console ended; the server keeps running", "err", err)
					}
				}()
			})
		}
		return admin.NewHandler(s, admin.Options{Token: token, Version: version, Log: log, SourceKey: s.SourceKey})
	}
	cfg.Out = env.Stdout
	cfg.Logger = cfg.NewLogger(logOut)
	// What logs through the std log package (quic-go's warnings) or slog's
	// default logger goes to the server's log too, in its format.
	slog.SetDefault(cfg.Logger)
	srv, err := appliance.New(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "securechat server listening on %s (QUIC over UDP)\n", srv.Addr())
	fmt.Fprintf(env.Stdout, "server key fingerprint: %s\n", srv.Fingerprint().Grouped())
	fmt.Fprintf(env.Stdout, "data directory: %s\n", cfg.Data)
	return srv.Serve(ctx)
}

// switchWriter writes to w, which set changes while writes go on.
type switchWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// serveConfig reads serve's flags and --config file into the validated
// configuration, defaults applied. done: --check-config, --print-config
// or --check-store did all there was to do.
func serveConfig(args []string, env Env) (cfg appliance.Config, done bool, err error) {
	fs := usage.NewFlagSet("serve", env.Stderr)
	configPath := fs.String("config", "", "YAML configuration `file`")
	var flags appliance.Config
	settingFlags(fs, &flags)
	printConfig := fs.Bool("print-config", false, "print the effective configuration as YAML and exit")
	checkConfig := fs.Bool("check-config", false, "validate the configuration and exit")
	checkStoreFlag := fs.Bool("check-store", false, "check the data directory's store as the start does, print what was found and exit (status 1 if it is damaged); the server must be stopped")
	// Every mistake is reported, one line each: the flags' (a usage error,
	// exit status 2, if there is one), the file's (a setting that does not
	// read keeps its default, so it is not reported twice), then the
	// settings out of their bounds or rules.
	var errs []error
	flagsBad := false
	if err := fs.Parse(args); usage.IsHelp(err) {
		return cfg, false, err
	} else if err != nil {
		errs, flagsBad = append(errs, err), true
	}
	if fs.NArg() > 0 {
		errs, flagsBad = append(errs, usage.Errorf("serve: unexpected argument %q", fs.Arg(0))), true
	}
	if *configPath != "" {
		if cfg, err = appliance.LoadConfig(*configPath); err != nil {
			errs = append(errs, err) // unreadable, or every mistake in it
		}
	}
	for _, s := range appliance.Settings() {
		if fs.Set(s.Flag) {
			s.Copy(&cfg, &flags)
		}
	}
	for _, err := range cfg.Problems() {
		errs = append(errs, fmt.Errorf("config: %w", err))
	}
	if flagsBad {
		return cfg, false, &usage.Error{Msg: errors.Join(errs...).Error()}
	}
	if len(errs) > 0 {
		return cfg, false, errors.Join(errs...)
	}
	cfg = cfg.WithDefaults()
	switch {
	case *checkConfig:
		fmt.Fprintln(env.Stdout, "configuration ok")
		return cfg, true, nil
	case *checkStoreFlag:
		return cfg, true, checkStore(cfg.Data, env.Stdout)
	case *printConfig:
		b, err := cfg.YAML()
		if err == nil {
			_, err = env.Stdout.Write(b)
		}
		return cfg, true, err
	}
	return cfg, false, nil
}

// settingFlag is a setting as a flag.Value: it parses as the
// configuration file does (1MiB, 1/60, 30d).
type settingFlag struct {
	s   appliance.Setting
	c   *appliance.Config
	set bool
}

// String is "" until the flag is set, so that help shows the table's
// default (Setting.Usage), not the flag package's.
func (f *settingFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return f.s.Text(f.c)
}

func (f *settingFlag) Set(v string) error {
	f.set = true
	if err := f.s.Set(f.c, v); err != nil {
		_, why, _ := strings.Cut(err.Error(), ": ")
		return errors.New(why)
	}
	return nil
}

// settingFlags defines a flag of fs for each setting of the table, parsed
// into flags. They have zero defaults, so that -h shows the default the
// table gives (Setting.Usage), not the flag package's.
func settingFlags(fs *usage.FlagSet, flags *appliance.Config) {
	for _, s := range appliance.Settings() {
		switch p := s.Field(flags).(type) {
		case *string:
			fs.StringVar(p, s.Flag, "", s.Usage())
		case *bool:
			fs.BoolVar(p, s.Flag, false, s.Usage())
		case *int:
			if s.Kind() == "count" {
				fs.IntVar(p, s.Flag, 0, s.Usage())
				break
			}
			fs.Var(&settingFlag{s: s, c: flags}, s.Flag, s.Usage())
		default: // sizes, rates, durations: read as the file reads them
			fs.Var(&settingFlag{s: s, c: flags}, s.Flag, s.Usage())
		}
	}
}
