package admin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"

	"github.com/securechat/securechat/appliance"
)

// webFixture is the handler over a recServer with a fake clock.
type webFixture struct {
	t   *testing.T
	f   *recServer
	h   *handler
	hh  http.Handler
	now time.Time
}

func newWebFixture(t *testing.T) *webFixture {
	w := &webFixture{t: t, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	w.f = &recServer{now: w.now, password: "correct horse battery", limits: appliance.Limits{
		MessageRate: 20, MessageBurst: 60, ByteRate: 1 << 20, ByteBurst: 8 << 20, ConnRate: 10, ConnBurst: 30,
		RegisterRate: 1.0 / 60, RegisterBurst: 5, KeyFetchRate: 0.5, KeyFetchBurst: 30, LoginFailures: 10,
		LoginFailureWindow: appliance.Duration(time.Minute), LoginBan: appliance.Duration(15 * time.Minute), AccountLoginFailures: 20,
		MaxConns: 20000, MaxConnsPerAddress: 256, MaxConnsPerAccount: 128, PublishKeysRate: 0.2, PublishKeysBurst: 20,
		AckRate: 1000, AckBurst: 16384, LookupRate: 5, LookupBurst: 100, GroupMaxMembers: 1000, GroupMaxPerAccount: 100,
	}}
	w.h, w.hh = newHandler(w.f, Options{Token: testToken, Version: "test", Now: func() time.Time { return w.now }})
	return w
}

// do serves one request from addr (default 192.0.2.1).
func (w *webFixture) do(req *http.Request) *httptest.ResponseRecorder {
	if req.RemoteAddr == "192.0.2.1:1234" || req.RemoteAddr == "" {
		req.RemoteAddr = "192.0.2.1:1234"
	}
	rec := httptest.NewRecorder()
	w.hh.ServeHTTP(rec, req)
	return rec
}

func form(method, path string, vals url.Values) *http.Request {
	req := httptest.NewRequest(method, path, strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

// login logs in with secret and returns the session cookie and its CSRF
// token.
func (w *webFixture) login(secret string) (*http.Cookie, string) {
	w.t.Helper()
	rec := w.do(form("POST", "/login", url.Values{"secret": {secret}, "next": {"/users"}}))
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/users" {
		w.t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	var cookie *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == cookieName {
			cookie = c
		}
	}
	if cookie == nil {
		w.t.Fatal("login set no session cookie")
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(cookie)
	page := w.do(req)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page.Body.String())
	if page.Code != http.StatusOK || m == nil {
		w.t.Fatalf("dashboard after login: %d, no CSRF token", page.Code)
	}
	return cookie, m[1]
}

// bodies are valid requests for the routes that need a body.
var bodies = map[string]string{
	"POST /api/bans":      `{"target":"10.0.0.1"}`,
	"POST /api/kick":      `{"user":"bob"}`,
	"POST /api/mute":      `{"user":"bob"}`,
	"POST /api/invites":   `{"uses":1}`,
	"POST /api/broadcast": `{"text":"hi"}`,
	"PUT /api/limits":     `{"message_rate":5}`,
	"PUT /api/password":   `{"password":"a new long password"}`,
	"POST /login":         `secret=x`,
}

const formBody = "user=bob&target=10.0.0.1&code=c&uses=1&text=hi&confirm=bob&duration=1h&message_burst=7"

func routeRequest(r route) *http.Request {
	method, path, _ := strings.Cut(r.pattern, " ")
	path = strings.TrimSuffix(path, "{$}")
	if path == "/static/" {
		path = "/static/admin.css"
	}
	if method == "DELETE" {
		path += "?user=bob&target=10.0.0.1&code=c"
	}
	body, ok := bodies[r.pattern]
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	switch {
	case ok && strings.HasPrefix(path, "/api/"):
		req.Header.Set("Content-Type", "application/json")
	case method == "POST":
		if !ok {
			req = httptest.NewRequest(method, path, strings.NewReader(formBody))
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return req
}

// TestEveryRouteNeedsSessionOrToken walks the whole route table: with
// nothing, a wrong token or a forged cookie every route but the public
// ones is refused and reaches nothing; with the token or a session (and
// its CSRF token for a change) it is served.
func TestEveryRouteNeedsSessionOrToken(t *testing.T) {
	w := newWebFixture(t)
	cookie, csrf := w.login(testToken)
	for _, r := range w.h.routes() {
		if r.access == public {
			if !strings.HasPrefix(r.pattern, "POST") {
				if rec := w.do(routeRequest(r)); rec.Code != http.StatusOK {
					t.Errorf("%s (public): %d", r.pattern, rec.Code)
				}
			}
			continue
		}
		refusals := map[string]func(*http.Request){
			"nothing":       func(*http.Request) {},
			"wrong token":   func(q *http.Request) { q.Header.Set("Authorization", "Bearer wrong") },
			"token no type": func(q *http.Request) { q.Header.Set("Authorization", testToken) },
			"forged cookie": func(q *http.Request) { q.AddCookie(&http.Cookie{Name: cookieName, Value: "forged"}) },
		}
		if !strings.HasPrefix(r.pattern, "GET") {
			refusals["session without CSRF token"] = func(q *http.Request) { q.AddCookie(cookie) }
		}
		for what, set := range refusals {
			w.f.calls = nil
			req := routeRequest(r)
			set(req)
			rec := w.do(req)
			refused := rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden ||
				(rec.Code == http.StatusSeeOther && strings.HasPrefix(rec.Header().Get("Location"), "/login"))
			if !refused {
				t.Errorf("%s with %s: %d, want refused", r.pattern, what, rec.Code)
			}
			if len(w.f.calls) != 0 {
				t.Errorf("%s with %s reached the server: %q", r.pattern, what, w.f.calls)
			}
		}
		for what, set := range map[string]func(*http.Request){
			"token":   func(q *http.Request) { q.Header.Set("Authorization", "Bearer "+testToken) },
			"session": func(q *http.Request) { q.AddCookie(cookie); q.Header.Set(csrfHeader, csrf) },
		} {
			req := routeRequest(r)
			set(req)
			rec := w.do(req)
			if r.pattern == "POST /logout" || r.pattern == "PUT /api/password" {
				if rec.Code >= 400 {
					t.Errorf("%s with %s: %d %s", r.pattern, what, rec.Code, rec.Body)
				}
				cookie, csrf = w.login(testToken) // it worked: the sessions are gone
				continue
			}
			if rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden || rec.Code >= 500 ||
				strings.HasPrefix(rec.Header().Get("Location"), "/login") {
				t.Errorf("%s with %s: %d %s", r.pattern, what, rec.Code, rec.Body)
			}
		}
	}
}

// TestCrossOriginRefused: a state change from another origin gets 403,
// whatever credentials it carries.
func TestCrossOriginRefused(t *testing.T) {
	w := newWebFixture(t)
	cookie, csrf := w.login(testToken)
	w.f.calls = nil
	for name, set := range map[string]func(*http.Request){
		"Origin":         func(q *http.Request) { q.Header.Set("Origin", "http://evil.example") },
		"Sec-Fetch-Site": func(q *http.Request) { q.Header.Set("Sec-Fetch-Site", "cross-site") },
	} {
		req := form("POST", "http://127.0.0.1:8080/bans", url.Values{"target": {"10.0.0.1"}, "csrf": {csrf}})
		req.AddCookie(cookie)
		set(req)
		if rec := w.do(req); rec.Code != http.StatusForbidden {
			t.Errorf("cross-origin form POST (%s): %d", name, rec.Code)
		}
		api := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/bans", strings.NewReader(`{"target":"10.0.0.1"}`))
		api.Header.Set("Authorization", "Bearer "+testToken)
		set(api)
		if rec := w.do(api); rec.Code != http.StatusForbidden {
			t.Errorf("cross-origin API POST (%s): %d", name, rec.Code)
		}
	}
	if len(w.f.calls) != 0 {
		t.Errorf("cross-origin requests reached the server: %q", w.f.calls)
	}
	same := form("POST", "http://127.0.0.1:8080/bans", url.Values{"target": {"10.0.0.1"}, "csrf": {csrf}})
	same.AddCookie(cookie)
	same.Header.Set("Origin", "http://127.0.0.1:8080")
	same.Header.Set("Sec-Fetch-Site", "same-origin")
	if rec := w.do(same); rec.Code != http.StatusSeeOther || len(w.f.calls) != 1 {
		t.Errorf("same-origin POST: %d, calls %q", rec.Code, w.f.calls)
	}
}

func TestLoginCookieAndPassword(t *testing.T) {
	w := newWebFixture(t)
	local := form("POST", "/login", url.Values{"secret": {testToken}})
	local.RemoteAddr = "127.0.0.1:5555" // a browser on the server or an SSH tunnel
	rec := w.do(local)
	c := rec.Result().Cookies()
	if len(c) != 1 || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || c[0].Secure || c[0].Path != "/" {
		t.Fatalf("cookie over HTTP from loopback: %+v", c)
	}
	// Plain HTTP from another host (admin_insecure behind a proxy that does
	// not say so, or an exposed listener): the cookie stays Secure.
	rec = w.do(form("POST", "/login", url.Values{"secret": {testToken}}))
	if c := rec.Result().Cookies(); len(c) != 1 || !c[0].Secure {
		t.Errorf("cookie over HTTP from another host not Secure: %+v", c)
	}
	// A TLS proxy saying so (X-Forwarded-Proto): Secure, and HSTS.
	for _, addr := range []string{"127.0.0.1:5555", "10.0.0.2:443"} {
		proxied := form("POST", "/login", url.Values{"secret": {testToken}})
		proxied.RemoteAddr = addr
		proxied.Header.Set("X-Forwarded-Proto", "https")
		rec = w.do(proxied)
		if c := rec.Result().Cookies(); len(c) != 1 || !c[0].Secure || rec.Header().Get("Strict-Transport-Security") == "" {
			t.Errorf("behind a TLS proxy at %s: cookie not Secure, or no HSTS: %+v", addr, c)
		}
	}
	req := form("POST", "https://admin.example/login", url.Values{"secret": {testToken}})
	req.TLS = &tls.ConnectionState{}
	rec = w.do(req)
	if c := rec.Result().Cookies(); len(c) != 1 || !c[0].Secure || rec.Header().Get("Strict-Transport-Security") == "" {
		t.Errorf("cookie over TLS not Secure, or no HSTS: %+v", c)
	}
	w.login("correct horse battery") // the admin password
	if n := len(w.f.events); n < 3 || w.f.events[n-1].Kind != chat.EventAdminLogin || w.f.events[n-1].Detail != "with the admin password" {
		t.Errorf("login events: %+v", w.f.events)
	}

	// Logging out ends the session for good.
	cookie, csrf := w.login(testToken)
	out := form("POST", "/logout", url.Values{"csrf": {csrf}})
	out.AddCookie(cookie)
	if rec := w.do(out); rec.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d", rec.Code)
	}
	again := httptest.NewRequest("GET", "/users", nil)
	again.AddCookie(cookie)
	if rec := w.do(again); rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/login") {
		t.Errorf("after logout: %d %s", rec.Code, rec.Header().Get("Location"))
	}
}

// TestFailedLoginsLimited: an address that keeps guessing is refused even
// the right secret for a while; another address is not affected, and the
// refusals are events.
func TestFailedLoginsLimited(t *testing.T) {
	w := newWebFixture(t)
	for i := range loginBurst {
		if rec := w.do(form("POST", "/login", url.Values{"secret": {"guess"}})); rec.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, rec.Code)
		}
	}
	rec := w.do(form("POST", "/login", url.Values{"secret": {testToken}}))
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || len(rec.Result().Cookies()) != 0 {
		t.Fatalf("after %d failures: %d", loginBurst, rec.Code)
	}
	if !strings.Contains(rec.Body.String(), "Too many failed logins") {
		t.Errorf("429 page: %s", rec.Body)
	}
	other := form("POST", "/login", url.Values{"secret": {testToken}})
	other.RemoteAddr = "198.51.100.9:555"
	if rec := w.do(other); rec.Code != http.StatusSeeOther {
		t.Errorf("another address: %d", rec.Code)
	}
	w.now = w.now.Add(loginEvery)
	if rec := w.do(form("POST", "/login", url.Values{"secret": {testToken}})); rec.Code != http.StatusSeeOther {
		t.Errorf("after the refill: %d", rec.Code)
	}
	failed := 0
	for _, e := range w.f.events {
		if e.Kind == chat.EventAdminLoginFailed && e.Subject == "192.0.2.1" {
			failed++
		}
	}
	if failed != loginBurst+1 {
		t.Errorf("%d failed-login events, want %d", failed, loginBurst+1)
	}
	// Successful logins give their token back: they never lock out.
	for range 3 * loginBurst {
		w.login(testToken)
	}
}

