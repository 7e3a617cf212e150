package admin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/time/rate"

	"github.com/securechat/securechat/appliance"
	assets "github.com/securechat/securechat/embed"
)

// WebServer is what the web pages need of the appliance beyond the API.
type WebServer interface {
	Server
	// CheckAdminPassword reports whether password is the admin password
	// set with `securechat admin passwd`.
	CheckAdminPassword(password string) bool
	// RecordEvent adds to the recent events (admin logins).
	RecordEvent(kind, subject, detail string)
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

// NewHandler returns the admin listener's handler (DESIGN §5): the web
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
		logins:   make(map[string]*rate.Limiter),
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
		{"GET /api/bans", session, a.bans},
		{"POST /api/bans", session, a.ban},
		{"DELETE /api/bans", session, a.unban},
		{"POST /api/kick", session, a.kick},
		{"GET /api/backup", session, a.backup},
		{"POST /api/mute", session, a.mute},
		{"DELETE /api/mute", session, a.unmute},
		{"GET /api/invites", session, a.invites},
		{"POST /api/invites", session, a.invite},
		{"DELETE /api/invites", session, a.revoke},
		{"POST /api/broadcast", session, a.broadcast},
		{"GET /api/events", session, a.events},
		{"GET /api/limits", session, a.limits},
		{"PUT /api/limits", session, a.setLimits},
		{"PUT /api/password", session, a.setPassword},
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

	mu       sync.Mutex // guards sessions and logins
	sessions map[string]*webSession
	logins   map[string]*rate.Limiter
}

type webSession struct {
	id, csrf      string
	created, seen time.Time
	flash         *flash
}

