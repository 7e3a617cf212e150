package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/securechat/securechat/transport"
)

// browser is a headless Chromium driven over the DevTools protocol
// (chromedp), the way an operator's browser uses the web admin.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex // guards dialogs, problems and answer
	dialogs  []string   // JavaScript dialogs that opened unexpectedly
	problems []string   // console errors, CSP violations, exceptions
	answer   string     // typed into a prompt dialog, when set
}

// chromium finds Debian's chromium (or another Chrome); without one the
// browser tests skip, or fail where SECURECHAT_REQUIRE_ALL is set (CI).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SECURECHAT_REQUIRE_ALL") != "" {
		t.Fatal("chromium is required (SECURECHAT_REQUIRE_ALL is set): apt-get install -y chromium")
	}
	t.Skip("chromium not installed (apt-get install -y chromium)")
	return ""
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			b.mu.Lock()
			answer := b.answer
			if e.Type != page.DialogTypePrompt || answer == "" {
				b.dialogs = append(b.dialogs, e.Message)
			}
			b.mu.Unlock()
			// Not from here: Listen's func must not run commands.
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: answer != "", PromptText: answer})
		}
	})
	if err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" {
				b.problem(m.String())
			}
		}
	}()
	return b
}

func (b *browser) problem(p string) {
	b.mu.Lock()
	b.problems = append(b.problems, p)
	b.mu.Unlock()
}

// check fails the test for any dialog or page error seen so far.
func (b *browser) check() {
	b.t.Helper()
	time.Sleep(200 * time.Millisecond) // let the last console messages arrive
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.dialogs) > 0 {
		b.t.Errorf("JavaScript dialogs opened: %q", b.dialogs)
	}
	if len(b.problems) > 0 {
		b.t.Errorf("page errors: %q", b.problems)
	}
	b.dialogs, b.problems = nil, nil
}

func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// text returns the text content of the first element matching the CSS
// selector sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return eval[string](b, `document.querySelector(`+strconv.Quote(sel)+`).textContent`)
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("browser: %s: %v", expr, err)
	}
	return v
}

