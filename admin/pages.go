package admin

import (
	"context"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/assets"
	"github.com/securechat/securechat/chat"
)

// The web admin's pages: rendering (html/template over the embedded
// templates) and the handlers of each page and its forms.

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

// when shows a time as the console and `securechat admin` do (timeText:
// the server's local time with its zone), in a <time> element that
// admin.js rewrites in the same format in the browser's own time zone.
func when(t time.Time) template.HTML {
	if t.IsZero() {
		return "—"
	}
	return template.HTML(`<time datetime="` + t.UTC().Format(time.RFC3339) + `">` + template.HTMLEscapeString(timeText(t, "")) + `</time>`)
}

// plural is n with the noun for n: "1 account", "2 accounts".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
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
	funcs := template.FuncMap{"visible": visible, "when": when, "bytes": byteSize, "plural": plural}
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
	// Form is what the operator typed into a form whose post failed.
	Form posted
	Data any
}

func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, page, title string, data any) {
	h.renderWith(w, r, status, page, title, data, nil)
}

func (h *handler) renderWith(w http.ResponseWriter, r *http.Request, status int, page, title string, data any, f *flash) {
	s := sessionFrom(r.Context())
	if f == nil {
		f = h.takeFlash(s)
	}
	info := h.info(r.Context())
	d := pageData{Title: title, Page: page, Flash: f, Version: h.version, Data: data, Key: info.key}
	if f != nil && f.Error {
		d.Form = f.Form
	}
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

// done answers a form: back to page with a message. After an error the
// page shows the form as the operator filled it in.
func (h *handler) done(w http.ResponseWriter, r *http.Request, page string, err error, format string, args ...any) {
	if err != nil {
		h.setFlash(r, flash{Error: true, Text: err.Error(), Form: postedForm(r)})
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

// postedForm is the form r posted, without its CSRF token.
func postedForm(r *http.Request) posted {
	r.ParseForm() // parsed already by PostFormValue; a body too large has failed before
	vals := url.Values{}
	for k, v := range r.PostForm {
		if k != csrfField {
			vals[k] = v
		}
	}
	return posted{Action: r.URL.Path, Values: vals}
}

// formDuration reads an optional duration field as the console reads
// durations (parseDuration: 30m, 24h, 7d; 0, forever or empty: none).
func formDuration(r *http.Request, field string) (time.Duration, error) {
	s := strings.TrimSpace(r.PostFormValue(field))
	if s == "" {
		return 0, nil
	}
	return parseDuration(s)
}

func durationOrEver(d time.Duration) string {
	if d == 0 {
		return "until lifted"
	}
	return "for " + appliance.FormatDuration(d)
}

func (h *handler) dashboard(w http.ResponseWriter, r *http.Request) {
	snap, err := h.srv.Snapshot(r.Context())
	if err != nil {
		h.renderWith(w, r, http.StatusInternalServerError, "dashboard", "Dashboard", dashboardData{}, &flash{Error: true, Text: err.Error()})
		return
	}
	data := dashboardData{Stats: snap, Rate: h.series.observe(snap), Now: snap.Time}
	if data.Backups, err = h.srv.Backups(r.Context()); err != nil {
		data.BackupsError = err.Error()
	}
	h.render(w, r, http.StatusOK, "dashboard", "Dashboard", data)
}

type dashboardData struct {
	Stats appliance.StatsSnapshot
	Rate  sample
	// The automatic backups, newest first, and their ages at Now.
	Backups      []appliance.BackupInfo
	BackupsError string
	Now          time.Time
}

// Age is how old a backup is at the page's time, as the console writes it.
func (d dashboardData) Age(b appliance.BackupInfo) string {
	return appliance.FormatDuration(max(d.Now.Sub(b.Time), 0).Round(time.Second))
}

func (h *handler) seriesAPI(w http.ResponseWriter, r *http.Request) {
	snap, err := h.srv.Snapshot(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
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
	all, err := h.srv.Users(r.Context())
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

// usersBack is the users page as the form was posted from: with its
// search, so that an action does not lose the operator's place.
func usersBack(r *http.Request) string {
	if q := r.PostFormValue("q"); q != "" {
		return "/users?q=" + url.QueryEscape(q)
	}
	return "/users"
}

func (h *handler) userKick(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	n, err := h.srv.Kick(r.Context(), user)
	h.done(w, r, usersBack(r), err, "Disconnected %s (%s).", user, plural(n, "connection", "connections"))
}

func (h *handler) userMute(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	d, err := formDuration(r, "duration")
	if err == nil {
		err = h.srv.Mute(r.Context(), user, d)
	}
	h.done(w, r, usersBack(r), err, "Muted %s %s.", user, durationOrEver(d))
}

func (h *handler) userUnmute(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	h.done(w, r, usersBack(r), h.srv.Unmute(r.Context(), user), "Unmuted %s.", user)
}

func (h *handler) userBan(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	d, err := formDuration(r, "duration")
	if err == nil {
		_, err = h.srv.Ban(r.Context(), "user:"+user, r.PostFormValue("reason"), d)
	}
	h.done(w, r, usersBack(r), err, "Banned %s %s.", user, durationOrEver(d))
}

func (h *handler) userDelete(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("user")
	if r.PostFormValue("confirm") != user {
		h.done(w, r, usersBack(r), fmt.Errorf("type the user name %q to confirm deleting the account", user), "")
		return
	}
	h.done(w, r, usersBack(r), h.srv.DeleteUser(r.Context(), user), "Deleted the account %s.", user)
}

func (h *handler) bansPage(w http.ResponseWriter, r *http.Request) {
	bans, err := h.srv.Bans(r.Context())
	var f *flash
	if err != nil {
		f = &flash{Error: true, Text: err.Error()}
	}
	h.renderWith(w, r, http.StatusOK, "bans", "Bans", bans, f)
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

type invitesData struct {
	Invites []appliance.Invite
	// Registration is the server's registration policy ("" when it could
	// not be read): invites matter only with invite.
	Registration string
}

func (h *handler) invitesPage(w http.ResponseWriter, r *http.Request) {
	list, err := h.srv.Invites(r.Context())
	var f *flash
	if err != nil {
		f = &flash{Error: true, Text: err.Error()}
	}
	h.renderWith(w, r, http.StatusOK, "invites", "Invites", invitesData{Invites: list, Registration: h.info(r.Context()).registration}, f)
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
		f := flash{Text: fmt.Sprintf("Invite created: %s, expires ", plural(uses, "use", "uses")), Time: inv.Expires, After: ". Give the new user this code:", Code: inv.Code}
		if inv.Expires.IsZero() {
			f.Text, f.After = fmt.Sprintf("Invite created: %s, never expires. Give the new user this code:", plural(uses, "use", "uses")), ""
		}
		h.setFlash(r, f)
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

// limitFields are the live settings of the settings table, with l's values.
func limitFields(l appliance.Limits) []limitField {
	var fields []limitField
	for _, s := range appliance.LiveSettings() {
		fields = append(fields, limitField{Key: s.Key, Help: s.Summary(), Value: l.Get(s.Key)})
	}
	return fields
}

type limitsData struct {
	Fields []limitField
	YAML   string
}

func (h *handler) limitsPage(w http.ResponseWriter, r *http.Request) {
	l, err := h.srv.Limits(r.Context())
	if err != nil {
		h.renderWith(w, r, http.StatusInternalServerError, "limits", "Rate limits", limitsData{}, &flash{Error: true, Text: err.Error()})
		return
	}
	fields := limitFields(l)
	var y strings.Builder
	for _, f := range fields {
		fmt.Fprintf(&y, "%s: %s\n", f.Key, f.Value)
	}
	h.render(w, r, http.StatusOK, "limits", "Rate limits", limitsData{Fields: fields, YAML: y.String()})
}

// limitsSet reads every field of the limits form; a field left out keeps
// its value.
func (h *handler) limitsSet(w http.ResponseWriter, r *http.Request) {
	l, err := h.srv.Limits(r.Context())
	if err == nil {
		err = parseLimitsForm(r, &l)
	}
	if err != nil {
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
		if err := l.Set(k, r.PostForm.Get(k)); err != nil {
			return err
		}
	}
	return nil
}

func (h *handler) broadcastPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "broadcast", "Broadcast", nil)
}

func (h *handler) broadcastSend(w http.ResponseWriter, r *http.Request) {
	n, err := h.srv.Broadcast(r.Context(), r.PostFormValue("text"))
	h.done(w, r, "/broadcast", err, "Broadcast queued for %s.", plural(n, "account", "accounts"))
}

type eventsData struct {
	Kept     int           // how many events the server keeps
	Coalesce time.Duration // a repeat within this counts on the same line
	Kind     chat.EventKind
	Kinds    []chat.EventKind
	Events   []appliance.Event
}

func (h *handler) eventsPage(w http.ResponseWriter, r *http.Request) {
	// An unknown kind filters everything out, as a kind nobody recorded does.
	kind := chat.EventKind(r.URL.Query().Get("kind"))
	all, err := h.srv.Events(r.Context(), appliance.EventsKept)
	d := eventsData{Kind: kind, Kept: appliance.EventsKept, Coalesce: appliance.EventsCoalesce}
	if err != nil {
		h.renderWith(w, r, http.StatusInternalServerError, "events", "Recent events", d, &flash{Error: true, Text: err.Error()})
		return
	}
	seen := map[chat.EventKind]bool{}
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

// serverInfo is what the pages show of the server that never changes while
// it runs.
type serverInfo struct {
	key          string // the server key fingerprint, as `serve` prints it
	registration string // open, invite or closed
}

// info is the server's serverInfo, read once: a Snapshot costs more than a
// page needs. A failed read is tried again on the next page.
func (h *handler) info(ctx context.Context) serverInfo {
	h.infoMu.Lock()
	defer h.infoMu.Unlock()
	if h.srvInfo.key == "" {
		if snap, err := h.srv.Snapshot(ctx); err == nil {
			h.srvInfo = serverInfo{key: snap.Fingerprint.Grouped(), registration: snap.Registration}
		}
	}
	return h.srvInfo
}
