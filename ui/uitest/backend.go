// Package uitest provides in-process fakes for testing the terminal UI
// (package ui): a Backend that keeps conversations in memory and records
// every call, a Clock moved by hand, and a Terminal on tcell's simulation
// screen that reads back what was drawn.
package uitest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// Fingerprint is the server key fingerprint a Backend reports, grouped.
const Fingerprint = "f90a d123 8ca2 52e4 a599 dbf8 9c8b 07f8 05d6 a365 539a cda5 060a 197c e444 3bdf"

// Call is one recorded call of a Backend method.
type Call struct {
	Method string
	Args   []string
}

// Backend is a fake ui.Backend. Its methods are safe for concurrent use.
type Backend struct {
	events chan client.UIEvent

	mu      sync.Mutex // guards the fields below
	user    string
	server  string
	now     func() time.Time
	convs   map[chat.Conversation]*fakeConv
	calls   []Call
	nextID  int
	sendErr error
	closed  bool

	groups   map[chat.Conversation]*client.GroupInfo
	groupErr error // what the group changes fail with; nil: they work

	noTyping, noReceipts bool // the settings, off when true

	devices []client.DeviceStatus // the account's, for /devices; device 1 is this one

	files     []*fakeFile   // oldest first (files.go)
	fetchHold chan struct{} // FetchFile waits for it to close (HoldFetches)
}

type fakeConv struct {
	conv    client.ConversationInfo
	entries []client.HistoryEntry // oldest first
	safety  string
}

// NewBackend makes a Backend for user on an example server.
func NewBackend(user string) *Backend {
	return &Backend{
		events: make(chan client.UIEvent, 64),
		user:   user,
		server: "chat.example:4433",
		now:    time.Now,
		convs:  make(map[chat.Conversation]*fakeConv),
		groups: make(map[chat.Conversation]*client.GroupInfo),
	}
}

// SetNow sets the clock that stamps sent messages.
func (b *Backend) SetNow(now func() time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.now = now
}

// SetSendError makes Send fail with err (nil: succeed again).
func (b *Backend) SetSendError(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sendErr = err
}

// AddConversation adds (or replaces) a conversation with its history,
// oldest first. A zero LastActivity is taken from the last entry.
func (b *Backend) AddConversation(c client.ConversationInfo, entries ...client.HistoryEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range entries {
		entries[i].Conversation = c.Conversation
		if entries[i].ID == "" {
			entries[i].ID = b.newIDLocked()
		}
		if entries[i].Kind == 0 {
			entries[i].Kind = chat.KindText
		}
		if entries[i].From == "" {
			entries[i].From = c.Conversation.ID()
			if entries[i].Outgoing {
				entries[i].From = b.user
			}
		}
	}
	if c.LastActivity.IsZero() && len(entries) > 0 {
		c.LastActivity = entries[len(entries)-1].Time
		c.LastText = entries[len(entries)-1].Text
	}
	b.convs[c.Conversation] = &fakeConv{conv: c, entries: entries}
}

func (b *Backend) newIDLocked() string {
	b.nextID++
	return fmt.Sprintf("%032x", b.nextID)
}

func (b *Backend) convLocked(conv chat.Conversation) *fakeConv {
	c := b.convs[conv]
	if c == nil {
		c = &fakeConv{conv: client.ConversationInfo{Conversation: conv}}
		b.convs[conv] = c
	}
	return c
}

// SetIdentityChanged marks name's identity key changed (or not).
func (b *Backend) SetIdentityChanged(name string, changed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.convLocked(chat.Peer(name))
	c.conv.IdentityChanged = changed
	if changed {
		c.conv.Verified = false
	}
}

// SetSafetyNumber sets the safety number with name (default: a fixed
// number derived from the name).
func (b *Backend) SetSafetyNumber(name, number string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.convLocked(chat.Peer(name)).safety = number
}

// SafetyNumberFor is the default safety number with name.
func SafetyNumberFor(name string) string {
	sum := 0
	for _, c := range name {
		sum += int(c)
	}
	digits := make([]byte, 60)
	for i := range digits {
		digits[i] = byte('0' + (sum+i*7)%10)
	}
	return string(digits)
}

