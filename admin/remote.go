package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/securechat/securechat/appliance"
)

// Remote is a Server reached through the admin JSON API of a running
// server, with the admin token as a bearer token: what `securechat admin`
// drives the Interpreter with. Each call's context bounds its request.
type Remote struct {
	base  string
	token string
	http  *http.Client
}

// NewRemote returns a Remote for the admin API at baseURL
// (http://127.0.0.1:8080) with the admin token.
func NewRemote(baseURL, token string) *Remote {
	return &Remote{
		base:  strings.TrimRight(baseURL, "/"),
		token: strings.TrimSpace(token),
		http:  &http.Client{},
	}
}

// Discover finds a running server's admin API from its data directory:
// the address the server wrote to admin.addr and the token in admin.token.
func Discover(dataDir string) (baseURL, token string, err error) {
	if st, err := os.Stat(dataDir); err != nil || !st.IsDir() {
		return "", "", fmt.Errorf("data directory %s does not exist (give the server's --data)", dataDir)
	}
	addr, err := os.ReadFile(filepath.Join(dataDir, appliance.FileAdminAddr))
	if err != nil {
		// A running server writes listen.addr once it is ready and removes
		// it when it stops; with --admin off it writes no admin.addr.
		if _, lerr := os.Stat(filepath.Join(dataDir, appliance.FileListenAddr)); lerr == nil {
			return "", "", errors.New("the server runs with --admin off: no admin listener (use its console, or restart it with --admin ADDR)")
		}
		return "", "", fmt.Errorf("no admin API address in %s (is the server running with this --data?)", dataDir)
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, appliance.FileAdminToken))
	if err != nil {
		return "", "", fmt.Errorf("admin token: %w", err)
	}
	scheme := "http"
	if _, err := os.Stat(filepath.Join(dataDir, appliance.FileAdminCert)); err == nil {
		scheme = "https" // the server serves TLS and wrote its certificate
	}
	return scheme + "://" + strings.TrimSpace(string(addr)), strings.TrimSpace(string(tok)), nil
}

// PinCertificate makes the Remote accept exactly the certificate in pemCert
// (the admin.crt the server wrote) and no other, self-signed or not.
func (r *Remote) PinCertificate(pemCert []byte) error {
	block, _ := pem.Decode(pemCert)
	if block == nil || block.Type != "CERTIFICATE" {
		return errors.New("admin certificate: not a PEM certificate")
	}
	want := block.Bytes
	r.http = &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // replaced by the exact comparison below
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 || !bytes.Equal(raw[0], want) {
					return errors.New("the admin listener's certificate is not the one in admin.crt")
				}
				return nil
			},
		},
	}}
	return nil
}

// durationText is a duration as the API reads it: "" for none.
func durationText(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return appliance.FormatDuration(d)
}

func (r *Remote) Ban(ctx context.Context, target, reason string, d time.Duration) (appliance.Ban, error) {
	var b appliance.Ban
	err := r.do(ctx, http.MethodPost, "/api/bans", BanRequest{Target: target, Reason: reason, Duration: durationText(d)}, &b)
	return b, err
}

func (r *Remote) Unban(ctx context.Context, target string) error {
	return r.do(ctx, http.MethodDelete, "/api/bans?target="+url.QueryEscape(target), nil, nil)
}

func (r *Remote) Bans(ctx context.Context) ([]appliance.Ban, error) {
	var bans []appliance.Ban
	err := r.do(ctx, http.MethodGet, "/api/bans", nil, &bans)
	return bans, err
}

func (r *Remote) Kick(ctx context.Context, user string) (int, error) {
	var res KickResult
	err := r.do(ctx, http.MethodPost, "/api/kick", KickRequest{User: user}, &res)
	return res.Closed, err
}

// DeleteUser removes an account and its data.
func (r *Remote) DeleteUser(ctx context.Context, user string) error {
	return r.do(ctx, http.MethodDelete, "/api/users?user="+url.QueryEscape(user), nil, nil)
}

func (r *Remote) Mute(ctx context.Context, user string, d time.Duration) error {
	return r.do(ctx, http.MethodPost, "/api/mute", MuteRequest{User: user, Duration: durationText(d)}, nil)
}

