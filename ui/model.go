package ui

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rivo/tview"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// noticeLevel is how a local notice (help, an error, a warning) is shown.
type noticeLevel int

const (
	noticeInfo noticeLevel = iota
	noticeWarn
	noticeError
)

// item is one thing in a conversation's pane: a history entry or a notice
// that exists only on this screen.
type item struct {
	entry  *client.HistoryEntry // nil for a notice or an upload
	notice string
	level  noticeLevel
	upload *uploadItem // a file being sent, before its message exists
}

// conversation is the UI's view of one conversation. The console (the
// zero chat.Conversation) holds the notices shown while no conversation is open.
type conversation struct {
	client.ConversationInfo
	items    []item // oldest first
	loaded   bool   // the newest page of the history is in items
	complete bool   // items reach back to the first entry of the history
	version  int    // bumped on every change, for the pane's layout cache

	typingUntil time.Time
	typingWho   string      // in a group, who is typing
	typingStop  func() bool // cancels the timer that hides the typing line

	// group is the group this conversation is, as the engine last told
	// (UI.refreshGroups); nil for a peer, or a group not known yet. label
	// is how it is shown: "#Title", "#Title (1a2b)" when titles clash.
	group *client.GroupInfo
	label string

	// unreadFrom is the ID of the first entry that was unread when the
	// conversation was opened: the pane shows the "new" divider above it
	// until another conversation is opened. "" for none.
	unreadFrom string
}

func (c *conversation) changed() { c.version++ }

// isSystem reports whether c holds the server's announcements
// (client.SystemConversation): read-only, nobody to verify.
func (c *conversation) isSystem() bool { return c.Conversation == client.SystemConversation }

// markUnread puts the "new" divider above the n newest incoming entries
// (the home counts every incoming entry it keeps unread until the
// conversation is read, but for a group's lines about the group). If
// fewer are loaded, it goes above the oldest loaded one.
func (c *conversation) markUnread(n int) {
	c.unreadFrom = ""
	for i := len(c.items) - 1; i >= 0 && n > 0; i-- {
		if e := c.items[i].entry; e != nil && !e.Outgoing && !(c.Conversation.IsGroup() && e.Kind == chat.KindSystem) {
			c.unreadFrom = e.ID
			n--
		}
	}
	c.changed()
}

// clearUnread removes the "new" divider.
func (c *conversation) clearUnread() {
	if c.unreadFrom != "" {
		c.unreadFrom = ""
		c.changed()
	}
}

// name is how the conversation is shown: the peer's name, or the group's
// label ("#" and its id until the group is known).
func (c *conversation) name() string {
	if c.label != "" {
		return c.label
	}
	return c.Conversation.String()
}

func (c *conversation) stopTypingTimer() {
	if c.typingStop != nil {
		c.typingStop()
		c.typingStop = nil
	}
}

// find returns the index of the entry with id in items, or -1.
func (c *conversation) find(id string) int {
	if id == "" {
		return -1
	}
	for i := len(c.items) - 1; i >= 0; i-- {
		if e := c.items[i].entry; e != nil && e.ID == id {
			return i
		}
	}
	return -1
}

// add appends e unless an entry with its ID is there already, in which
// case that one's delivery state is advanced. It reports whether e is new.
func (c *conversation) add(e client.HistoryEntry) bool {
	defer c.changed()
	if i := c.find(e.ID); i >= 0 {
		old := c.items[i].entry
		if advances(old.State, e.State) {
			old.State, old.Error = e.State, e.Error
		}
		return false
	}
	if i := c.findUpload(e.ID); i >= 0 && e.ID != "" {
		// The file's message takes its upload's line.
		c.items[i] = item{entry: &e}
		return true
	}
	c.items = append(c.items, item{entry: &e})
	return true
}