// Emit sends an event to the UI, waiting while the stream's buffer is
// full.
func (b *Backend) Emit(ev client.UIEvent) { b.events <- ev }

// Receive adds an incoming text message to name's history, counts it
// unread, and emits it; it returns the entry.
func (b *Backend) Receive(name, text string, at time.Time) client.HistoryEntry {
	b.mu.Lock()
	c := b.convLocked(chat.Peer(name))
	e := client.HistoryEntry{ID: b.newIDLocked(), Conversation: chat.Peer(name), From: name, Kind: chat.KindText, Text: text, Time: at}
	c.entries = append(c.entries, e)
	c.conv.Unread++
	c.conv.LastActivity, c.conv.LastText = at, text
	b.mu.Unlock()
	b.Emit(client.UIEvent{Type: client.UIMessage, Conversation: chat.Peer(name), Entry: &e})
	return e
}

// SetState changes an outgoing entry's state and emits UIState.
func (b *Backend) SetState(name, id string, s client.DeliveryState) {
	b.mu.Lock()
	if c := b.convs[chat.Peer(name)]; c != nil {
		for i := range c.entries {
			if c.entries[i].ID == id {
				c.entries[i].State = s
			}
		}
	}
	b.mu.Unlock()
	b.Emit(client.UIEvent{Type: client.UIState, Conversation: chat.Peer(name), ID: id, State: s})
}

// Close closes the event stream, as a stopping engine does.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.events)
	}
}

// Calls returns the recorded calls of method ("" for all), oldest first.
func (b *Backend) Calls(method string) []Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Call
	for _, c := range b.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Entries returns name's history, oldest first.
func (b *Backend) Entries(name string) []client.HistoryEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.convs[chat.Peer(name)]; c != nil {
		return slices.Clone(c.entries)
	}
	return nil
}

func (b *Backend) record(method string, args ...string) {
	b.calls = append(b.calls, Call{Method: method, Args: args})
}

// The ui.Backend methods.

func (b *Backend) Events() <-chan client.UIEvent { return b.events }

func (b *Backend) Self() (user, server, fingerprint string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.user, b.server, Fingerprint
}

func (b *Backend) Conversations() ([]client.ConversationInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("Conversations")
	var out []client.ConversationInfo
	for _, c := range b.convs {
		if len(c.entries) > 0 || !c.conv.LastActivity.IsZero() {
			out = append(out, c.conv)
		}
	}
	slices.SortFunc(out, func(x, y client.ConversationInfo) int { return y.LastActivity.Compare(x.LastActivity) })
	return out, nil
}

func (b *Backend) History(conversation chat.Conversation, before string, limit int) ([]client.HistoryEntry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("History", conversation.String(), before, fmt.Sprint(limit))
	c := b.convs[conversation]
	if c == nil {
		return nil, nil
	}
	end := len(c.entries)
	if before != "" {
		end = slices.IndexFunc(c.entries, func(e client.HistoryEntry) bool { return e.ID == before })
		if end < 0 {
			return nil, errors.New("no such message")
		}
	}
	return slices.Clone(c.entries[max(0, end-limit):end]), nil
}

func (b *Backend) Send(conversation chat.Conversation, text string) (*client.HistoryEntry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("Send", conversation.String(), text)
	if b.sendErr != nil {
		return nil, b.sendErr
	}
	c := b.convLocked(conversation)
	if c.conv.IdentityChanged {
		return nil, &client.IdentityChangedError{User: conversation.ID()}
	}
	if g := b.groups[conversation]; conversation.IsGroup() && (g == nil || g.Left) {
		return nil, errors.New("you are no longer a member of that group")
	}
	e := client.HistoryEntry{ID: b.newIDLocked(), Conversation: conversation, From: b.user, Outgoing: true,
		Kind: chat.KindText, Text: text, Time: b.now(), State: client.StateSending}
	c.entries = append(c.entries, e)
	c.conv.LastActivity, c.conv.LastText = e.Time, text
	return &e, nil
}