// TestBackupWarning: the dashboard's backup download says what the file
// holds and how to keep it (the console writes it 0600; a browser cannot),
// and the download is not cached.
func TestBackupWarning(t *testing.T) {
	w := newWebFixture(t)
	cookie, _ := w.login(testToken)
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(cookie)
	rec := w.do(req)
	if body := rec.Body.String(); !strings.Contains(body, `id="backup-warning"`) || !strings.Contains(body, "every password hash") || !strings.Contains(body, "chmod 600") {
		t.Errorf("dashboard lacks the backup warning")
	}
	req = httptest.NewRequest("GET", "/backup", nil)
	req.AddCookie(cookie)
	if rec := w.do(req); rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("backup download cacheable: %v", rec.Header())
	}
}

// TestDashboardBackupsAndDisk: the dashboard lists the automatic backups
// (name, age, size) and warns when the data directory's disk is low or
// full.
func TestDashboardBackupsAndDisk(t *testing.T) {
	w := newWebFixture(t)
	cookie, _ := w.login(testToken)
	page := func() string {
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(cookie)
		return w.do(req).Body.String()
	}
	body := page()
	if !strings.Contains(body, `id="backups"`) || !strings.Contains(body, "server-20261203T020000Z.db") || !strings.Contains(body, `data-label="Age">1d2h</td>`) || !strings.Contains(body, "64.0 KiB") {
		t.Errorf("dashboard lacks the backup list:\n%s", body)
	}
	if strings.Contains(body, `id="disk-low"`) || strings.Contains(body, `id="storage-full"`) {
		t.Error("a disk warning with room on the disk")
	}
	w.f.diskLow = true
	if body := page(); !strings.Contains(body, `id="disk-low"`) || !strings.Contains(body, "100.0 MiB free of 8.0 GiB") {
		t.Errorf("no low-disk warning:\n%s", body)
	}
	w.f.diskFull = true
	if body := page(); !strings.Contains(body, `id="storage-full"`) || strings.Contains(body, `id="disk-low"`) {
		t.Errorf("no full-disk warning:\n%s", body)
	}
}