// waitPage loads url until cond holds on it.
func (b *browser) waitPage(url, what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.open(url)
		if b.eval0(cond) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("browser: %s never showed %s", url, what)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// eval0 evaluates a JavaScript condition once.
func (b *browser) eval0(cond string) bool {
	b.t.Helper()
	return eval[bool](b, "!!("+cond+")")
}

// waitFor polls a JavaScript condition until it holds.
func (b *browser) waitFor(what, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("browser: waiting for %s (%s): %v", what, cond, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// submit fills the form fields (CSS selector → value) and clicks button,
// then waits for the page the answer leads to to show want in #flash.
func (b *browser) submit(fields map[string]string, button, want string) {
	b.t.Helper()
	var acts []chromedp.Action[chromedp.Void]
	for sel, v := range fields {
		acts = append(acts, chromedp.SetValue(chromedp.CSS(sel), v))
	}
	acts = append(acts, chromedp.Evaluate[chromedp.Void](`document.body.dataset.old = "1"`), chromedp.Click(chromedp.CSS(button)))
	b.do("submit "+button, acts...)
	b.waitFor("the answer to "+button, `!document.body.dataset.old && document.getElementById("flash") && document.getElementById("flash").textContent.includes(`+strconv.Quote(want)+`)`)
}

func (b *browser) open(url string) {
	b.t.Helper()
	b.do("open "+url, chromedp.Navigate(url))
}

// screenshot saves the whole page as a PNG in build/screenshots (or
// $SECURECHAT_SCREENSHOTS): what the test saw, for people to look at.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("SECURECHAT_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "build", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (s *server) adminURL(t *testing.T) string { return "http://" + adminAddr(t, s) }

func (s *server) token(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(s.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// login logs the browser in to s's admin with secret.
func (b *browser) login(s *server, secret string) {
	b.t.Helper()
	base := s.adminURL(b.t)
	b.open(base + "/users")
	b.waitFor("the login page", `location.pathname == "/login" && document.getElementById("secret")`)
	b.do("log in", chromedp.SetValue(chromedp.CSS("#secret"), secret), chromedp.Submit(chromedp.CSS("#login-form")))
	b.waitFor("the page asked for before login", `location.pathname == "/users" && document.getElementById("users")`)
}

// TestWebAdmin drives the web admin in Chromium: login, a dashboard whose
// numbers move with traffic, a ban from the bans page that refuses a
// client until it is lifted, users, limits changed live, broadcast,
// events, backup, and a forged cross-site form that changes nothing.
func TestWebAdmin(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	base := s.adminURL(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	if !strings.Contains(s.stdout.String(), "web admin: "+base+"/ (log in with the token in "+filepath.Join(s.data, "admin.token")+")") {
		t.Errorf("serve does not say where the web admin is:\n%s", s.stdout.String())
	}

	// The login page, then a wrong secret, then the token.
	b.open(base + "/")
	b.waitFor("redirect to the login page", `location.pathname == "/login"`)
	b.screenshot("login")
	b.do("wrong secret", chromedp.SetValue(chromedp.CSS("#secret"), "not the token"), chromedp.Submit(chromedp.CSS("#login-form")))
	b.waitFor("the refusal", `document.getElementById("flash") && document.getElementById("flash").textContent.includes("Wrong admin token or password")`)
	b.login(s, s.token(t))

	// Dashboard: the numbers move while a client sends.
	b.open(base + "/")
	b.waitFor("the dashboard", `document.getElementById("stat-messages")`)
	before := b.text("#stat-messages")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // bob online, so deliveries move too
		for {
			select {
			case <-stop:
				return
			default:
			}
			run(t, nil, "", "recv", "--home", bob.home, "--wait", "1s")
		}
	})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Not alice.send: t.Fatal belongs to the test's goroutine.
			if r := run(t, nil, "", "send", "--home", alice.home, "--to", "bob", fmt.Sprintf("dashboard traffic %d", i)); r.Code != 0 {
				t.Errorf("send during the dashboard check: %s", r.Stderr)
				return
			}
		}
	})
	b.waitFor("the message count to move", `document.getElementById("stat-messages").textContent != `+strconv.Quote(before))
	b.waitFor("a rate above zero", `parseFloat(document.getElementById("stat-msgs-rate").textContent) > 0`)
	b.waitFor("deliveries to move", `parseInt(document.getElementById("stat-deliveries").textContent) > 0`)
	b.waitFor("the chart to have points", `parseInt(document.getElementById("chart").dataset.points) >= 5`)
	close(stop)
	wg.Wait()
	// The chart counts with whole numbers on its axis, whatever the rates.
	ticks := strings.Split(eval[string](b, `document.getElementById("chart").dataset.ticks`), ",")
	for _, tick := range ticks {
		if _, err := strconv.Atoi(tick); err != nil || len(ticks) < 2 {
			t.Errorf("chart axis ticks %q: want whole numbers", ticks)
			break
		}
	}
	// Each number says what it counts: messages received since start
	// beside the copies waiting in mailboxes.
	for id, want := range map[string]string{"stat-messages": "Messages received · since start", "stat-deliveries": "Deliveries · copies handed to devices, since start",
		"stat-queue": "Waiting in mailboxes · copies not yet delivered, one per device"} {
		got := eval[string](b, `(function (e) { return e.querySelector(".label").textContent + " · " + e.querySelector(".note").textContent })(document.getElementById(`+strconv.Quote(id)+`).parentElement)`)
		if got != want {
			t.Errorf("dashboard %s reads %q, want %q", id, got, want)
		}
	}
	if n, _ := strconv.Atoi(b.text("#stat-messages")); n <= 0 {
		t.Errorf("messages on the dashboard: %q", b.text("#stat-messages"))
	}
	// Grouped as serve, the first run and the status bar show it (issue 14 point 10).
	if got, want := b.text("#server-key"), groupedFP(s.FP); got != want {
		t.Errorf("dashboard shows server key %q, want %q", got, want)
	}
	b.screenshot("dashboard")

	// Bans: ban 127.0.0.1/32 and the client is refused; unban and it is not.
	b.open(base + "/bans")
	b.submit(map[string]string{"#ban-target": "127.0.0.1/32", "#ban-reason": "browser test", "#ban-duration": "1h"}, "#ban-submit", "Banned 127.0.0.1/32")
	b.waitFor("the ban in the list", `document.querySelector('#bans tr[data-target="127.0.0.1/32"]')`)
	b.screenshot("bans")
	r := fails(t, 1, "", nil, "send", "--home", alice.home, "--to", "bob", "while banned")
	if !strings.Contains(r.Stderr, "refused") && !strings.Contains(r.Stderr, "banned") {
		t.Errorf("banned client's error: %q", r.Stderr)
	}
	b.submit(nil, `#bans tr[data-target="127.0.0.1/32"] button[name=unban]`, "Lifted the ban on 127.0.0.1/32")
	alice.send(t, "bob", "after the unban")

	// Users: search, mute from the page, unmute.
	b.open(base + "/users?q=ali")
	b.waitFor("the search result", `document.querySelectorAll("#users tbody tr[data-user]").length == 1 && document.querySelector('#users tr[data-user="alice"]')`)
	b.submit(nil, `#users tr[data-user="alice"] button[name=mute]`, "Muted alice for 1h")
	fails(t, 1, "you are muted", nil, "send", "--home", alice.home, "--to", "bob", "muted?")
	b.waitFor("the muted tag", `document.querySelector('#users tr[data-user="alice"] .tag.warn')`)
	b.screenshot("users")
	b.submit(nil, `#users tr[data-user="alice"] button[name=unmute]`, "Unmuted alice")
	alice.send(t, "bob", "after the unmute")

	// Kick bob's live connection; delete carol's account after typing her
	// name into the confirmation.
	carol := register(t, s, "carol")
	recvDone := make(chan result, 1)
	go func() { recvDone <- run(t, nil, "", "recv", "--home", bob.home, "--wait", "30s") }()
	b.waitPage(base+"/users", "bob online", `document.querySelector('#users tr[data-user="bob"] td:nth-child(5)').textContent.trim() == "1"`)
	b.submit(nil, `#users tr[data-user="bob"] button[name=kick]`, "Disconnected bob (1 connection)")
	select {
	case r := <-recvDone:
		if !strings.Contains(r.Stderr, "disconnected by the server operator") {
			t.Errorf("kicked recv: exit %d, %q", r.Code, r.Stderr)
		}
	case <-time.After(15 * time.Second):
		t.Error("the kicked client's recv went on")
	}
	b.mu.Lock()
	b.answer = "carol"
	b.mu.Unlock()
	b.submit(nil, `#users tr[data-user="carol"] button[name=delete]`, "Deleted the account carol")
	b.mu.Lock()
	b.answer = ""
	b.mu.Unlock()
	if b.eval0(`document.querySelector('#users tr[data-user="carol"]') !== null`) {
		t.Error("carol is still listed")
	}
	fails(t, 1, "", nil, "send", "--home", carol.home, "--to", "bob", "deleted?")

	// Limits change live: one message at a time, then back.
	b.open(base + "/limits")
	b.submit(map[string]string{"#limit-message_rate": "0.001", "#limit-message_burst": "1"}, "#limits-submit", "Rate limits changed")
	if got := b.text("#limits-yaml"); !strings.Contains(got, "message_burst: 1\n") || !strings.Contains(got, "message_rate: 0.001\n") {
		t.Errorf("limits YAML: %q", got)
	}
	alice.send(t, "bob", "the one message the burst allows")
	fails(t, 1, "rate limited (messages)", nil, "send", "--home", alice.home, "--to", "bob", "over the new limit")
	b.screenshot("limits")
	b.submit(map[string]string{"#limit-message_rate": "20", "#limit-message_burst": "60"}, "#limits-submit", "Rate limits changed")
	alice.send(t, "bob", "limits restored")

	// Broadcast reaches bob as a system message signed by the server.
	b.open(base + "/broadcast")
	b.submit(map[string]string{"#broadcast-text": "maintenance tonight"}, "#broadcast-submit", "Broadcast queued for 2 accounts")
	var system []message
	for _, m := range bob.recv(t, "2s") {
		if m.Kind == "system" {
			system = append(system, m)
		}
	}
	if len(system) != 1 || system[0].Text != "maintenance tonight" {
		t.Errorf("bob's system messages: %+v", system)
	}

	// Events: the ban, the mute, the limits and the logins are there.
	b.open(base + "/events")
	b.waitFor("the events", `document.querySelector("#events tr.kind-ban") && document.querySelector("#events tr.kind-mute") && document.querySelector("#events tr.kind-limits_changed") && document.querySelector("#events tr.kind-admin_login") && document.querySelector("#events tr.kind-admin_login_failed")`)
	b.screenshot("events")

	// Backup: the download link serves the store to the session.
	b.open(base + "/")
	href := eval[string](b, `document.getElementById("backup-link").getAttribute("href")`)
	if warn := eval[string](b, `document.getElementById("backup-warning").textContent`); !strings.Contains(warn, "password hash") || !strings.Contains(warn, "chmod 600") {
		t.Errorf("backup warning: %q", warn)
	}
	cres, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	cookies := cres.Cookies
	if len(cookies) != 1 || !cookies[0].HTTPOnly || cookies[0].SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie: %+v", cookies)
	}
	req, _ := http.NewRequest("GET", base+href, nil)
	req.AddCookie(&http.Cookie{Name: cookies[0].Name, Value: cookies[0].Value})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 64)
	n, _ := resp.Body.Read(head)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") || n == 0 ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("backup download: %d %v", resp.StatusCode, resp.Header)
	}
	noCookie, _ := http.Get(base + href)
	if noCookie.StatusCode == http.StatusOK && noCookie.Request.URL.Path == href {
		t.Error("backup downloaded without a session")
	}
	noCookie.Body.Close()

	// A forged form on another origin posts a ban with the admin's
	// browser: it is refused and nothing is banned.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			// The browser's favicon request: a 404 here, logged after the
			// problems are cleared below, would fail the test.
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form id="f" method="post" action="%s/bans"><input name="target" value="10.9.8.7"><input name="csrf" value="guess"></form>
<script>document.getElementById("f").submit()</script>`, base)
	}))
	defer evil.Close()
	b.open(evil.URL)
	b.waitFor("the forged post to land", `location.href.startsWith(`+strconv.Quote(base)+`)`)
	body := eval[string](b, `document.body.textContent`)
	if !strings.Contains(body, "refused") {
		t.Errorf("forged cross-site POST answered %q", body)
	}
	if r := ok(t, nil, "admin", "--data", s.data, "bans"); strings.Contains(r.Stdout, "10.9.8.7") {
		t.Errorf("the forged POST banned 10.9.8.7:\n%s", r.Stdout)
	}
	b.mu.Lock()
	b.problems = nil // the forged page's refused request logs a 403
	b.mu.Unlock()

	// Log out: the pages are closed again.
	b.open(base + "/")
	b.do("log out", chromedp.Click(chromedp.CSS("form.logout button")))
	b.waitFor("the login page", `location.pathname == "/login"`)
	b.open(base + "/users")
	b.waitFor("still the login page", `location.pathname == "/login"`)
	b.check()
}

// TestWebInviteAndPassword: on an invite-only server the operator logs in
// with the password set by `securechat admin passwd`, creates an invite
// on the invites page, and a new user registers with its code, once.
func TestWebInviteAndPassword(t *testing.T) {
	s := startServer(t, "--registration", "invite")
	b := newBrowser(t)
	run(t, nil, "", "admin", "--data", s.data, "passwd", "--clear") // nothing set yet: still fine
	res := run(t, nil, "short!\n", "admin", "--data", s.data, "passwd", "--password-stdin")
	if res.Code != 1 || !strings.Contains(res.Stderr, "at least 8") {
		t.Errorf("short admin password: %d %q", res.Code, res.Stderr)
	}
	if r := run(t, nil, "a long admin password\n", "admin", "--data", s.data, "passwd", "--password-stdin"); r.Code != 0 {
		t.Fatalf("admin passwd: %d %s", r.Code, r.Stderr)
	}
	b.login(s, "a long admin password")

	b.open(s.adminURL(t) + "/invites")
	if got := b.text("#registration-note"); !strings.Contains(got, "Registration needs an invite") {
		t.Errorf("invites page on an invite-only server: %q", got)
	}
	b.submit(map[string]string{"#invite-uses": "1", "#invite-duration": "24h"}, "#invite-submit", "Invite created: 1 use, expires ")
	code := strings.TrimSpace(b.text("#flash-code"))
	b.screenshot("invites")
	if code == "" {
		t.Fatal("no invite code on the page")
	}
	home := filepath.Join(t.TempDir(), "carol")
	fails(t, 1, "invite", pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "carol", "--home", home)
	ok(t, pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "carol", "--home", home, "--invite", code)
	home2 := filepath.Join(t.TempDir(), "dave")
	fails(t, 1, "invite", pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", "dave", "--home", home2, "--invite", code)
	b.open(s.adminURL(t) + "/invites")
	b.waitFor("the used invite gone", `!document.querySelector("#invites code")`)
	b.check()
}

// TestWebHostileText: user names a modified client tries to register
// (script, right-to-left override, zero-width characters) and a ban
// reason with markup show on the admin pages as plain, readable text: no
// script runs, no element is made, the invisible characters are marked.
func TestWebHostileText(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	names := []string{"<script>alert(1)</script>", "admin\u202egnp.exe", "ali\u200bce"}
	fp, err := transport.ParseFingerprint(s.FP)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := transport.Dial(ctx, s.Addr, &transport.Pinner{Pin: fp})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(nil)
		c.WriteFrame(transport.CodeRegister, 1, &transport.Enroll{User: name, Password: password, DeviceKey: pub, Signature: make([]byte, ed25519.SignatureSize)})
		f, err := c.ReadFrame()
		var e transport.Error
		if err != nil || f.Code != transport.CodeError || transport.Unmarshal(f.Body, &e) != nil || e.Code != transport.ErrInvalidName {
			t.Errorf("registering %q: %v %v %+v", name, f.Code, err, e)
		}
		c.Close(transport.CloseNormal, "")
	}
	reason := `<img src=x onerror=alert(2)> spam` + "\u202e" + "evil\u200b"
	s.admin(t, "ban", "203.0.113.9", "--reason", reason)

	b.login(s, s.token(t))
	b.open(s.adminURL(t) + "/events?kind=register_refused")
	b.waitFor("the refused registrations", `document.querySelectorAll("#events tr.kind-register_refused").length >= 1`)
	details := eval[string](b, `Array.from(document.querySelectorAll("#events tr.kind-register_refused td.detail")).map(e => e.textContent).join("\n")`)
	for _, want := range []string{`"<script>alert(1)</script>"`, `"admin\u202egnp.exe"`, `"ali\u200bce"`} {
		if !strings.Contains(details, want) {
			t.Errorf("events page does not show %s readably; it shows:\n%s", want, details)
		}
	}
	if scripts := eval[int](b, `document.querySelectorAll("main img, main td script").length`); scripts != 0 {
		t.Errorf("%d script or img elements made from hostile text", scripts)
	}
	b.screenshot("hostile-events")

	b.open(s.adminURL(t) + "/bans")
	b.waitFor("the ban", `document.querySelector('#bans tr[data-target="203.0.113.9/32"]')`)
	got := b.text(`#bans tr[data-target="203.0.113.9/32"] td.reason`)
	if want := `<img src=x onerror=alert(2)> spam‹U+202E›evil‹U+200B›`; got != want {
		t.Errorf("ban reason shows %q, want %q", got, want)
	}
	if imgs := eval[int](b, `document.querySelectorAll("main img").length`); imgs != 0 {
		t.Error("an img element was made from the ban reason")
	}
	b.screenshot("hostile-bans")
	b.check()
}