func (r *Remote) Unmute(ctx context.Context, user string) error {
	return r.do(ctx, http.MethodDelete, "/api/mute?user="+url.QueryEscape(user), nil, nil)
}

func (r *Remote) CreateInvite(ctx context.Context, uses int, d time.Duration) (appliance.Invite, error) {
	var inv appliance.Invite
	err := r.do(ctx, http.MethodPost, "/api/invites", InviteRequest{Uses: uses, Duration: durationText(d)}, &inv)
	return inv, err
}

func (r *Remote) Invites(ctx context.Context) ([]appliance.Invite, error) {
	var invites []appliance.Invite
	err := r.do(ctx, http.MethodGet, "/api/invites", nil, &invites)
	return invites, err
}

func (r *Remote) RevokeInvite(ctx context.Context, code string) error {
	return r.do(ctx, http.MethodDelete, "/api/invites?code="+url.QueryEscape(code), nil, nil)
}

func (r *Remote) Broadcast(ctx context.Context, text string) (int, error) {
	var res BroadcastResult
	err := r.do(ctx, http.MethodPost, "/api/broadcast", BroadcastRequest{Text: text}, &res)
	return res.Queued, err
}

func (r *Remote) Users(ctx context.Context) ([]appliance.UserInfo, error) {
	var users []appliance.UserInfo
	err := r.do(ctx, http.MethodGet, "/api/users", nil, &users)
	return users, err
}

func (r *Remote) Groups(ctx context.Context) ([]appliance.GroupInfo, error) {
	var groups []appliance.GroupInfo
	err := r.do(ctx, http.MethodGet, "/api/groups", nil, &groups)
	return groups, err
}

func (r *Remote) Snapshot(ctx context.Context) (appliance.StatsSnapshot, error) {
	var s appliance.StatsSnapshot
	err := r.do(ctx, http.MethodGet, "/api/stats", nil, &s)
	return s, err
}

// CheckStore checks the server's store (GET /api/check).
func (r *Remote) CheckStore(ctx context.Context) (appliance.StoreCheck, error) {
	var c appliance.StoreCheck
	err := r.do(ctx, http.MethodGet, "/api/check", nil, &c)
	return c, err
}

// Backup streams the server's hot backup into w.
func (r *Remote) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := r.request(ctx, http.MethodGet, "/api/backup", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("the server sent %d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		return n, fmt.Errorf("receiving the backup: %w", err)
	}
	return n, nil
}

// Backups lists the automatic backups, newest first.
func (r *Remote) Backups(ctx context.Context) ([]appliance.BackupInfo, error) {
	var list []appliance.BackupInfo
	err := r.do(ctx, http.MethodGet, "/api/backups", nil, &list)
	return list, err
}

// Events returns up to n recent events.
func (r *Remote) Events(ctx context.Context, n int) ([]appliance.Event, error) {
	var events []appliance.Event
	err := r.do(ctx, http.MethodGet, fmt.Sprintf("/api/events?n=%d", n), nil, &events)
	return events, err
}

// Limits returns the rate limits in force.
func (r *Remote) Limits(ctx context.Context) (appliance.Limits, error) {
	var l appliance.Limits
	err := r.do(ctx, http.MethodGet, "/api/limits", nil, &l)
	return l, err
}

// SetLimits changes the rate limits of the running server.
func (r *Remote) SetLimits(ctx context.Context, l appliance.Limits) error {
	return r.do(ctx, http.MethodPut, "/api/limits", l, nil)
}

// SetAdminPassword sets (or with "" removes) the web admin's password.
func (r *Remote) SetAdminPassword(ctx context.Context, password string) error {
	return r.do(ctx, http.MethodPut, "/api/password", PasswordRequest{Password: password}, nil)
}

// request sends one request and returns a successful response; an error
// answer becomes an error carrying the server's message.
func (r *Remote) request(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("admin API URL %q: %w", r.base, err)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the admin API at %s: is the server running?", r.base)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e ErrorBody
		if json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("admin API: %s %s: %s", method, path, resp.Status)
	}
	return resp, nil
}

// do sends a JSON request and decodes the JSON answer into out (nil: the
// answer is ignored).
func (r *Remote) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := r.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("admin API answered %s %s badly: %w", method, path, err)
	}
	return nil
}

var _ Server = (*Remote)(nil)
