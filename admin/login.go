package admin

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/chat"
)

// Sessions of the web admin, and logging in and out (docs/operations.md §10).

type sessionKey struct{}

func withSession(ctx context.Context, s *webSession) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

// sessionFrom returns the request's web session; nil for a request made
// with the bearer token.
func sessionFrom(ctx context.Context) *webSession {
	s, _ := ctx.Value(sessionKey{}).(*webSession)
	return s
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
// Strict, and Secure unless plain HTTP from loopback (secureCookie).
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
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secureCookie(r),
	})
}

func (h *handler) endSession(w http.ResponseWriter, r *http.Request, s *webSession) {
	h.mu.Lock()
	delete(h.sessions, s.id)
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secureCookie(r),
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

// safeNext keeps a post-login redirect on this site: a path that parses
// with no scheme and no host, and holds no control character or backslash
// (browsers drop tabs and newlines and read a backslash as a slash, so
// "/\tevil.example" or "/\\evil.example" would reach another host).
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "/login") || strings.ContainsRune(next, '\\') ||
		strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return next
}

// login takes the admin token or the admin password. Every attempt takes
// a token from the address's bucket and a successful one gives it back,
// so failed logins are what is limited.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	ip := h.source(r)
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	secret := strings.TrimSpace(r.PostFormValue("secret"))
	next := safeNext(r.PostFormValue("next"))
	now := h.now()
	res := h.logins.get(ip).ReserveN(now, 1)
	if delay := res.DelayFrom(now); !res.OK() || delay > 0 {
		res.CancelAt(now)
		h.log.Warn("admin login refused: too many failed logins", "remote", ip)
		h.srv.RecordEvent(r.Context(), chat.EventAdminLoginFailed, ip, "too many attempts, refused")
		w.Header().Set("Retry-After", strconv.Itoa(int(delay.Seconds())+1))
		h.renderLogin(w, r, http.StatusTooManyRequests, next, fmt.Sprintf("Too many failed logins from your address. Try again in %d seconds.", int(delay.Seconds())+1))
		return
	}
	how := ""
	switch {
	case secret == "":
	case h.tokenOK(secret):
		how = "with the admin token"
	default:
		ok, err := h.srv.CheckAdminPassword(r.Context(), secret)
		if errors.Is(err, appliance.ErrAdminBusy) {
			res.CancelAt(now)
			w.Header().Set("Retry-After", "1")
			h.renderLogin(w, r, http.StatusTooManyRequests, next, "Too many logins at once. Try again in a second.")
			return
		}
		if err != nil {
			res.CancelAt(now) // not the client's failure
			h.log.Error("admin login: checking the password failed", "remote", ip, "err", err)
			h.renderLogin(w, r, http.StatusInternalServerError, next, "The admin password could not be checked; see the server's log.")
			return
		}
		if ok {
			how = "with the admin password"
		}
	}
	if how == "" {
		// fail2ban can match this line, as the QUIC listener's.
		h.log.Warn("admin login failed", "remote", ip)
		h.srv.RecordEvent(r.Context(), chat.EventAdminLoginFailed, ip, "wrong token or password")
		h.renderLogin(w, r, http.StatusUnauthorized, next, "Wrong admin token or password.")
		return
	}
	res.CancelAt(now)
	h.newSession(w, r)
	h.log.Info("admin login", "remote", ip, "how", how)
	h.srv.RecordEvent(r.Context(), chat.EventAdminLogin, ip, how)
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

// setPassword is PUT /api/password: after a change of the admin password
// every session ends, so a leaked one does not outlive the password it was
// opened with.
func (h *handler) setPassword(w http.ResponseWriter, r *http.Request) {
	var req PasswordRequest
	if !decode(w, r, &req) {
		return
	}
	if err := h.srv.SetAdminPassword(r.Context(), req.Password); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	h.mu.Lock()
	n := len(h.sessions)
	clear(h.sessions)
	h.mu.Unlock()
	h.log.Info("admin sessions ended after a password change", "sessions", n)
	w.WriteHeader(http.StatusNoContent)
}
