package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/securechat/securechat/admin"
	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/internal/usage"
)

const adminUsage = "admin [--data DIR | --admin-url URL --token-file F] COMMAND [ARGS...] | run FILE | passwd [--password-stdin | --clear] | restore FILE (securechat admin help lists the commands)"

// adminTimeout bounds one `securechat admin` invocation.
const adminTimeout = 5 * time.Minute

// Admin is `securechat admin` (docs/design.md §7): one operator command, or a
// script of them (run FILE), through the admin JSON API of a running
// server. The commands and their syntax are the server console's
// (admin.Interpreter).
func Admin(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("admin", env.Stderr).Synopsis("COMMAND [ARGS...] (help lists the commands)").After(usage.Command, "")
	data := fs.String("data", "./securechat-data", "the server's data `directory` (finds admin.addr and admin.token)")
	apiURL := fs.String("admin-url", "", "admin API `URL` (instead of --data)")
	tokenFile := fs.String("token-file", "", "`file` holding the admin token (with --admin-url)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usage.Errorf("usage: securechat %s", adminUsage)
	}
	cmd := fs.Args()
	if cmd[0] == "broadcast" { // free text: admin's own flags go first
		text, err := fs.CheckText(cmd[1:], "the broadcast text")
		if err != nil {
			return err
		}
		cmd = append([]string{"broadcast"}, text...)
	}
	switch cmd[0] {
	case "salvage": // a stopped server's store, not through the admin API
		return salvageStore(*data, cmd[1:], env.Stdout)
	case "check":
		if len(cmd) != 1 {
			return usage.Errorf("usage: securechat admin [--data DIR] check")
		}
		if *apiURL == "" {
			err := checkStore(*data, env.Stdout)
			if !errors.Is(err, store.ErrDataInUse) {
				return err
			}
			// The server runs: its admin API checks the store it holds.
		}
	}
	script := ""
	if cmd[0] == "run" {
		if len(cmd) != 2 {
			return usage.Errorf("usage: securechat admin run FILE (- for standard input)")
		}
		script = cmd[1]
	} else if cmd[0] == "passwd" {
		if err := checkPasswd(cmd[1:]); err != nil {
			return err
		}
	} else if cmd[0] == "restore" {
		if len(cmd) != 2 {
			return usage.Errorf("usage: securechat admin [--data DIR] restore FILE (with the server stopped)")
		}
		return restore(*data, cmd[1], fs.Set("data"), env)
	} else if err := admin.Check(cmd); err != nil {
		return err
	}
	if cmd[0] == "help" {
		return admin.NewInterpreter(nil, env.Stdout, nil).ExecArgs(ctx, cmd)
	}
	base, token, err := adminEndpoint(*data, *apiURL, *tokenFile, fs.Set("data"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	remote := admin.NewRemote(base, token)
	if strings.HasPrefix(base, "https://") {
		if pemCert, err := os.ReadFile(filepath.Join(*data, appliance.FileAdminCert)); err == nil {
			if err := remote.PinCertificate(pemCert); err != nil {
				return err
			}
		}
	}
	if cmd[0] == "passwd" {
		return passwd(ctx, remote, cmd[1:], env)
	}
	in := admin.NewInterpreter(remote, env.Stdout, nil)
	if script == "" {
		err := in.ExecArgs(ctx, cmd)
		if errors.Is(err, admin.ErrExit) {
			return nil
		}
		return err
	}
	return runScript(ctx, in, script, env)
}

// runScript is `securechat admin run FILE`: the first failing line stops
// it, reported as FILE:LINE: error (exit status 1, also for syntax errors:
// the command line itself was fine).
func runScript(ctx context.Context, in *admin.Interpreter, file string, env Env) error {
	r := env.Stdin
	name := "stdin"
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		r, name = f, file
	}
	err := in.RunScript(ctx, r)
	var se *admin.ScriptError
	if errors.As(err, &se) {
		return fmt.Errorf("%s:%d: %v", name, se.Line, se.Err)
	}
	return err
}

// adminEndpoint finds the admin API: what the server wrote in its data
// directory, or --admin-url with the token from --token-file (or from
// --data DIR's admin.token).
func adminEndpoint(data, apiURL, tokenFile string, dataSet bool) (base, token string, err error) {
	switch {
	case apiURL == "":
		if base, token, err = admin.Discover(data); err != nil {
			return "", "", err
		}
	case tokenFile == "" && !dataSet:
		return "", "", usage.Errorf("admin: --admin-url needs --token-file (or --data DIR for DIR/admin.token)")
	case tokenFile == "":
		base, tokenFile = apiURL, filepath.Join(data, appliance.FileAdminToken)
	default:
		base = apiURL
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", "", fmt.Errorf("admin token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	return base, token, nil
}

const passwdUsage = "usage: securechat admin passwd [--password-stdin | --clear]"

func checkPasswd(args []string) error {
	if len(args) > 1 || (len(args) == 1 && args[0] != "--password-stdin" && args[0] != "--clear") {
		return usage.Errorf(passwdUsage)
	}
	return nil
}

// passwd is `securechat admin passwd`: it sets the web admin's password
// (argon2id on the server) from --password-stdin, SECURECHAT_PASSWORD or
// a prompt asked twice; --clear removes it, leaving the admin token.
func passwd(ctx context.Context, remote *admin.Remote, args []string, env Env) error {
	if len(args) == 1 && args[0] == "--clear" {
		if err := remote.SetAdminPassword(ctx, ""); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, "admin password removed; log in with the admin token")
		return nil
	}
	pw, err := readSecret(env, len(args) == 1, true, "new admin password")
	if err != nil {
		return err
	}
	if pw == "" {
		return errors.New("the admin password is empty (use --clear to remove it)")
	}
	if err := remote.SetAdminPassword(ctx, pw); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "admin password set; the web admin takes it or the admin token")
	return nil
}

// restore is `securechat admin [--data DIR] restore FILE`: with the server
// stopped, FILE (a backup) is verified and put in place of DIR's store,
// the store before it kept aside (appliance.Restore, operations.md §7).
// It needs no server: it works on the files. A DIR that does not exist
// is made only when --data names it.
func restore(data, file string, dataSet bool, env Env) error {
	if _, err := os.Stat(data); err != nil && !dataSet {
		return fmt.Errorf("restore: no data directory %s (give --data DIR)", data)
	}
	r, err := appliance.Restore(data, file, time.Now())
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(env.Stdout, "restored %s into %s (%d bytes, verified)\n", file, r.Path, r.Size)
	if r.Aside != "" {
		fmt.Fprintf(env.Stdout, "the store it replaced is kept as %s (delete it once the server runs well)\n", r.Aside)
	}
	if r.OtherKey != "" {
		back := ""
		if r.Aside != "" {
			back = fmt.Sprintf("; if that is not what you meant, move %s back to %s", r.Aside, r.Path)
		}
		fmt.Fprintf(env.Stderr, "securechat: warning: %s holds another server key than the server that ran on %s (fingerprint %s, was %s): every client refuses the restored server until its user accepts the new fingerprint%s\n", file, data, r.OtherKey, r.Before, back)
	}
	fmt.Fprintf(env.Stdout, "start the server: messages stored after the backup was taken are not on it; clients resend what their outboxes hold\n")
	return nil
}