// TestAdminTLS: the admin listener off loopback needs TLS; with a
// self-signed certificate it serves HTTPS, `securechat admin --data` pins
// the certificate, and the session cookie is Secure.
func TestAdminTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := fails(t, 1, "not on loopback and has no TLS", nil, "serve", "--listen", "127.0.0.1:0", "--data", dir, "--admin", "0.0.0.0:0")
	if strings.Contains(r.Stdout, "listening") {
		t.Errorf("the server started anyway: %s", r.Stdout)
	}

	s := startServer(t, "--admin-self-signed")
	pemCert, err := os.ReadFile(filepath.Join(s.data, "admin.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.stdout.String(), "web admin: https://"+adminAddr(t, s)+"/") {
		t.Errorf("serve does not give the HTTPS address:\n%s", s.stdout.String())
	}
	if out := s.admin(t, "stats").Stdout; !strings.Contains(out, groupedFP(s.FP)) {
		t.Errorf("admin stats over HTTPS: %s", out)
	}
	block, _ := pem.Decode(pemCert)
	pool := x509.NewCertPool()
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(cert)
	c := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	base := "https://" + adminAddr(t, s)
	if _, err := http.Get(base + "/login"); err == nil {
		t.Error("an unknown certificate was accepted by a client without it")
	}
	resp, err := c.PostForm(base+"/login", url.Values{"secret": {s.token(t)}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].Secure || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("login over HTTPS: %d %+v", resp.StatusCode, cookies)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over HTTPS")
	}
	plain, err := http.Get("http://" + adminAddr(t, s) + "/login")
	if err == nil {
		if plain.StatusCode < 400 {
			t.Errorf("plain HTTP on the TLS listener: %d", plain.StatusCode)
		}
		plain.Body.Close()
	}

	// Restarted, it keeps its certificate: pinned clients go on working.
	s.restart()
	again, err := os.ReadFile(filepath.Join(s.data, "admin.crt"))
	if err != nil || !bytes.Equal(again, pemCert) {
		t.Error("the self-signed certificate changed across a restart")
	}
	s.admin(t, "bans")
}