// prepend puts older entries (oldest first) before the loaded ones.
func (c *conversation) prepend(entries []client.HistoryEntry) {
	older := make([]item, 0, len(entries)+len(c.items))
	for i := range entries {
		if c.find(entries[i].ID) < 0 {
			older = append(older, item{entry: &entries[i]})
		}
	}
	c.items = append(older, c.items...)
	c.changed()
}

// oldestID is the ID of the oldest loaded entry, "" for none.
func (c *conversation) oldestID() string {
	for _, it := range c.items {
		if it.entry != nil {
			return it.entry.ID
		}
	}
	return ""
}

func (c *conversation) notify(level noticeLevel, text string) {
	c.items = append(c.items, item{notice: text, level: level})
	c.changed()
}

// setState applies a delivery state change to the entry with id; it
// reports whether the entry is loaded here.
func (c *conversation) setState(id string, s client.DeliveryState, errText string) bool {
	i := c.find(id)
	if i < 0 {
		return false
	}
	e := c.items[i].entry
	if advances(e.State, s) {
		e.State = s
		if s == client.StateFailed {
			e.Error = errText
		}
		c.changed()
	}
	return true
}

// setReceipts takes an outgoing group message's receipts by member from
// the engine's entry; it reports whether the entry is loaded here.
func (c *conversation) setReceipts(id string, from *client.HistoryEntry) bool {
	i := c.find(id)
	if i < 0 {
		return false
	}
	e := c.items[i].entry
	e.DeliveredTo, e.ReadBy, e.Recipients = from.DeliveredTo, from.ReadBy, from.Recipients
	if advances(e.State, from.State) {
		e.State = from.State
	}
	c.changed()
	return true
}

// advances reports whether an outgoing message in state old may move to
// state new. States only move forward (sending → stored → delivered →
// read), so receipts that overtake each other never step back; a failure
// counts only before delivery, and a failed message may be retried.
func advances(old, new client.DeliveryState) bool {
	switch {
	case new == old:
		return false
	case old == client.StateFailed:
		return true
	case new == client.StateFailed:
		return old < client.StateDelivered
	}
	return new > old
}

// load reads what the UI shows at start: who this is, the conversations,
// and the most recent conversation, opened with its history.
func (u *UI) load() {
	u.self, u.server, u.fingerprint = u.b.Self()
	convs, err := u.b.Conversations()
	if err != nil {
		u.console.notify(noticeError, "cannot list conversations: "+err.Error())
	}
	for _, c := range convs {
		if c.Conversation.IsZero() || u.byConv[c.Conversation] != nil {
			continue
		}
		conv := &conversation{ConversationInfo: c}
		u.byConv[c.Conversation] = conv
		u.convs = append(u.convs, conv)
	}
	u.refreshGroups()
	u.loadFiles()
	u.sortConversations()
	u.console.notify(noticeInfo, fmt.Sprintf("Welcome to securechat, %s (on %s). Start a conversation with /msg NAME; /help lists commands and keys.", u.self, u.server))
	if len(u.convs) > 0 {
		u.openConversation(u.convs[0])
	} else {
		u.openConversation(nil)
	}
}

// conversation returns the UI's conversation conv, making it if create.
func (u *UI) conversation(conv chat.Conversation, create bool) *conversation {
	if c := u.byConv[conv]; c != nil || !create || conv.IsZero() {
		return c
	}
	c := &conversation{ConversationInfo: client.ConversationInfo{Conversation: conv}}
	u.byConv[conv] = c
	u.convs = append(u.convs, c)
	u.sortConversations()
	return c
}

// sortConversations orders the list by last activity, newest first; ties
// (and conversations without activity) by name.
func (u *UI) sortConversations() {
	slices.SortStableFunc(u.convs, func(a, b *conversation) int {
		if c := b.LastActivity.Compare(a.LastActivity); c != 0 {
			return c
		}
		return strings.Compare(a.name(), b.name())
	})
}