// TestLoginLimiterNotWiped: a flood of addresses evicts the least recently
// used buckets only, never the guesser's own (the table used to be cleared
// whole at 10,000 keys); and IPv6 addresses of one /64 share a bucket.
func TestLoginLimiterNotWiped(t *testing.T) {
	w := newWebFixture(t)
	guess := func(addr, secret string) int {
		req := form("POST", "/login", url.Values{"secret": {secret}})
		req.RemoteAddr = addr
		return w.do(req).Code
	}
	for range loginBurst {
		guess("192.0.2.1:1234", "guess")
	}
	for i := range maxLoginKeys + 500 {
		// A flood of other addresses, while the guesser keeps trying.
		if code := guess(fmt.Sprintf("10.%d.%d.%d:1", i>>16, (i>>8)&0xff, i&0xff), ""); code != http.StatusUnauthorized {
			t.Fatalf("flood address %d: %d", i, code)
		}
		if i%1000 == 0 && guess("192.0.2.1:1234", testToken) != http.StatusTooManyRequests {
			t.Fatalf("the guesser was let in after %d other addresses", i)
		}
	}
	if n := w.h.logins.size(); n > maxLoginKeys {
		t.Errorf("%d login buckets, cap %d", n, maxLoginKeys)
	}
	for i := range loginBurst {
		if code := guess(fmt.Sprintf("[2001:db8:1:2::%x]:1", i+1), "guess"); code != http.StatusUnauthorized {
			t.Fatalf("v6 guess %d: %d", i, code)
		}
	}
	if code := guess("[2001:db8:1:2:ffff::1]:1", testToken); code != http.StatusTooManyRequests {
		t.Errorf("another address of the same /64: %d, want 429", code)
	}
	if code := guess("[2001:db8:1:3::1]:1", testToken); code != http.StatusSeeOther {
		t.Errorf("the next /64: %d, want a login", code)
	}
}

