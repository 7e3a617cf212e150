// Package admin is the server's admin JSON API (DESIGN §5), served on the
// admin listener and used by `securechat admin`: stats, users, bans, kick
// and hot backup, behind the admin token as a bearer token. The web pages
// of the admin (a later issue) use the same API.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/securechat/securechat/appliance"
)

// Server is what the API needs of the appliance.
type Server interface {
	Ban(ctx context.Context, target, reason string, d time.Duration) (appliance.Ban, error)
	Unban(ctx context.Context, target string) error
	Bans() []appliance.Ban
	Kick(user string) (int, error)
	// Mute stops user from sending for d (0: until unmuted).
	Mute(ctx context.Context, user string, d time.Duration) error
	Unmute(ctx context.Context, user string) error
	// CreateInvite makes an invite code good for uses registrations until
	// it expires (d 0: never).
	CreateInvite(ctx context.Context, uses int, d time.Duration) (appliance.Invite, error)
	Invites() ([]appliance.Invite, error)
	RevokeInvite(ctx context.Context, code string) error
	// Broadcast stores a notice signed by the server key for every
	// account; it returns how many accounts it was queued for.
	Broadcast(ctx context.Context, text string) (int, error)
	Users() ([]appliance.UserInfo, error)
	// DeleteUser removes an account and its data.
	DeleteUser(ctx context.Context, user string) error
	Snapshot() appliance.StatsSnapshot
	Backup(w io.Writer) (int64, error)
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

// ErrorBody is every error answer.
type ErrorBody struct {
	Error string `json:"error"`
}

// maxBody bounds request bodies.
const maxBody = 64 << 10

// NewHandler returns the API handler. token is the admin token.
func NewHandler(srv Server, token string, log *slog.Logger) http.Handler {
	a := &api{srv: srv, token: []byte(strings.TrimSpace(token)), log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/stats", a.stats)
	mux.HandleFunc("GET /api/users", a.users)
	mux.HandleFunc("DELETE /api/users", a.deleteUser)
	mux.HandleFunc("GET /api/bans", a.bans)
	mux.HandleFunc("POST /api/bans", a.ban)
	mux.HandleFunc("DELETE /api/bans", a.unban)
	mux.HandleFunc("POST /api/kick", a.kick)
	mux.HandleFunc("GET /api/backup", a.backup)
	mux.HandleFunc("POST /api/mute", a.mute)
	mux.HandleFunc("DELETE /api/mute", a.unmute)
	mux.HandleFunc("GET /api/invites", a.invites)
	mux.HandleFunc("POST /api/invites", a.invite)
	mux.HandleFunc("DELETE /api/invites", a.revoke)
	mux.HandleFunc("POST /api/broadcast", a.broadcast)
	mux.Handle("GET /metrics", metricsHandler(srv))
	return a.guard(mux)
}

type api struct {
	srv   Server
	token []byte
	log   *slog.Logger
}

// guard requires the bearer token on every request and refuses
// cross-origin state changes.
func (a *api) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || len(a.token) == 0 || subtle.ConstantTimeCompare([]byte(got), a.token) != 1 {
			a.log.Warn("admin API: unauthorized request", "remote", r.RemoteAddr, "path", r.URL.Path)
			writeError(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if origin := r.Header.Get("Origin"); origin != "" && !sameOrigin(origin, r.Host) {
				writeError(w, http.StatusForbidden, "cross-origin request refused")
				return
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

func sameOrigin(origin, host string) bool {
	o := strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://")
	return o == host
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
	writeJSON(w, http.StatusOK, a.srv.Snapshot())
}

func (a *api) users(w http.ResponseWriter, r *http.Request) {
	users, err := a.srv.Users()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if users == nil {
		users = []appliance.UserInfo{}
	}
	writeJSON(w, http.StatusOK, users)
}

func (a *api) bans(w http.ResponseWriter, r *http.Request) {
	bans := a.srv.Bans()
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
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("duration %q is not a positive duration like 30m or 24h", s))
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
	n, err := a.srv.Kick(req.User)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, KickResult{Closed: n})
}

// backup streams a consistent copy of the store (bbolt Tx.WriteTo) while
// the server keeps serving.
func (a *api) backup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="securechat-backup.db"`)
	n, err := a.srv.Backup(w)
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
	list, err := a.srv.Invites()
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
