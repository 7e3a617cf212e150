package admin

import (
	"context"
	"crypto/subtle"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/securechat/securechat/assets"
	"github.com/securechat/securechat/chat"
)

// WebServer is what the web pages need of the appliance beyond the API.
type WebServer interface {
	Server
	// CheckAdminPassword reports whether password is the admin password
	// set with `securechat admin passwd`.
	CheckAdminPassword(ctx context.Context, password string) (bool, error)
	// RecordEvent adds to the recent events (admin logins).
	RecordEvent(ctx context.Context, kind chat.EventKind, subject, detail string)
}

// Options configure the admin handler.
type Options struct {
	// Token is the admin token: a bearer token for the API, or typed into
	// the login page.
	Token   string
	Version string
	Log     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SourceKey keys a client address for the login limit (the server's
	// ipv6_prefix); nil keys IPv6 by /64.
	SourceKey func(netip.Addr) string
}

// access is who may use a route.
type access int

const (
	// public routes: the login page and the static assets.
	public access = iota
	// session routes need a session cookie or the bearer token; a state
	// change with a cookie also needs the session's CSRF token.
	session
)

// route is one registered route; routes() is the whole table, which the
// tests walk.
type route struct {
	pattern string // http.ServeMux pattern, with its method
	access  access
	h       http.HandlerFunc
}

// Session and login limits.
const (
	cookieName   = "securechat_admin"
	sessionIdle  = time.Hour
	sessionMax   = 12 * time.Hour
	maxSessions  = 256
	loginEvery   = 12 * time.Second // one login attempt per IP refills this often
	loginBurst   = 5
	maxLoginKeys = 10000
	maxForm      = 64 << 10
	csrfField    = "csrf"
	csrfHeader   = "X-CSRF-Token"
)

// contentSecurityPolicy allows nothing but this origin's own files: no
// inline script or style, no frames, forms posting only here.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// NewHandler returns the admin listener's handler (docs/design.md §5): the web
// pages, the JSON API and /metrics, all behind a session or the token.
func NewHandler(srv WebServer, opts Options) http.Handler {
	_, hh := newHandler(srv, opts)
	return hh
}

func newHandler(srv WebServer, opts Options) (*handler, http.Handler) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	h := &handler{
		api:      api{srv: srv, log: opts.Log},
		srv:      srv,
		token:    []byte(strings.TrimSpace(opts.Token)),
		version:  opts.Version,
		now:      opts.Now,
		pages:    parsePages(),
		sessions: make(map[string]*webSession),
		logins:   newLoginLimits(maxLoginKeys),
		srcKey:   opts.SourceKey,
		series:   &series{},
	}
	static, _ := fs.Sub(assets.FS, "static")
	h.static = http.StripPrefix("/static/", http.FileServerFS(static))
	mux := http.NewServeMux()
	for _, r := range h.routes() {
		mux.Handle(r.pattern, h.guard(r))
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		opts.Log.Warn("admin: cross-origin request refused", "remote", r.RemoteAddr, "path", r.URL.Path, "origin", r.Header.Get("Origin"))
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return h, securityHeaders(cop.Handler(mux))
}

// routes is every route the admin serves.
func (h *handler) routes() []route {
	a := &h.api
	return []route{
		{"GET /login", public, h.loginPage},
		{"POST /login", public, h.login},
		{"GET /static/", public, h.serveStatic},

		{"POST /logout", session, h.logout},
		{"GET /{$}", session, h.dashboard},
		{"GET /users", session, h.usersPage},
		{"POST /users/kick", session, h.userKick},
		{"POST /users/mute", session, h.userMute},
		{"POST /users/unmute", session, h.userUnmute},
		{"POST /users/ban", session, h.userBan},
		{"POST /users/delete", session, h.userDelete},
		{"GET /bans", session, h.bansPage},
		{"POST /bans", session, h.banAdd},
		{"POST /bans/remove", session, h.banRemove},
		{"GET /invites", session, h.invitesPage},
		{"POST /invites", session, h.inviteCreate},
		{"POST /invites/revoke", session, h.inviteRevoke},
		{"GET /limits", session, h.limitsPage},
		{"POST /limits", session, h.limitsSet},
		{"GET /broadcast", session, h.broadcastPage},
		{"POST /broadcast", session, h.broadcastSend},
		{"GET /events", session, h.eventsPage},
		{"GET /backup", session, a.backup},

		{"GET /api/stats", session, a.stats},
		{"GET /api/series", session, h.seriesAPI},
		{"GET /api/users", session, a.users},
		{"DELETE /api/users", session, a.deleteUser},
		{"GET /api/groups", session, a.groups},
		{"GET /api/bans", session, a.bans},
		{"POST /api/bans", session, a.ban},
		{"DELETE /api/bans", session, a.unban},
		{"POST /api/kick", session, a.kick},
		{"GET /api/backup", session, a.backup},
		{"GET /api/backups", session, a.backups},
		{"GET /api/check", session, a.check},
		{"POST /api/mute", session, a.mute},
		{"DELETE /api/mute", session, a.unmute},
		{"GET /api/invites", session, a.invites},
		{"POST /api/invites", session, a.invite},
		{"DELETE /api/invites", session, a.revoke},
		{"POST /api/broadcast", session, a.broadcast},
		{"GET /api/events", session, a.events},
		{"GET /api/limits", session, a.limits},
		{"PUT /api/limits", session, a.setLimits},
		{"PUT /api/password", session, h.setPassword},
		{"GET /metrics", session, metricsHandler(h.srv).ServeHTTP},
	}
}

type handler struct {
	api
	srv     WebServer
	token   []byte
	version string
	now     func() time.Time
	pages   map[string]*template.Template
	static  http.Handler
	series  *series
	infoMu  sync.Mutex // guards srvInfo
	srvInfo serverInfo // once read

	mu       sync.Mutex // guards sessions
	sessions map[string]*webSession
	logins   *loginLimits
	srcKey   func(netip.Addr) string
}

type webSession struct {
	id, csrf      string
	created, seen time.Time
	flash         *flash
}

type flash struct {
	Error bool
	Text  string
	// Time, when set, is shown after Text in the pages' time format, and
	// After after it.
	Time  time.Time
	After string
	// Code is a value to show large and selectable (a new invite code).
	Code string
	// Form is what the operator typed into the form whose post failed,
	// to fill it in again.
	Form posted
}

// posted is a form the operator sent: the path it posted to and its
// fields, without the CSRF token.
type posted struct {
	Action string
	Values url.Values
}

// For is the fields posted to action; none if the form posted elsewhere.
func (p posted) For(action string) formValues {
	if p.Action != action {
		return nil
	}
	return formValues(p.Values)
}

// Row is For(action) when the posted field has value: the form of one row
// of a table (the users page has one per account).
func (p posted) Row(action, field, value string) formValues {
	v := p.For(action)
	if v == nil || v.Get(field) != value {
		return nil
	}
	return v
}

// formValues are the fields of a posted form; nil when nothing was posted.
type formValues url.Values

// Get is the value of field, or "".
func (v formValues) Get(field string) string { return url.Values(v).Get(field) }

// Or is the value posted for field, or dflt when it was not posted.
func (v formValues) Or(field, dflt string) string {
	if _, ok := v[field]; !ok {
		return dflt
	}
	return v.Get(field)
}

// Is reports whether field was posted as option (a select's choice).
func (v formValues) Is(field, option string) bool {
	_, ok := v[field]
	return ok && v.Get(field) == option
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		if viaHTTPS(r) {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// guard admits a request to a route: public routes always; the others
// with the bearer token, or with a live session cookie and, for a state
// change, the session's CSRF token.
func (h *handler) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.access == public {
			rt.h(w, r)
			return
		}
		if auth := r.Header.Get("Authorization"); auth != "" {
			got, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok || !h.tokenOK(got) {
				h.log.Warn("admin: wrong token", "remote", r.RemoteAddr, "path", r.URL.Path)
				writeError(w, http.StatusUnauthorized, "missing or wrong admin token")
				return
			}
			rt.h(w, r)
			return
		}
		s := h.session(r)
		if s == nil {
			if r.Method == http.MethodGet && !isAPI(r.URL.Path) {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			writeError(w, http.StatusUnauthorized, "log in, or send the admin token as a bearer token")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			got := r.Header.Get(csrfHeader)
			if got == "" {
				r.Body = http.MaxBytesReader(w, r.Body, maxForm)
				got = r.PostFormValue(csrfField)
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
				h.log.Warn("admin: request without the session's CSRF token refused", "remote", r.RemoteAddr, "path", r.URL.Path)
				writeError(w, http.StatusForbidden, "missing or wrong CSRF token: reload the page")
				return
			}
		}
		rt.h(w, r.WithContext(withSession(r.Context(), s)))
	})
}

func isAPI(path string) bool {
	return strings.HasPrefix(path, "/api/") || path == "/metrics"
}

func (h *handler) tokenOK(s string) bool {
	return len(h.token) > 0 && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(s)), h.token) == 1
}

func (h *handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=300")
	h.static.ServeHTTP(w, r)
}