type flash struct {
	Error bool
	Text  string
	// Code is a value to show large and selectable (a new invite code).
	Code string
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
		if r.TLS != nil {
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

// session returns the request's live session, or nil.
func (h *handler) session(r *http.Request) *webSession {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[c.Value]
	if s == nil {
		return nil
	}
	if now.Sub(s.seen) > sessionIdle || now.Sub(s.created) > sessionMax {
		delete(h.sessions, s.id)
		return nil
	}
	s.seen = now
	return s
}

func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newSession starts a session and sets its cookie: HttpOnly, SameSite
// Strict, and Secure when served over TLS.
func (h *handler) newSession(w http.ResponseWriter, r *http.Request) {
	now := h.now()
	s := &webSession{id: randomString(), csrf: randomString(), created: now, seen: now}
	h.mu.Lock()
	if len(h.sessions) >= maxSessions {
		var oldest *webSession
		for _, o := range h.sessions {
			if oldest == nil || o.seen.Before(oldest.seen) {
				oldest = o
			}
		}
		delete(h.sessions, oldest.id)
	}
	h.sessions[s.id] = s
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: s.id, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

func (h *handler) endSession(w http.ResponseWriter, r *http.Request, s *webSession) {
	h.mu.Lock()
	delete(h.sessions, s.id)
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

func (h *handler) setFlash(r *http.Request, f flash) {
	s := sessionFrom(r.Context())
	if s == nil {
		return
	}
	h.mu.Lock()
	s.flash = &f
	h.mu.Unlock()
}

func (h *handler) takeFlash(s *webSession) *flash {
	if s == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	f := s.flash
	s.flash = nil
	return f
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// loginLimiter returns the token bucket of login attempts from ip.
func (h *handler) loginLimiter(ip string) *rate.Limiter {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.logins[ip]
	if l == nil {
		if len(h.logins) >= maxLoginKeys {
			now := h.now()
			for k, v := range h.logins {
				if v.TokensAt(now) >= loginBurst {
					delete(h.logins, k)
				}
			}
			if len(h.logins) >= maxLoginKeys {
				clear(h.logins) // a flood of addresses: forget them all
			}
		}
		l = rate.NewLimiter(rate.Every(loginEvery), loginBurst)
		h.logins[ip] = l
	}
	return l
}

func (h *handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if h.session(r) != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	h.render(w, r, http.StatusOK, "login", "Log in", loginData{Next: safeNext(r.URL.Query().Get("next"))})
}

type loginData struct {
	Next string
}

// safeNext keeps a post-login redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, "/login") {
		return "/"
	}
	return next
}

// login takes the admin token or the admin password. Every attempt takes
// a token from the address's bucket and a successful one gives it back,
// so failed logins are what is limited.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	ip := remoteIP(r)
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	secret := strings.TrimSpace(r.PostFormValue("secret"))
	next := safeNext(r.PostFormValue("next"))
	now := h.now()
	res := h.loginLimiter(ip).ReserveN(now, 1)
	if delay := res.DelayFrom(now); !res.OK() || delay > 0 {
		res.CancelAt(now)
		h.log.Warn("admin login refused: too many failed logins", "remote", ip)
		h.srv.RecordEvent(appliance.EventAdminLoginFailed, ip, "too many attempts, refused")
		w.Header().Set("Retry-After", strconv.Itoa(int(delay.Seconds())+1))
		h.renderLogin(w, r, http.StatusTooManyRequests, next, fmt.Sprintf("Too many failed logins from your address. Try again in %d seconds.", int(delay.Seconds())+1))
		return
	}
	how := ""
	switch {
	case secret == "":
	case h.tokenOK(secret):
		how = "with the admin token"
	case h.srv.CheckAdminPassword(secret):
		how = "with the admin password"
	}
	if how == "" {
		// fail2ban can match this line, as the QUIC listener's.
		h.log.Warn("admin login failed", "remote", ip)
		h.srv.RecordEvent(appliance.EventAdminLoginFailed, ip, "wrong token or password")
		h.renderLogin(w, r, http.StatusUnauthorized, next, "Wrong admin token or password.")
		return
	}
	res.CancelAt(now)
	h.newSession(w, r)
	h.log.Info("admin login", "remote", ip, "how", how)
	h.srv.RecordEvent(appliance.EventAdminLogin, ip, how)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *handler) renderLogin(w http.ResponseWriter, r *http.Request, status int, next, msg string) {
	h.renderWith(w, r, status, "login", "Log in", loginData{Next: next}, &flash{Error: true, Text: msg})
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	if s := sessionFrom(r.Context()); s != nil {
		h.endSession(w, r, s)
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// visible makes a string safe to read: control, format (bidirectional
// overrides, zero-width characters) and separator characters become a
// visible ‹U+XXXX›, so a name cannot hide or reorder what is around it.
// html/template escapes the result for HTML.
func visible(s string) string {
	clean := true
	for _, r := range s {
		if invisible(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if invisible(r) {
			fmt.Fprintf(&b, "‹U+%04X›", r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func invisible(r rune) bool {
	return r == unicode.ReplacementChar || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Zl, unicode.Zp) ||
		r == '\u115f' || r == '\u1160' || r == '\u3164' || r == '\uffa0' || // Hangul fillers: blank
		(r >= '\ufe00' && r <= '\ufe0f') || (r >= 0xe0100 && r <= 0xe01ef) // variation selectors
}

func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{"visible": visible, "when": when, "bytes": byteSize}
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets.FS, "templates/layout.html"))
	names, err := fs.Glob(assets.FS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := make(map[string]*template.Template)
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(assets.FS, n))
	}
	return pages
}

// pageData is what every page template gets.
type pageData struct {
	Title    string
	Page     string
	LoggedIn bool
	CSRF     string
	Flash    *flash
	Version  string
	Key      string
	Data     any
}

func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, page, title string, data any) {
	h.renderWith(w, r, status, page, title, data, nil)
}

func (h *handler) renderWith(w http.ResponseWriter, r *http.Request, status int, page, title string, data any, f *flash) {
	s := sessionFrom(r.Context())
	if f == nil {
		f = h.takeFlash(s)
	}
	d := pageData{Title: title, Page: page, Flash: f, Version: h.version, Data: data, Key: h.srv.Snapshot().Fingerprint}
	if s != nil {
		d.LoggedIn, d.CSRF = true, s.csrf
	}
	t := h.pages[page]
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout.html", d); err != nil {
		h.log.Error("admin: page failed", "page", page, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprint(w, b.String())
}

// done answers a form: back to page with a message.
func (h *handler) done(w http.ResponseWriter, r *http.Request, page string, err error, format string, args ...any) {
	if err != nil {
		h.setFlash(r, flash{Error: true, Text: err.Error()})
	} else {
		h.setFlash(r, flash{Text: fmt.Sprintf(format, args...)})
	}
	if sessionFrom(r.Context()) == nil { // bearer token, no browser: answer plainly
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"result": fmt.Sprintf(format, args...)})
		return
	}
	http.Redirect(w, r, page, http.StatusSeeOther)
}

func formDuration(r *http.Request, field string) (time.Duration, error) {
	s := strings.TrimSpace(r.PostFormValue(field))
	switch s {
	case "", "0", "forever", "never":
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration like 30m, 12h or 168h", s)
	}
	return d, nil
}

func durationOrEver(d time.Duration) string {
	if d == 0 {
		return "until lifted"
	}
	return "for " + d.String()
}

func (h *handler) dashboard(w http.ResponseWriter, r *http.Request) {
	snap := h.srv.Snapshot()
	h.render(w, r, http.StatusOK, "dashboard", "Dashboard", dashboardData{Stats: snap, Rate: h.series.observe(snap)})
}

type dashboardData struct {
	Stats appliance.StatsSnapshot
	Rate  sample
}

func (h *handler) seriesAPI(w http.ResponseWriter, r *http.Request) {
	snap := h.srv.Snapshot()
	h.series.observe(snap)
	writeJSON(w, http.StatusOK, seriesBody{Stats: snap, Samples: h.series.list()})
}

type seriesBody struct {
	Stats   appliance.StatsSnapshot `json:"stats"`
	Samples []sample                `json:"samples"`
}

type usersData struct {
	Query string
	Users []appliance.UserInfo
	Total int
	Shown int
}

const maxUsersShown = 500

func (h *handler) usersPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	all, err := h.srv.Users()
	if err != nil {
		h.renderWith(w, r, http.StatusInternalServerError, "users", "Users", usersData{Query: q}, &flash{Error: true, Text: err.Error()})
		return
	}
	needle := strings.ToLower(strings.TrimSpace(q))
	var users []appliance.UserInfo
	for _, u := range all {
		if needle == "" || strings.Contains(u.Name, needle) {
			users = append(users, u)
		}
	}
	d := usersData{Query: q, Total: len(users)}
	d.Users = users[:min(len(users), maxUsersShown)]
	d.Shown = len(d.Users)
	h.render(w, r, http.StatusOK, "users", "Users", d)
}

func (h *handler) userKick(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	n, err := h.srv.Kick(user)
	h.done(w, r, "/users", err, "Disconnected %s (%d connections).", user, n)
}

func (h *handler) userMute(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	d, err := formDuration(r, "duration")
	if err == nil {
		err = h.srv.Mute(r.Context(), user, d)
	}
	h.done(w, r, "/users", err, "Muted %s %s.", user, durationOrEver(d))
}

func (h *handler) userUnmute(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	h.done(w, r, "/users", h.srv.Unmute(r.Context(), user), "Unmuted %s.", user)
}

func (h *handler) userBan(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	d, err := formDuration(r, "duration")
	if err == nil {
		_, err = h.srv.Ban(r.Context(), "user:"+user, r.PostFormValue("reason"), d)
	}
	h.done(w, r, "/users", err, "Banned %s %s.", user, durationOrEver(d))
}

func (h *handler) userDelete(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	if r.PostFormValue("confirm") != user {
		h.done(w, r, "/users", fmt.Errorf("type the user name %q to confirm deleting the account", user), "")
		return
	}
	h.done(w, r, "/users", h.srv.DeleteUser(r.Context(), user), "Deleted the account %s.", user)
}

func (h *handler) bansPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "bans", "Bans", h.srv.Bans())
}