func TestSessionExpires(t *testing.T) {
	w := newWebFixture(t)
	cookie, _ := w.login(testToken)
	get := func() int {
		req := httptest.NewRequest("GET", "/events", nil)
		req.AddCookie(cookie)
		return w.do(req).Code
	}
	w.now = w.now.Add(sessionIdle - time.Minute)
	if get() != http.StatusOK {
		t.Fatal("session ended before its idle timeout")
	}
	w.now = w.now.Add(sessionIdle + time.Second)
	if get() != http.StatusSeeOther {
		t.Error("idle session still served")
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/users?q=a": "/users?q=a", "": "/", "//evil.example/": "/", "https://evil.example": "/",
		"/\\evil.example": "/", "/login": "/",
		// Browsers strip tabs and newlines, which would leave "//evil.example".
		"/\t/evil.example": "/", "/%09/evil.example": "/%09/evil.example", "/\n/evil": "/", "/\r/evil": "/",
		"/\x7f/evil": "/", "///evil.example": "/", "/users#frag": "/users#frag",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVisible(t *testing.T) {
	for in, want := range map[string]string{
		"alice":          "alice",
		"evil\u202etxt":  "evil‹U+202E›txt",
		"a\u200bb\u200d": "a‹U+200B›b‹U+200D›",
		"tab\there\x00":  "tab‹U+0009›here‹U+0000›",
		"Zoë 名前":         "Zoë 名前",
	} {
		if got := visible(in); got != want {
			t.Errorf("visible(%q) = %q, want %q", in, got, want)
		}
	}
}

var (
	inlineScript = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>`)
	handlerAttr  = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr    = regexp.MustCompile(`(?i)\sstyle\s*=`)
	inputValue   = regexp.MustCompile(`<input type="search" name="q" value="[^"]*"`)
)

// TestPagesStrict renders every page, with hostile strings in what the
// server returns, and checks the policy and markup: a strict CSP, no
// inline script or handler or style, and hostile text escaped and visible.
func TestPagesStrict(t *testing.T) {
	w := newWebFixture(t)
	cookie, _ := w.login(testToken)
	hostile := "<script>alert(1)</script>\u202e\u200b"
	w.h.series.observe(appliance.StatsSnapshot{Time: w.now})
	eventsSrv := &hostileServer{recServer: w.f, text: hostile}
	w.h.srv = eventsSrv
	w.h.api.srv = eventsSrv
	for _, r := range w.h.routes() {
		method, path, _ := strings.Cut(r.pattern, " ")
		if method != "GET" || isAPI(path) || path == "/backup" || strings.HasPrefix(path, "/static/") {
			continue
		}
		path = strings.TrimSuffix(path, "{$}") + "?q=" + url.QueryEscape(hostile)
		req := httptest.NewRequest("GET", path, nil)
		if r.access != public {
			req.AddCookie(cookie)
		}
		rec := w.do(req)
		body := rec.Body.String()
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d", path, rec.Code)
			continue
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if rec.Header().Get("X-Frame-Options") != "DENY" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", path, rec.Header())
		}
		for _, tag := range inlineScript.FindAllString(body, -1) {
			if !strings.Contains(tag, `src="/static/`) {
				t.Errorf("%s: inline script %q", path, tag)
			}
		}
		if handlerAttr.MatchString(body) || styleAttr.MatchString(body) {
			t.Errorf("%s: inline handler or style attribute", path)
		}
		// The search box gives back what was typed in it; all else must
		// show the text escaped, with the invisible characters made visible.
		shown := inputValue.ReplaceAllString(body, "")
		if strings.Contains(shown, "<script>alert") || strings.Contains(shown, "\u202e") || strings.Contains(shown, "\u200b") {
			t.Errorf("%s: hostile text not neutralised", path)
		}
		if strings.Contains(shown, "alert(1)") && !strings.Contains(shown, "&lt;script&gt;alert(1)&lt;/script&gt;‹U&#43;202E›‹U&#43;200B›") {
			t.Errorf("%s: hostile text not shown readably", path)
		}
	}
}