// overflowing lists what sticks out of the viewport sideways on the page:
// the document wider than the window, and any control in main whose box
// is not wholly inside the viewport (a table's overflow could clip one
// without widening the document).
const overflowing = `(function () {
  var out = [];
  var de = document.documentElement;
  if (de.scrollWidth > de.clientWidth || de.scrollWidth > window.innerWidth) {
    var widest = "", w = 0;
    document.querySelectorAll("body *").forEach(function (e) {
      var r = e.getBoundingClientRect();
      if (r.right > w) { w = r.right; widest = e.tagName + (e.id ? "#" + e.id : "") + (e.className ? "." + e.className : ""); }
    });
    out.push("document " + de.scrollWidth + " px wide in a window of " + window.innerWidth + " (client " + de.clientWidth + "); widest: " + widest + " to " + Math.round(w));
  }
  document.querySelectorAll("main button, main input:not([type=hidden]), main select, main textarea, main a, main code, main td, footer code").forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.width > 0 && (r.left < -0.5 || r.right > de.clientWidth + 0.5)) {
      out.push(e.tagName + (e.id ? "#" + e.id : "") + (e.name ? "[name=" + e.name + "]" : "") + " spans " + Math.round(r.left) + "–" + Math.round(r.right));
    }
  });
  return out.join("\n");
})()`