func (b *Backend) Typing(conversation chat.Conversation) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("Typing", conversation.String())
}

func (b *Backend) MarkRead(conversation chat.Conversation) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("MarkRead", conversation.String())
	if c := b.convs[conversation]; c != nil {
		c.conv.Unread = 0
	}
	return nil
}

func (b *Backend) SafetyNumber(conversation chat.Conversation) (client.SafetyInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("SafetyNumber", conversation.String())
	c := b.convLocked(conversation)
	number := c.safety
	if number == "" {
		number = SafetyNumberFor(conversation.ID())
	}
	return client.SafetyInfo{Number: number, Changed: c.conv.IdentityChanged, Verified: c.conv.Verified && !c.conv.IdentityChanged}, nil
}

func (b *Backend) Trust(conversation chat.Conversation, safetyNumber string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("Trust", conversation.String(), safetyNumber)
	c := b.convLocked(conversation)
	number := c.safety
	if number == "" {
		number = SafetyNumberFor(conversation.ID())
	}
	if safetyNumber != "" && safetyNumber != number {
		return "", errors.New("the pending identity key is not the one you compared: nothing accepted")
	}
	c.conv.IdentityChanged, c.conv.Verified = false, false
	return number, nil
}

func (b *Backend) Verify(conversation chat.Conversation) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("Verify", conversation.String())
	c := b.convLocked(conversation)
	if c.conv.IdentityChanged {
		return errors.New(conversation.ID() + "'s identity key changed: accept the new key first")
	}
	c.conv.Verified = true
	return nil
}

func (b *Backend) SetSendTyping(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.noTyping = !on
	b.record("SetSendTyping", fmt.Sprint(on))
}

func (b *Backend) SetSendReceipts(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.noReceipts = !on
	b.record("SetSendReceipts", fmt.Sprint(on))
}

// Settings reports the two settings (both on unless turned off).
func (b *Backend) Settings() (sendTyping, sendReceipts bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.noTyping, !b.noReceipts
}

// Groups.

// AddGroup adds (or replaces) a group; its conversation is chat.Group of
// its ID.
func (b *Backend) AddGroup(g client.GroupInfo) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g.Conversation = chat.Group(g.ID)
	g.Members = slices.Clone(g.Members)
	b.groups[g.Conversation] = &g
}

// SetGroupError makes the group changes fail with err (nil: work again).
func (b *Backend) SetGroupError(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.groupErr = err
}

// ReceiveGroup adds an incoming group text from a member, counts it
// unread, and emits it; it returns the entry.
func (b *Backend) ReceiveGroup(conv chat.Conversation, from, text string, at time.Time) client.HistoryEntry {
	return b.groupEntry(conv, client.HistoryEntry{From: from, Kind: chat.KindText, Text: text, Time: at}, true)
}

// GroupNote adds a line of a group's history as the engine keeps it for
// a membership change ("alice added dave") or a message waiting for its
// key, and emits it. Such lines are not counted unread.
func (b *Backend) GroupNote(conv chat.Conversation, from, text string, at time.Time) client.HistoryEntry {
	return b.groupEntry(conv, client.HistoryEntry{From: from, Kind: chat.KindSystem, Text: text, Time: at}, false)
}

func (b *Backend) groupEntry(conv chat.Conversation, e client.HistoryEntry, unread bool) client.HistoryEntry {
	b.mu.Lock()
	c := b.convLocked(conv)
	e.ID, e.Conversation = b.newIDLocked(), conv
	c.entries = append(c.entries, e)
	if unread {
		c.conv.Unread++
	}
	c.conv.LastActivity, c.conv.LastText = e.Time, e.Text
	b.mu.Unlock()
	b.Emit(client.UIEvent{Type: client.UIMessage, Conversation: conv, Entry: &e})
	return e
}

// GroupEntries returns a group's history, oldest first.
func (b *Backend) GroupEntries(conv chat.Conversation) []client.HistoryEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.convs[conv]; c != nil {
		return slices.Clone(c.entries)
	}
	return nil
}

