package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/securechat/securechat/admin"
	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/internal/usage"
)

const adminUsage = "admin [--data DIR | --admin-url URL --token-file F] ban|unban|bans|kick|users|stats|backup ..."

// Admin is `securechat admin` (DESIGN §7): the operator's commands, through
// the admin JSON API of a running server.
func Admin(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("admin", env.Stderr)
	data := fs.String("data", "./securechat-data", "the server's data `directory` (finds admin.addr and admin.token)")
	apiURL := fs.String("admin-url", "", "admin API `URL` (instead of --data)")
	tokenFile := fs.String("token-file", "", "`file` holding the admin token (with --admin-url)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usage.Errorf("usage: securechat %s", adminUsage)
	}
	c, err := newAdminClient(*data, *apiURL, *tokenFile)
	if err != nil {
		return err
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	switch cmd {
	case "stats":
		var s appliance.StatsSnapshot
		if err := c.do(ctx, http.MethodGet, "/api/stats", nil, &s); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "uptime\t%s\nconnections\t%d\naccepted\t%d\nmessages in\t%d\ndeliveries\t%d\nauth failures\t%d\nrefused (banned)\t%d\nqueued\t%d\nstore bytes\t%d\nbans\t%d\nserver key\t%s\n",
			s.Uptime, s.Connections, s.Accepted, s.MessagesIn, s.Deliveries, s.AuthFailed, s.Refused, s.QueueDepth, s.StoreBytes, s.Bans, s.Fingerprint)
		return tw.Flush()
	case "users":
		var users []appliance.UserInfo
		if err := c.do(ctx, http.MethodGet, "/api/users", nil, &users); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tDEVICES\tONLINE\tLAST SEEN\tBANNED")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%v\n", u.Name, u.Devices, u.Online, u.LastSeen.Local().Format("2006-01-02 15:04"), u.Banned)
		}
		return tw.Flush()
	case "bans":
		var bans []appliance.Ban
		if err := c.do(ctx, http.MethodGet, "/api/bans", nil, &bans); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TARGET\tEXPIRES\tREASON")
		for _, b := range bans {
			exp := "never"
			if !b.Expires.IsZero() {
				exp = b.Expires.Local().Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", b.Target, exp, b.Reason)
		}
		return tw.Flush()
	case "ban":
		bfs := usage.NewFlagSet("admin ban", env.Stderr)
		reason := bfs.String("reason", "", "why (shown to the banned client and in the list)")
		dur := bfs.Duration("for", 0, "how long (0: until unbanned)")
		target, err := oneTarget(bfs, rest, "ban IP|CIDR|user:NAME [--for DURATION] [--reason TEXT]")
		if err != nil {
			return err
		}
		var b appliance.Ban
		req := admin.BanRequest{Target: target, Reason: *reason, Duration: dur.String()}
		if err := c.do(ctx, http.MethodPost, "/api/bans", req, &b); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "banned %s\n", b.Target)
		return nil
	case "unban":
		ufs := usage.NewFlagSet("admin unban", env.Stderr)
		target, err := oneTarget(ufs, rest, "unban IP|CIDR|user:NAME")
		if err != nil {
			return err
		}
		if err := c.do(ctx, http.MethodDelete, "/api/bans?target="+url.QueryEscape(target), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "unbanned %s\n", target)
		return nil
	case "kick":
		kfs := usage.NewFlagSet("admin kick", env.Stderr)
		user, err := oneTarget(kfs, rest, "kick USER")
		if err != nil {
			return err
		}
		var res admin.KickResult
		if err := c.do(ctx, http.MethodPost, "/api/kick", admin.KickRequest{User: user}, &res); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "disconnected %s (%d connections)\n", user, res.Closed)
		return nil
	case "backup":
		if len(rest) != 1 {
			return usage.Errorf("usage: securechat admin backup OUT")
		}
		return c.backup(ctx, rest[0], env)
	}
	return usage.Errorf("admin: unknown command %q (usage: securechat %s)", cmd, adminUsage)
}

func oneTarget(fs *usage.FlagSet, args []string, use string) (string, error) {
	// Flags may follow the target: move it last.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		args = append(args[1:], args[0])
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		return "", usage.Errorf("usage: securechat admin %s", use)
	}
	return fs.Arg(0), nil
}

// adminClient talks to the admin API.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

func newAdminClient(data, apiURL, tokenFile string) (*adminClient, error) {
	if apiURL == "" {
		addr, err := os.ReadFile(filepath.Join(data, appliance.FileAdminAddr))
		if err != nil {
			return nil, fmt.Errorf("no admin API address in %s (is the server running with this --data?)", data)
		}
		apiURL = "http://" + strings.TrimSpace(string(addr))
		if tokenFile == "" {
			tokenFile = filepath.Join(data, appliance.FileAdminToken)
		}
	} else if tokenFile == "" {
		return nil, usage.Errorf("admin: --admin-url needs --token-file")
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	return &adminClient{base: strings.TrimRight(apiURL, "/"), token: strings.TrimSpace(string(token)), http: &http.Client{}}, nil
}

func (c *adminClient) request(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the admin API at %s: is the server running?", c.base)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e admin.ErrorBody
		if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("admin API: %s", resp.Status)
	}
	return resp, nil
}

func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("admin API answered badly: %w", err)
	}
	return nil
}

// backup writes a hot copy of the store to out, atomically.
func (c *adminClient) backup(ctx context.Context, out string, env Env) error {
	resp, err := c.request(ctx, http.MethodGet, "/api/backup", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	tmp := out + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, resp.Body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "backup written to %s (%d bytes); restore by stopping the server and copying it to DATA/server.db\n", out, n)
	return nil
}