// TestWebPhone: at 400 px wide (a phone) no admin page scrolls sideways,
// the header with its navigation stays short, every control — the users
// table's action buttons too — is on the screen, and the wording counts
// right ("1 account").
func TestWebPhone(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	base := s.adminURL(t)
	register(t, s, "alice")
	b.do("a phone's width", chromedp.EmulateViewport(400, 860))
	b.login(s, s.token(t))
	if w := eval[int](b, `window.innerWidth`); w != 400 {
		t.Fatalf("the window is %d px wide, not 400", w)
	}
	if got := b.text("#users-count"); got != "1 account." {
		t.Errorf("users page with one account says %q", got)
	}

	// Long things: the longest user name, an IPv6 prefix with a long
	// reason, an invite, events.
	long := strings.Repeat("long_name.", 3) + "xy" // 32 characters, the most a name may have
	register(t, s, long)
	s.admin(t, "ban", "2001:db8:1234:5678::/64", "--reason", strings.Repeat("a reason with many words and averyveryverylongwordwithoutspaces ", 4))
	s.admin(t, "ban", "user:alice", "--reason", "flooding")
	s.admin(t, "invite", "3", "7d")

	pages := []string{"/", "/users", "/users?q=" + long[:8], "/bans", "/invites", "/limits", "/broadcast", "/events"}
	for _, p := range pages {
		b.open(base + p)
		b.waitFor("the page "+p, `document.querySelector("main h1")`)
		if p == "/" {
			b.waitFor("the chart drawn", `document.getElementById("chart").dataset.ticks != ""`)
		}
		if bad := eval[string](b, overflowing); bad != "" {
			t.Errorf("%s at 400 px:\n%s", p, bad)
		}
		if h := eval[float64](b, `document.querySelector("header.top").getBoundingClientRect().height`); h > 64 {
			t.Errorf("%s at 400 px: the header is %.0f px tall", p, h)
		}
		// Every page stays reachable from the navigation, which may scroll
		// sideways within itself but not the page.
		if n := eval[int](b, `document.querySelectorAll("header.top nav a").length`); n != 7 {
			t.Errorf("%s: %d links in the navigation", p, n)
		}
		name := "phone" + strings.NewReplacer("/", "-", "?", "-", "=", "-").Replace(p)
		if p == "/" {
			name = "phone-dashboard"
		}
		b.screenshot(name)
	}

	// The users table: each account's action buttons are on the screen,
	// beneath its details, and can be used.
	b.open(base + "/users")
	b.waitFor("the users", `document.querySelectorAll("#users tr[data-user]").length == 2`)
	if got := b.text("#users-count"); got != "2 accounts." {
		t.Errorf("users page with two accounts says %q", got)
	}
	buttons := eval[string](b, `Array.from(document.querySelectorAll("#users .actions button")).map(function (e) {
	  var r = e.getBoundingClientRect();
	  return (r.width > 0 && r.left >= 0 && r.right <= document.documentElement.clientWidth && r.top >= 0) ? "" : e.name + " " + Math.round(r.left) + "–" + Math.round(r.right);
	}).filter(Boolean).join(", ")`)
	if buttons != "" {
		t.Errorf("users' action buttons off the screen: %s", buttons)
	}
	if n := eval[int](b, `document.querySelectorAll("#users .actions button").length`); n < 6 {
		t.Errorf("%d action buttons for two accounts", n)
	}
	b.submit(nil, `#users tr[data-user="alice"] button[name=kick]`, "Disconnected alice (0 connections)")
	b.open(base + "/users?q=" + long[:8])
	if got := b.text("#users-count"); got != "1 account matches “"+long[:8]+"”." {
		t.Errorf("a search with one match says %q", got)
	}

	// An error keeps the phone's page as narrow as the rest.
	b.open(base + "/bans")
	b.submit(map[string]string{"#ban-target": strings.Repeat("not-an-address-", 6)}, "#ban-submit", "")
	if bad := eval[string](b, overflowing); bad != "" {
		t.Errorf("/bans with an error at 400 px:\n%s", bad)
	}
	b.screenshot("phone-bans-error")

	// Open registration: the invites page says invites change nothing.
	b.open(base + "/invites")
	if got := b.text("#registration-note"); !strings.Contains(got, "Registration is open") || !strings.Contains(got, "invites change nothing") {
		t.Errorf("invites page on an open server: %q", got)
	}
	// Events: how long they are kept.
	b.open(base + "/events")
	if got := b.text("#events-note"); !strings.Contains(got, "last 500 events") || !strings.Contains(got, "since it started") {
		t.Errorf("events page note: %q", got)
	}
	b.check()
}