func (h *handler) banAdd(w http.ResponseWriter, r *http.Request) {
	target := strings.TrimSpace(r.PostFormValue("target"))
	d, err := formDuration(r, "duration")
	if err == nil {
		_, err = h.srv.Ban(r.Context(), target, r.PostFormValue("reason"), d)
	}
	h.done(w, r, "/bans", err, "Banned %s %s.", target, durationOrEver(d))
}

func (h *handler) banRemove(w http.ResponseWriter, r *http.Request) {
	target := r.PostFormValue("target")
	h.done(w, r, "/bans", h.srv.Unban(r.Context(), target), "Lifted the ban on %s.", target)
}

func (h *handler) invitesPage(w http.ResponseWriter, r *http.Request) {
	list, err := h.srv.Invites()
	var f *flash
	if err != nil {
		f = &flash{Error: true, Text: err.Error()}
	}
	h.renderWith(w, r, http.StatusOK, "invites", "Invites", list, f)
}

func (h *handler) inviteCreate(w http.ResponseWriter, r *http.Request) {
	uses, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("uses")))
	if err != nil || uses < 1 {
		h.done(w, r, "/invites", fmt.Errorf("uses must be a whole number, at least 1"), "")
		return
	}
	d, err := formDuration(r, "duration")
	var inv appliance.Invite
	if err == nil {
		inv, err = h.srv.CreateInvite(r.Context(), uses, d)
	}
	if err == nil && sessionFrom(r.Context()) != nil {
		h.setFlash(r, flash{Text: fmt.Sprintf("Invite created: %d uses, expires %s. Give the new user this code:", uses, when(inv.Expires)), Code: inv.Code})
		http.Redirect(w, r, "/invites", http.StatusSeeOther)
		return
	}
	h.done(w, r, "/invites", err, "Invite %s created.", inv.Code)
}