// hostileServer returns hostile strings wherever the server holds text a
// client or an operator chose.
type hostileServer struct {
	*recServer
	text string
}

func (h *hostileServer) Events(context.Context, int) ([]appliance.Event, error) {
	return []appliance.Event{{Kind: chat.EventRegisterRefused, Subject: h.text, Detail: h.text, Count: 1}}, nil
}

func (h *hostileServer) Bans(context.Context) ([]appliance.Ban, error) {
	return []appliance.Ban{{Target: "10.0.0.1", Reason: h.text}}, nil
}

func TestLimitsForm(t *testing.T) {
	w := newWebFixture(t)
	cookie, csrf := w.login(testToken)
	post := func(vals url.Values) string {
		vals.Set("csrf", csrf)
		req := form("POST", "/limits", vals)
		req.AddCookie(cookie)
		if rec := w.do(req); rec.Code != http.StatusSeeOther {
			t.Fatalf("POST /limits: %d", rec.Code)
		}
		page := httptest.NewRequest("GET", "/limits", nil)
		page.AddCookie(cookie)
		return w.do(page).Body.String()
	}
	body := post(url.Values{"message_rate": {"2.5"}, "message_burst": {"7"}, "login_ban": {"1h"}})
	if l := w.f.limits; l.MessageRate != 2.5 || l.MessageBurst != 7 || l.LoginBan != appliance.Duration(time.Hour) || l.ConnBurst != 30 {
		t.Errorf("limits after the form: %+v", l)
	}
	if !strings.Contains(body, "Rate limits changed") || !strings.Contains(body, "message_burst: 7") {
		t.Errorf("limits page after a change lacks the message or the YAML")
	}
	body = post(url.Values{"message_burst": {"lots"}})
	if w.f.limits.MessageBurst != 7 || !strings.Contains(body, `message_burst: &#34;lots&#34; is not a whole number`) {
		t.Errorf("bad value: limits %+v", w.f.limits)
	}
	post(url.Values{"message_burst": {"0"}})
	if w.f.limits.MessageBurst != 7 {
		t.Error("an out-of-range burst was taken")
	}
	// A rate as help shows it, a size and a duration in days.
	post(url.Values{"register_rate": {"1/60"}, "byte_rate": {"2MiB"}, "login_ban": {"1d12h"}})
	if l := w.f.limits; l.RegisterRate != 1.0/60 || l.ByteRate != 2<<20 || l.LoginBan != appliance.Duration(36*time.Hour) {
		t.Errorf("1/60, 2MiB, 1d12h: %v %v %v", l.RegisterRate, l.ByteRate, l.LoginBan)
	}
}