// openConversation shows c (nil: the console), loading its history the
// first time and marking it read.
//
// What was unread gets the "new" divider above it, and the pane starts
// there if it would be out of view at the bottom; the divider of the
// conversation left goes, so a conversation opened again with nothing new
// has none.
func (u *UI) openConversation(c *conversation) {
	if c == nil {
		c = u.console
	}
	if u.open != nil && u.open != c {
		u.open.clearUnread()
	}
	u.open = c
	u.pane.show(c)
	u.hint = ""
	u.comp = nil
	u.reselect = u.failed // the label changes
	if c == u.console {
		u.input.SetLabel("> ")
		u.input.SetPlaceholder("/msg NAME to start a conversation, /help for help")
		return
	}
	u.labelInput(c)
	if !c.loaded {
		u.loadHistory(c)
	}
	if c.Unread > 0 {
		c.markUnread(c.Unread)
		u.pane.seekUnread()
	}
	u.markRead(c)
}

// labelInput names the open conversation c in the input's label and
// placeholder.
func (u *UI) labelInput(c *conversation) {
	name := sanitizeLine(c.name())
	u.input.SetLabel(tview.Escape(name) + "> ") // the label takes style tags
	switch {
	case c.isSystem():
		u.input.SetPlaceholder("read-only: the server's announcements; /msg NAME writes to someone")
	case c.group != nil && c.group.Left:
		u.input.SetPlaceholder("read-only: you are no longer a member; /group info shows the group")
	default:
		u.input.SetPlaceholder("message " + name + ", or /help")
	}
}

// loadHistory loads the newest page of c's history.
func (u *UI) loadHistory(c *conversation) {
	entries, err := u.b.History(c.Conversation, "", historyPage)
	if err != nil {
		c.loaded = true // show what arrives from now on
		c.notify(noticeError, "cannot load the history: "+err.Error())
		return
	}
	// Entries that arrived live before the history was loaded are in the
	// history too; keep the notices.
	notices := c.items
	c.items = nil
	c.prepend(entries)
	for _, it := range notices {
		if it.upload != nil && c.find(it.upload.id) >= 0 {
			continue // its message is in the history
		}
		if it.entry == nil {
			c.items = append(c.items, it)
		} else {
			c.add(*it.entry)
		}
	}
	c.loaded = true
	c.complete = len(entries) < historyPage
	c.changed()
}

// loadOlder loads the page of c's history before what is loaded.
func (u *UI) loadOlder(c *conversation) {
	if c == u.console || c.complete || !c.loaded {
		return
	}
	oldest := c.oldestID()
	if oldest == "" {
		c.complete = true
		c.changed()
		return
	}
	entries, err := u.b.History(c.Conversation, oldest, historyPage)
	if err != nil {
		c.complete = true // don't retry on every scroll
		c.notify(noticeError, "cannot load older messages: "+err.Error())
		return
	}
	total := u.pane.lastTotal
	c.prepend(entries)
	c.complete = len(entries) < historyPage
	u.pane.prepended(total)
}

func (u *UI) markRead(c *conversation) {
	if c == u.console {
		return
	}
	c.Unread = 0
	if err := u.b.MarkRead(c.Conversation); err != nil {
		c.notify(noticeError, "cannot mark as read: "+err.Error())
	}
}

// notice shows a line in the open conversation (or the console).
func (u *UI) notice(level noticeLevel, format string, args ...any) {
	u.open.notify(level, fmt.Sprintf(format, args...))
	u.pane.follow()
}

// cycleConversation opens the next (delta 1) or previous (-1) conversation
// of the list.
func (u *UI) cycleConversation(delta int) {
	if len(u.convs) == 0 {
		return
	}
	i := slices.Index(u.convs, u.open)
	switch {
	case i < 0 && delta > 0:
		i = 0
	case i < 0:
		i = len(u.convs) - 1
	default:
		i = (i + delta + len(u.convs)) % len(u.convs)
	}
	u.openConversation(u.convs[i])
}