func (h *handler) inviteRevoke(w http.ResponseWriter, r *http.Request) {
	h.done(w, r, "/invites", h.srv.RevokeInvite(r.Context(), r.PostFormValue("code")), "Invite revoked.")
}

// limitField is one row of the limits form.
type limitField struct {
	Key, Help, Value string
}

func limitFields(l appliance.Limits) []limitField {
	f := strconv.FormatFloat
	return []limitField{
		{"message_rate", "messages per second per account", f(l.MessageRate, 'f', -1, 64)},
		{"message_burst", "messages at once per account", strconv.Itoa(l.MessageBurst)},
		{"byte_rate", "payload bytes per second per account", f(l.ByteRate, 'f', -1, 64)},
		{"byte_burst", "payload bytes at once per account", strconv.Itoa(l.ByteBurst)},
		{"conn_rate", "new connections per second per IP", f(l.ConnRate, 'f', -1, 64)},
		{"conn_burst", "new connections at once per IP", strconv.Itoa(l.ConnBurst)},
		{"register_rate", "registrations per second per IP", f(l.RegisterRate, 'f', -1, 64)},
		{"register_burst", "registrations at once per IP", strconv.Itoa(l.RegisterBurst)},
		{"key_fetch_rate", "prekey fetches per second per account", f(l.KeyFetchRate, 'f', -1, 64)},
		{"key_fetch_burst", "prekey fetches at once per account", strconv.Itoa(l.KeyFetchBurst)},
		{"login_failures", "failed logins from one IP before a ban", strconv.Itoa(l.LoginFailures)},
		{"login_failure_window", "one failed login forgiven per", time.Duration(l.LoginFailureWindow).String()},
		{"login_ban", "how long too many failed logins ban an IP", time.Duration(l.LoginBan).String()},
		{"flood_ban", "rate-limit refusals per minute that ban an IP (0: never)", strconv.Itoa(l.FloodBan)},
	}
}

