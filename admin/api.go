// Package admin is the server's web admin (docs/design.md §5), served on the admin
// listener: the pages (web.go, assets in package assets), the JSON API they
// and `securechat admin` use, and Prometheus /metrics, all behind a login
// session or the admin token as a bearer token; and the operator console.
package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/securechat/securechat/appliance"
)

// Server is what the API needs of the appliance: the running
// *appliance.Server in-process, or a Remote over the admin API. Every call
// takes the context of the request or command it serves.
type Server interface {
	Ban(ctx context.Context, target, reason string, d time.Duration) (appliance.Ban, error)
	Unban(ctx context.Context, target string) error
	Bans(ctx context.Context) ([]appliance.Ban, error)
	Kick(ctx context.Context, user string) (int, error)
	// Mute stops user from sending for d (0: until unmuted).
	Mute(ctx context.Context, user string, d time.Duration) error
	Unmute(ctx context.Context, user string) error
	// CreateInvite makes an invite code good for uses registrations until
	// it expires (d 0: never).
	CreateInvite(ctx context.Context, uses int, d time.Duration) (appliance.Invite, error)
	Invites(ctx context.Context) ([]appliance.Invite, error)
	RevokeInvite(ctx context.Context, code string) error
	// Broadcast stores a notice signed by the server key for every
	// account; it returns how many accounts it was queued for.
	Broadcast(ctx context.Context, text string) (int, error)
	Users(ctx context.Context) ([]appliance.UserInfo, error)
	// Groups lists the group ids the server keeps records of: member
	// counts and traffic, never a title (protocol.md §6.7).
	Groups(ctx context.Context) ([]appliance.GroupInfo, error)
	// DeleteUser removes an account and its data.
	DeleteUser(ctx context.Context, user string) error
	Snapshot(ctx context.Context) (appliance.StatsSnapshot, error)
	Backup(ctx context.Context, w io.Writer) (int64, error)
	// Backups lists the automatic backups, newest first.
	Backups(ctx context.Context) ([]appliance.BackupInfo, error)
	// CheckStore checks the store the server holds, as its start does
	// (operations.md §7).
	CheckStore(ctx context.Context) (appliance.StoreCheck, error)
	// Events returns up to n recent events, newest first.
	Events(ctx context.Context, n int) ([]appliance.Event, error)
	// Limits and SetLimits read and change the rate limits live.
	Limits(ctx context.Context) (appliance.Limits, error)
	SetLimits(ctx context.Context, l appliance.Limits) error
	// SetAdminPassword sets the web admin's password; "" removes it.
	SetAdminPassword(ctx context.Context, password string) error
}

// BanRequest is the body of POST /api/bans.
type BanRequest struct {
	Target   string `json:"target"`
	Reason   string `json:"reason"`
	Duration string `json:"duration"` // Go duration; "" or "0" for no expiry
}

// KickRequest is the body of POST /api/kick.
type KickRequest struct {
	User string `json:"user"`
}

// KickResult answers POST /api/kick.
type KickResult struct {
	Closed int `json:"closed"`
}

// MuteRequest is the body of POST /api/mute.
type MuteRequest struct {
	User     string `json:"user"`
	Duration string `json:"duration"` // "" or "0": until unmuted
}

// InviteRequest is the body of POST /api/invites.
type InviteRequest struct {
	Uses     int    `json:"uses"`
	Duration string `json:"duration"` // "" or "0": no expiry
}

// BroadcastRequest is the body of POST /api/broadcast.
type BroadcastRequest struct {
	Text string `json:"text"`
}

// BroadcastResult answers POST /api/broadcast.
type BroadcastResult struct {
	Queued int `json:"queued"`
}

// PasswordRequest is the body of PUT /api/password.
type PasswordRequest struct {
	Password string `json:"password"` // "" removes the password
}

// ErrorBody is every error answer.
type ErrorBody struct {
	Error string `json:"error"`
}

// maxBody bounds request bodies.
const maxBody = 64 << 10

type api struct {
	srv Server
	log *slog.Logger
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ErrorBody{Error: msg})
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	return true
}

func (a *api) stats(w http.ResponseWriter, r *http.Request) {
	snap, err := a.srv.Snapshot(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, snap)
}