// Group returns a group as the backend holds it now.
func (b *Backend) Group(conv chat.Conversation) (client.GroupInfo, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.groups[conv]
	if g == nil {
		return client.GroupInfo{}, false
	}
	out := *g
	out.Members = slices.Clone(g.Members)
	return out, true
}

func (b *Backend) Groups() ([]client.GroupInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("Groups")
	var out []client.GroupInfo
	for _, g := range b.groups {
		c := *g
		c.Members = slices.Clone(g.Members)
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y client.GroupInfo) int {
		if c := strings.Compare(x.Title, y.Title); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return out, nil
}

// change runs a group change as the engine does: refused when set to
// fail, for an unknown group or one this account left; otherwise f
// changes the group and returns the line kept, which is emitted.
func (b *Backend) change(method string, conv chat.Conversation, args []string, f func(g *client.GroupInfo) (string, error)) error {
	b.mu.Lock()
	b.record(method, append([]string{conv.String()}, args...)...)
	if b.groupErr != nil {
		defer b.mu.Unlock()
		return b.groupErr
	}
	g := b.groups[conv]
	if g == nil {
		defer b.mu.Unlock()
		return fmt.Errorf("no group %s in this home", conv.ID())
	}
	if g.Left {
		defer b.mu.Unlock()
		return fmt.Errorf("you are no longer a member of %q", g.Title)
	}
	line, err := f(g)
	if err != nil {
		b.mu.Unlock()
		return err
	}
	b.mu.Unlock()
	b.GroupNote(conv, b.user, line, b.now())
	return nil
}

func (b *Backend) CreateGroup(_ context.Context, title string, members []string) (client.GroupInfo, error) {
	b.mu.Lock()
	b.record("CreateGroup", append([]string{title}, members...)...)
	if b.groupErr != nil {
		defer b.mu.Unlock()
		return client.GroupInfo{}, b.groupErr
	}
	b.nextID++
	id := fmt.Sprintf("%08x%024x", 0xc0ffee00+b.nextID, b.nextID)
	g := &client.GroupInfo{Conversation: chat.Group(id), ID: id, Title: title,
		Members: []client.GroupMemberInfo{{User: b.user, Role: "owner"}}}
	var names []string
	for _, m := range members {
		if m != b.user && !slices.Contains(names, m) {
			names = append(names, m)
			g.Members = append(g.Members, client.GroupMemberInfo{User: m, Role: "member", KeyTrusted: true})
		}
	}
	b.groups[g.Conversation] = g
	out := *g
	out.Members = slices.Clone(g.Members)
	b.mu.Unlock()
	with := "nobody else yet"
	if len(names) > 0 {
		with = "with " + strings.Join(names, ", ")
	}
	b.GroupNote(g.Conversation, b.user, fmt.Sprintf("you created the group %q (%s)", title, with), b.now())
	return out, nil
}

func (b *Backend) AddToGroup(_ context.Context, conv chat.Conversation, users []string) error {
	return b.change("AddToGroup", conv, users, func(g *client.GroupInfo) (string, error) {
		var added []string
		for _, u := range users {
			if g.Role(u) == "" {
				added = append(added, u)
				g.Members = append(g.Members, client.GroupMemberInfo{User: u, Role: "member", KeyTrusted: true})
			}
		}
		if len(added) == 0 {
			return "", errors.New("nobody to add")
		}
		return "you added " + strings.Join(added, ", "), nil
	})
}

func (b *Backend) RemoveFromGroup(_ context.Context, conv chat.Conversation, users []string) error {
	return b.change("RemoveFromGroup", conv, users, func(g *client.GroupInfo) (string, error) {
		for _, u := range users {
			if g.Role(u) == "" {
				return "", fmt.Errorf("%s: %s is not a member", g.Title, u)
			}
		}
		g.Members = slices.DeleteFunc(g.Members, func(m client.GroupMemberInfo) bool { return slices.Contains(users, m.User) })
		return "you removed " + strings.Join(users, ", "), nil
	})
}

func (b *Backend) LeaveGroup(_ context.Context, conv chat.Conversation) error {
	return b.change("LeaveGroup", conv, nil, func(g *client.GroupInfo) (string, error) {
		g.Members = slices.DeleteFunc(g.Members, func(m client.GroupMemberInfo) bool { return m.User == b.user })
		g.Left = true
		return "you left", nil
	})
}

func (b *Backend) RenameGroup(_ context.Context, conv chat.Conversation, title string) error {
	return b.change("RenameGroup", conv, []string{title}, func(g *client.GroupInfo) (string, error) {
		g.Title = title
		return fmt.Sprintf("you renamed the group %q", title), nil
	})
}

func (b *Backend) MuteInGroup(_ context.Context, conv chat.Conversation, users []string, until time.Time) error {
	return b.change("MuteInGroup", conv, append(slices.Clone(users), until.Format(time.RFC3339)), func(g *client.GroupInfo) (string, error) {
		for _, u := range users {
			i := slices.IndexFunc(g.Members, func(m client.GroupMemberInfo) bool { return m.User == u })
			if i < 0 {
				return "", fmt.Errorf("%s: %s is not a member", g.Title, u)
			}
			g.Members[i].MutedUntil = until
		}
		if until.IsZero() {
			return "you unmuted " + strings.Join(users, ", "), nil
		}
		return "you muted " + strings.Join(users, ", "), nil
	})
}

func (b *Backend) SetGroupRole(_ context.Context, conv chat.Conversation, users []string, admin bool) error {
	return b.change("SetGroupRole", conv, append(slices.Clone(users), fmt.Sprint(admin)), func(g *client.GroupInfo) (string, error) {
		role, what := "member", "a member"
		if admin {
			role, what = "admin", "an admin"
		}
		for _, u := range users {
			i := slices.IndexFunc(g.Members, func(m client.GroupMemberInfo) bool { return m.User == u })
			if i < 0 {
				return "", fmt.Errorf("%s: %s is not a member", g.Title, u)
			}
			g.Members[i].Role = role
		}
		return "you made " + strings.Join(users, ", ") + " " + what, nil
	})
}

// The account's devices (/devices): device 1, this one, linked; a code
// approved adds the next, revoking removes one. Every call is recorded.

func (b *Backend) deviceList() []client.DeviceStatus {
	if b.devices == nil {
		b.devices = []client.DeviceStatus{{ID: 1, Name: "this laptop", Added: b.now(), LastSeen: b.now(), This: true, Linked: true}}
	}
	return b.devices
}

func (b *Backend) AccountDevices(context.Context) ([]client.DeviceStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, Call{Method: "AccountDevices"})
	return slices.Clone(b.deviceList()), nil
}