// TestWebFormsKeepInput: a form posted with a bad value comes back with
// the error and what the operator typed, on every form that can fail, and
// nothing was changed.
func TestWebFormsKeepInput(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	base := s.adminURL(t)
	register(t, s, "alice")
	b.login(s, s.token(t))

	value := func(sel string) string {
		t.Helper()
		return eval[string](b, `document.querySelector(`+strconv.Quote(sel)+`).value`)
	}
	keeps := func(what string, fields map[string]string) {
		t.Helper()
		for sel, want := range fields {
			if got := value(sel); got != want {
				t.Errorf("%s: after the error %s holds %q, want %q", what, sel, got, want)
			}
		}
	}

	// Bans: a target that is no address, then a duration that is none.
	b.open(base + "/bans")
	typed := map[string]string{"#ban-target": "203.0.113.300", "#ban-reason": "spam from the web", "#ban-duration": "2h"}
	b.submit(typed, "#ban-submit", "203.0.113.300")
	if !b.eval0(`document.querySelector("#flash.error")`) {
		t.Errorf("a bad ban target is not an error: %q", b.text("#flash"))
	}
	keeps("bans, bad target", typed)
	typed = map[string]string{"#ban-target": "203.0.113.30", "#ban-reason": "spam again", "#ban-duration": "a while"}
	b.submit(typed, "#ban-submit", "a while")
	keeps("bans, bad duration", typed)
	if r := s.admin(t, "bans"); strings.Contains(r.Stdout, "203.0.113.3") {
		t.Errorf("a refused ban was made:\n%s", r.Stdout)
	}
	// The values are the error's only: the next visit has an empty form.
	b.open(base + "/bans")
	keeps("bans, visited again", map[string]string{"#ban-target": "", "#ban-reason": "", "#ban-duration": ""})
	// and a good ban still works, with the form empty after it.
	b.submit(map[string]string{"#ban-target": "203.0.113.30", "#ban-reason": "spam", "#ban-duration": "1h"}, "#ban-submit", "Banned 203.0.113.30")
	keeps("bans, after a ban", map[string]string{"#ban-target": "", "#ban-reason": ""})

	// Invites: an expiry that is no duration.
	b.open(base + "/invites")
	typed = map[string]string{"#invite-uses": "4", "#invite-duration": "next week"}
	b.submit(typed, "#invite-submit", "next week")
	keeps("invites", typed)
	if n := eval[int](b, `document.querySelectorAll("#invites code").length`); n != 0 {
		t.Errorf("a refused invite was made (%d listed)", n)
	}

	// Limits: one bad value among several; nothing changes, and every
	// field shows what was typed.
	b.open(base + "/limits")
	yaml := b.text("#limits-yaml")
	typed = map[string]string{"#limit-message_rate": "3", "#limit-message_burst": "lots"}
	b.submit(typed, "#limits-submit", "lots")
	keeps("limits", typed)
	if got := b.text("#limits-yaml"); got != yaml {
		t.Errorf("a refused change moved the limits:\n%s\nwas\n%s", got, yaml)
	}

	// Users: a ban whose reason is too long keeps the reason and the
	// chosen duration in alice's row.
	b.open(base + "/users")
	reason := strings.Repeat("too long ", 600)
	b.do("choose a week", chromedp.SetValue(chromedp.CSS(`#users tr[data-user="alice"] form[action="/users/ban"] select`), "168h"))
	b.submit(map[string]string{`#users tr[data-user="alice"] input[name=reason]`: reason}, `#users tr[data-user="alice"] button[name=ban]`, "reason is longer")
	keeps("users' ban", map[string]string{
		`#users tr[data-user="alice"] input[name=reason]`:                reason,
		`#users tr[data-user="alice"] form[action="/users/ban"] select`:  "168h",
		`#users tr[data-user="alice"] form[action="/users/mute"] select`: "1h",
	})

	// Broadcast: a text over the limit comes back for shortening.
	b.open(base + "/broadcast")
	text := strings.Repeat("x", 4100)
	b.submit(map[string]string{"#broadcast-text": text}, "#broadcast-submit", "4096 bytes")
	keeps("broadcast", map[string]string{"#broadcast-text": text})
	b.check()
}