// check checks the store (GET /api/check); a damaged store is a 200
// with its damage listed.
func (a *api) check(w http.ResponseWriter, r *http.Request) {
	c, err := a.srv.CheckStore(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *api) users(w http.ResponseWriter, r *http.Request) {
	users, err := a.srv.Users(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if users == nil {
		users = []appliance.UserInfo{}
	}
	writeJSON(w, http.StatusOK, users)
}

func (a *api) groups(w http.ResponseWriter, r *http.Request) {
	groups, err := a.srv.Groups(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if groups == nil {
		groups = []appliance.GroupInfo{}
	}
	writeJSON(w, http.StatusOK, groups)
}

func (a *api) bans(w http.ResponseWriter, r *http.Request) {
	bans, err := a.srv.Bans(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if bans == nil {
		bans = []appliance.Ban{}
	}
	writeJSON(w, http.StatusOK, bans)
}

// requestDuration reads an optional duration; "" and "0" mean none.
func requestDuration(w http.ResponseWriter, s string) (time.Duration, bool) {
	if s == "" || s == "0" {
		return 0, true
	}
	d, err := appliance.ParseDuration(s)
	if err != nil || d < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("duration %q is not a positive duration like 30m, 24h or 7d", s))
		return 0, false
	}
	return d, true
}

func (a *api) ban(w http.ResponseWriter, r *http.Request) {
	var req BanRequest
	if !decode(w, r, &req) {
		return
	}
	d, ok := requestDuration(w, req.Duration)
	if !ok {
		return
	}
	b, err := a.srv.Ban(r.Context(), req.Target, req.Reason, d)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, b)
}

func (a *api) unban(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("target")
	if target == "" {
		writeError(w, http.StatusBadRequest, "target is required")
		return
	}
	if err := a.srv.Unban(r.Context(), target); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) kick(w http.ResponseWriter, r *http.Request) {
	var req KickRequest
	if !decode(w, r, &req) {
		return
	}
	n, err := a.srv.Kick(r.Context(), req.User)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, KickResult{Closed: n})
}

// backup streams a consistent copy of the store while the server keeps
// serving (appliance.Server.Backup snapshots it first, so the download's
// pace never holds the store). Each write gets the admin listener's write
// timeout afresh: a slow download that keeps reading completes, a stalled
// one is cut off.
func (a *api) backup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="securechat-backup.db"`)
	var out io.Writer = w
	if hs, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && hs.WriteTimeout > 0 {
		out = &deadlineWriter{w: w, rc: http.NewResponseController(w), timeout: hs.WriteTimeout}
	}
	n, err := a.srv.Backup(r.Context(), out)
	if err != nil {
		a.log.Error("admin API: backup failed", "err", err, "written", n)
		if n == 0 {
			writeError(w, http.StatusInternalServerError, "backup failed: "+err.Error())
			return
		}
		// Abort the response so the client sees a broken transfer, not a
		// short file that looks complete.
		panic(http.ErrAbortHandler)
	}
	a.log.Info("admin API: backup", "bytes", n)
}

func (a *api) mute(w http.ResponseWriter, r *http.Request) {
	var req MuteRequest
	if !decode(w, r, &req) {
		return
	}
	d, ok := requestDuration(w, req.Duration)
	if !ok {
		return
	}
	if err := a.srv.Mute(r.Context(), req.User, d); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) unmute(w http.ResponseWriter, r *http.Request) {
	if err := a.srv.Unmute(r.Context(), r.URL.Query().Get("user")); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) invites(w http.ResponseWriter, r *http.Request) {
	list, err := a.srv.Invites(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if list == nil {
		list = []appliance.Invite{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *api) invite(w http.ResponseWriter, r *http.Request) {
	var req InviteRequest
	if !decode(w, r, &req) {
		return
	}
	d, ok := requestDuration(w, req.Duration)
	if !ok {
		return
	}
	inv, err := a.srv.CreateInvite(r.Context(), req.Uses, d)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, inv)
}

func (a *api) revoke(w http.ResponseWriter, r *http.Request) {
	if err := a.srv.RevokeInvite(r.Context(), r.URL.Query().Get("code")); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) broadcast(w http.ResponseWriter, r *http.Request) {
	var req BroadcastRequest
	if !decode(w, r, &req) {
		return
	}
	n, err := a.srv.Broadcast(r.Context(), req.Text)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, BroadcastResult{Queued: n})
}

func (a *api) deleteUser(w http.ResponseWriter, r *http.Request) {
	if err := a.srv.DeleteUser(r.Context(), r.URL.Query().Get("user")); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) events(w http.ResponseWriter, r *http.Request) {
	n := 100
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "n must be a positive number")
			return
		}
	}
	events, err := a.srv.Events(r.Context(), n)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if events == nil {
		events = []appliance.Event{}
	}
	writeJSON(w, http.StatusOK, events)
}

// backups lists the automatic backups (operations.md §7).
func (a *api) backups(w http.ResponseWriter, r *http.Request) {
	list, err := a.srv.Backups(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if list == nil {
		list = []appliance.BackupInfo{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *api) limits(w http.ResponseWriter, r *http.Request) {
	l, err := a.srv.Limits(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, l)
}

// setLimits takes the whole Limits object; fields left out keep their
// values.
func (a *api) setLimits(w http.ResponseWriter, r *http.Request) {
	l, err := a.srv.Limits(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if !decode(w, r, &l) {
		return
	}
	if err := a.srv.SetLimits(r.Context(), l); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.limits(w, r)
}

// deadlineWriter sets a write deadline before each write.
type deadlineWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	timeout time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if err := d.rc.SetWriteDeadline(time.Now().Add(d.timeout)); err != nil {
		return 0, err
	}
	return d.w.Write(p)
}