// FindDevice finds a device waiting with any code but "0000-0000-0000".
func (b *Backend) FindDevice(_ context.Context, code string) (*client.LinkCandidate, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, Call{Method: "FindDevice", Args: []string{code}})
	if strings.ReplaceAll(code, "-", "") == "000000000000" {
		return nil, errors.New("no device is waiting with this code")
	}
	devs := b.deviceList()
	return &client.LinkCandidate{Code: code, Device: devs[len(devs)-1].ID + 1, Name: "phone", Started: b.now()}, nil
}

func (b *Backend) ApproveDevice(_ context.Context, cand *client.LinkCandidate, _ *client.HistoryOptions) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, Call{Method: "ApproveDevice", Args: []string{cand.Code}})
	b.devices = append(b.deviceList(), client.DeviceStatus{ID: cand.Device, Name: cand.Name, Added: b.now(), LastSeen: b.now(), Linked: true})
	return nil
}

func (b *Backend) RevokeDevice(_ context.Context, device uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, Call{Method: "RevokeDevice", Args: []string{fmt.Sprint(device)}})
	if device == 1 {
		return client.ErrRevokeSelf
	}
	b.devices = slices.DeleteFunc(b.deviceList(), func(d client.DeviceStatus) bool { return d.ID == device })
	return nil
}