// timeZone makes the browser's time zone zone; "" is the machine's.
func (b *browser) timeZone(zone string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: zone}); err != nil {
		b.t.Fatalf("browser: time zone %q: %v", zone, err)
	}
}

// TestWebLocalTime: the pages show times in the browser's time zone, in
// the format of the console and `securechat admin` (2006-01-02 15:04:05
// MST), whatever the server's zone (UTC on a test machine).
func TestWebLocalTime(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	base := s.adminURL(t)
	s.admin(t, "ban", "203.0.113.9", "--reason", "clock test")
	b.login(s, s.token(t))
	for _, zone := range []string{"America/New_York", "Asia/Kolkata", "Europe/Berlin"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatalf("time zone %s: %v", zone, err)
		}
		b.timeZone(zone)
		b.open(base + "/bans")
		b.waitFor("the ban", `document.querySelector('#bans tr[data-target="203.0.113.9/32"] time')`)
		stamp := eval[string](b, `document.querySelector('#bans tr[data-target="203.0.113.9/32"] time').getAttribute("datetime")`)
		at, err := time.Parse(time.RFC3339, stamp)
		if err != nil {
			t.Fatalf("datetime %q: %v", stamp, err)
		}
		// The zone's abbreviation as Go writes it, or its offset where the
		// browser knows no abbreviation in English (Asia/Kolkata).
		want, orOffset := at.In(loc).Format("2006-01-02 15:04:05 MST"), at.In(loc).Format("2006-01-02 15:04:05 -0700")
		if got := b.text(`#bans tr[data-target="203.0.113.9/32"] time`); got != want && got != orOffset {
			t.Errorf("in %s the ban's time shows %q, want %q or %q", zone, got, want, orOffset)
		}
	}
	b.timeZone("") // the machine's
	b.check()
}