type limitsData struct {
	Fields []limitField
	YAML   string
}

func (h *handler) limitsPage(w http.ResponseWriter, r *http.Request) {
	fields := limitFields(h.srv.Limits())
	var y strings.Builder
	for _, f := range fields {
		fmt.Fprintf(&y, "%s: %s\n", f.Key, f.Value)
	}
	h.render(w, r, http.StatusOK, "limits", "Rate limits", limitsData{Fields: fields, YAML: y.String()})
}

// limitsSet reads every field of the limits form; a field left out keeps
// its value.
func (h *handler) limitsSet(w http.ResponseWriter, r *http.Request) {
	l := h.srv.Limits()
	if err := parseLimitsForm(r, &l); err != nil {
		h.done(w, r, "/limits", err, "")
		return
	}
	h.done(w, r, "/limits", h.srv.SetLimits(r.Context(), l), "Rate limits changed; they apply now, to every client.")
}

func parseLimitsForm(r *http.Request, l *appliance.Limits) error {
	keys := slices.Sorted(maps.Keys(r.PostForm))
	for _, k := range keys {
		if k == csrfField {
			continue
		}
		if err := setLimit(l, k, r.PostForm.Get(k)); err != nil {
			return err
		}
	}
	return nil
}

// setLimit sets the limit named by its configuration key from text.
func setLimit(l *appliance.Limits, key, value string) error {
	floats := map[string]*float64{"message_rate": &l.MessageRate, "byte_rate": &l.ByteRate, "conn_rate": &l.ConnRate, "register_rate": &l.RegisterRate, "key_fetch_rate": &l.KeyFetchRate}
	ints := map[string]*int{"message_burst": &l.MessageBurst, "byte_burst": &l.ByteBurst, "conn_burst": &l.ConnBurst, "register_burst": &l.RegisterBurst, "key_fetch_burst": &l.KeyFetchBurst, "login_failures": &l.LoginFailures, "flood_ban": &l.FloodBan}
	durs := map[string]*appliance.Duration{"login_failure_window": &l.LoginFailureWindow, "login_ban": &l.LoginBan}
	v := strings.TrimSpace(value)
	var err error
	switch {
	case floats[key] != nil:
		*floats[key], err = strconv.ParseFloat(v, 64)
	case ints[key] != nil:
		*ints[key], err = strconv.Atoi(v)
	case durs[key] != nil:
		err = durs[key].Set(v)
	default:
		return fmt.Errorf("unknown setting %q", key)
	}
	if err != nil {
		return fmt.Errorf("%s: %q is not a valid value", key, v)
	}
	return nil
}

func (h *handler) broadcastPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "broadcast", "Broadcast", nil)
}

func (h *handler) broadcastSend(w http.ResponseWriter, r *http.Request) {
	n, err := h.srv.Broadcast(r.Context(), r.PostFormValue("text"))
	h.done(w, r, "/broadcast", err, "Broadcast queued for %d accounts.", n)
}

type eventsData struct {
	Kind   string
	Kinds  []string
	Events []appliance.Event
}

func (h *handler) eventsPage(w http.ResponseWriter, r *http.Request) {
	kind := r.URL.Query().Get("kind")
	all := h.srv.Events(500)
	d := eventsData{Kind: kind}
	seen := map[string]bool{}
	for _, e := range all {
		if !seen[e.Kind] {
			seen[e.Kind] = true
			d.Kinds = append(d.Kinds, e.Kind)
		}
		if kind == "" || e.Kind == kind {
			d.Events = append(d.Events, e)
		}
	}
	slices.Sort(d.Kinds)
	h.render(w, r, http.StatusOK, "events", "Recent events", d)
}