func TestSeriesRates(t *testing.T) {
	w := newWebFixture(t)
	s := w.h.series
	base := appliance.StatsSnapshot{Time: w.now, MessagesIn: 100, BytesIn: 1000}
	s.observe(base)
	next := base
	next.Time, next.MessagesIn, next.BytesIn = w.now.Add(2*time.Second), 120, 5000
	p := s.observe(next)
	if p.Messages != 10 || p.BytesIn != 2000 || len(s.list()) != 1 {
		t.Errorf("sample %+v", p)
	}
	cookie, _ := w.login(testToken)
	req := httptest.NewRequest("GET", "/api/series", nil)
	req.AddCookie(cookie)
	var body seriesBody
	if err := json.NewDecoder(w.do(req).Body).Decode(&body); err != nil || len(body.Samples) == 0 {
		t.Errorf("series API: %v %+v", err, body)
	}
}

func TestStaticAssets(t *testing.T) {
	w := newWebFixture(t)
	for _, name := range []string{"admin.css", "admin.js", "dashboard.js", "icon.svg"} {
		rec := w.do(httptest.NewRequest("GET", "/static/"+name, nil))
		b, _ := io.ReadAll(rec.Body)
		if rec.Code != http.StatusOK || len(b) == 0 {
			t.Errorf("%s: %d", name, rec.Code)
		}
		text := strings.ReplaceAll(string(b), `xmlns="http://www.w3.org/2000/svg"`, "")
		if strings.Contains(text, "http://") || strings.Contains(text, "https://") {
			t.Errorf("%s refers to another site", name)
		}
	}
}

func TestPasswordChangeEndsSessions(t *testing.T) {
	w := newWebFixture(t)
	cookie, _ := w.login(testToken)
	req := httptest.NewRequest("PUT", "/api/password", strings.NewReader(`{"password":"a brand new password"}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	if rec := w.do(req); rec.Code != http.StatusNoContent {
		t.Fatalf("set password: %d %s", rec.Code, rec.Body)
	}
	page := httptest.NewRequest("GET", "/users", nil)
	page.AddCookie(cookie)
	if rec := w.do(page); rec.Code != http.StatusSeeOther {
		t.Errorf("a session opened before the password change still works: %d", rec.Code)
	}
}

// TestUserActionKeepsSearch: an action on the users page comes back to the
// same search, and a forged q cannot send the browser elsewhere.
func TestUserActionKeepsSearch(t *testing.T) {
	w := newWebFixture(t)
	cookie, csrf := w.login(testToken)
	for q, want := range map[string]string{"ali": "/users?q=ali", "": "/users", "//evil.example/": "/users?q=%2F%2Fevil.example%2F"} {
		req := form("POST", "/users/kick", url.Values{"user": {"alice"}, "q": {q}, "csrf": {csrf}})
		req.AddCookie(cookie)
		rec := w.do(req)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != want {
			t.Errorf("q %q: %d to %q, want %q", q, rec.Code, rec.Header().Get("Location"), want)
		}
	}
}

// TestFailedReads: a read of the server that fails is an error answer or
// a page showing the error, never an empty table that looks complete.
func TestFailedReads(t *testing.T) {
	w := newWebFixture(t)
	w.f.failAll = true
	for _, path := range []string{"/api/stats", "/api/series", "/api/bans", "/api/users", "/api/invites", "/api/events", "/api/limits", "/metrics",
		"/", "/users", "/bans", "/invites", "/limits", "/events"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := w.do(req)
		if !strings.Contains(rec.Body.String(), errFake.Error()) || (isAPI(path) && rec.Code != http.StatusInternalServerError) {
			t.Errorf("GET %s with the server failing: %d %.200s", path, rec.Code, rec.Body)
		}
	}
	rec := w.do(form("POST", "/login", url.Values{"secret": {"correct horse battery"}}))
	if rec.Code != http.StatusInternalServerError || len(rec.Result().Cookies()) != 0 || !strings.Contains(rec.Body.String(), "could not be checked") {
		t.Errorf("login while the password cannot be read: %d %v", rec.Code, rec.Result().Cookies())
	}
}

// TestFailedFormKeepsInput: a form whose post fails comes back with the
// error and the fields as the operator filled them in (escaped), once:
// the next visit has the form as usual. A form that succeeds comes back
// empty.
func TestFailedFormKeepsInput(t *testing.T) {
	w := newWebFixture(t)
	cookie, csrf := w.login(testToken)
	post := func(path string, vals url.Values) {
		t.Helper()
		vals.Set("csrf", csrf)
		req := form("POST", path, vals)
		req.AddCookie(cookie)
		if rec := w.do(req); rec.Code != http.StatusSeeOther {
			t.Fatalf("POST %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	get := func(path string) string {
		t.Helper()
		req := httptest.NewRequest("GET", path, nil)
		req.AddCookie(cookie)
		return w.do(req).Body.String()
	}
	hostile := `(fail"><script>alert(1)</script>`
	escaped := `(fail&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;`
	for _, c := range []struct {
		path, page string
		vals       url.Values
		want       []string // in the page after the error
	}{
		{"/bans", "/bans", url.Values{"target": {hostile}, "reason": {"kept reason"}, "duration": {"2h"}},
			[]string{`id="ban-target" required placeholder="203.0.113.7, 2001:db8::/32, user:mallory" value="` + escaped + `"`, `value="kept reason"`, `id="ban-duration" placeholder="24h (empty: until lifted)" value="2h"`}},
		{"/bans", "/bans", url.Values{"target": {"10.1.2.3"}, "reason": {"r"}, "duration": {"a while"}},
			[]string{`value="10.1.2.3"`, `value="a while"`}},
		{"/invites", "/invites", url.Values{"uses": {"4"}, "duration": {"next week"}},
			[]string{`id="invite-uses" value="4"`, `value="next week"`}},
		{"/invites", "/invites", url.Values{"uses": {"none"}, "duration": {"24h"}},
			[]string{`id="invite-uses" value="none"`, `id="invite-duration" value="24h"`}},
		{"/limits", "/limits", url.Values{"message_rate": {"3"}, "message_burst": {"lots"}},
			[]string{`name="message_rate" value="3"`, `name="message_burst" value="lots"`, `name="conn_burst" value="30"`}},
		{"/broadcast", "/broadcast", url.Values{"text": {"hello " + hostile}},
			[]string{`required>hello ` + escaped + `</textarea>`}},
		{"/users/ban", "/users?q=al", url.Values{"user": {"alice"}, "q": {"al"}, "reason": {hostile}, "duration": {"168h"}},
			[]string{`aria-label="ban reason" class="short" value="` + escaped + `"`, `<option value="168h" selected>1 week</option><option value="0" >until lifted`}},
	} {
		post(c.path, c.vals)
		body := get(c.page)
		if !strings.Contains(body, `class="flash error"`) {
			t.Errorf("POST %s %v: no error on %s", c.path, c.vals, c.page)
		}
		for _, want := range c.want {
			if !strings.Contains(body, want) {
				t.Errorf("POST %s %v: the page after the error lacks %s", c.path, c.vals, want)
			}
		}
		if strings.Contains(body, "<script>alert") {
			t.Errorf("POST %s: the kept input is not escaped", c.path)
		}
		again := get(c.page)
		for _, want := range c.want {
			if strings.Contains(again, want) && !strings.Contains(want, "conn_burst") {
				t.Errorf("POST %s: the kept %s is still there on the next visit", c.path, want)
			}
		}
	}
	// Only alice's row gets her form back on the users page; bob's is as usual.
	post("/users/ban", url.Values{"user": {"alice"}, "reason": {"(fail here"}, "duration": {"0"}})
	body := get("/users")
	if strings.Count(body, `value="(fail here"`) != 1 || strings.Count(body, `<option value="0" selected>until lifted`) != 1 {
		t.Errorf("the failed ban's fields are not in exactly one row")
	}
	// A successful post leaves the form empty.
	post("/bans", url.Values{"target": {"10.9.9.9"}, "reason": {"fine"}})
	if body := get("/bans"); strings.Contains(body, `value="10.9.9.9"`) || !strings.Contains(body, "Banned 10.9.9.9") {
		t.Errorf("after a successful ban the form is filled in, or no message")
	}
}

// TestWording: counts agree with their nouns, the invites page says what
// the registration policy makes of invites, the events page says how
// long events are kept.
func TestWording(t *testing.T) {
	w := newWebFixture(t)
	cookie, csrf := w.login(testToken)
	get := func(path string) string {
		t.Helper()
		req := httptest.NewRequest("GET", path, nil)
		req.AddCookie(cookie)
		return w.do(req).Body.String()
	}
	for q, want := range map[string]string{"": "2 accounts.", "ali": "1 account matches “ali”.", "zed": "0 accounts match “zed”."} {
		if body := get("/users?q=" + q); !strings.Contains(body, want) {
			t.Errorf("users page, search %q: lacks %q", q, want)
		}
	}
	req := form("POST", "/invites", url.Values{"uses": {"1"}, "duration": {"24h"}, "csrf": {csrf}})
	req.AddCookie(cookie)
	w.do(req)
	if body := get("/invites"); !strings.Contains(body, "Invite created: 1 use, expires <time datetime=\"2026-01-03T03:04:05Z\">") {
		t.Errorf("invite flash: %s", body)
	}
	for _, c := range []struct{ policy, want string }{
		{"open", "Registration is open on this server"},
		{"invite", "Registration needs an invite on this server"},
		{"closed", "Registration is closed on this server"},
	} {
		w.h.srvInfo = serverInfo{key: "fp", registration: c.policy}
		if body := get("/invites"); !strings.Contains(body, c.want) {
			t.Errorf("invites page with registration %s lacks %q", c.policy, c.want)
		}
	}
	if body := get("/events"); !strings.Contains(body, "keeps the last 500 events in memory, since it started") {
		t.Errorf("events page does not say how events are kept")
	}
	if got := plural(1, "connection", "connections") + "," + plural(0, "use", "uses") + "," + plural(2, "account", "accounts"); got != "1 connection,0 uses,2 accounts" {
		t.Errorf("plural: %s", got)
	}
}

// TestUsersPageDevices: the users page shows each account's devices with
// their names, added and last-seen times (issue 11 point 5), names
// escaped.
func TestUsersPageDevices(t *testing.T) {
	w := newWebFixture(t)
	cookie, _ := w.login(testToken)
	page := httptest.NewRequest("GET", "/users", nil)
	page.AddCookie(cookie)
	rec := w.do(page)
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("users page: %d", rec.Code)
	}
	for _, want := range []string{`<li data-device="1">1 laptop: added `, `<li data-device="3">3 phone &lt;b&gt;: added `, "last seen"} {
		if !strings.Contains(body, want) {
			t.Errorf("users page lacks %q", want)
		}
	}
}
