package ui

import (
	"errors"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// apply shows one engine event. It runs on the event loop.
func (u *UI) apply(ev client.UIEvent) {
	switch ev.Type {
	case client.UIConn:
		u.conn, u.connErr = ev.Conn, ev.Err
		u.connNotice(ev)
		if ev.Conn == client.ConnDisconnected {
			u.transfersCut()
		}
	case client.UIMessage:
		u.message(ev)
	case client.UIState:
		if ev.Entry != nil && ev.Conversation.IsGroup() {
			if c := u.byConv[ev.Conversation]; c != nil {
				c.setReceipts(ev.ID, ev.Entry)
			}
			return
		}
		errText := ""
		if ev.Err != nil {
			errText = ev.Err.Error()
		}
		if c := u.byConv[ev.Conversation]; c != nil && c.setState(ev.ID, ev.State, errText) {
			return
		}
		for _, c := range u.convs { // the engine named another conversation
			if c.setState(ev.ID, ev.State, errText) {
				return
			}
		}
	case client.UIFile:
		u.fileEvent(ev.Conversation, ev.File, ev.Err)
	case client.UITyping:
		u.peerTyping(ev.Conversation, ev.ID)
	case client.UIRead:
		// Read on another device of this account.
		if c := u.byConv[ev.Conversation]; c != nil && c != u.open && c.Unread > 0 {
			c.Unread = 0
			c.clearUnread()
		}
	case client.UIIdentityChanged:
		c := u.conversation(ev.Conversation, true)
		if c == nil || c.IdentityChanged {
			return
		}
		c.IdentityChanged, c.Verified = true, false
		c.notify(noticeWarn, identityChangedText(c.name()))
		if c == u.open {
			u.pane.follow()
		}
	}
}

// connNotice says in the pane why the connection was lost, which the
// status bar has no room for: once per reason, not at every retry, and
// once more when the connection is back.
func (u *UI) connNotice(ev client.UIEvent) {
	switch ev.Conn {
	case client.ConnDisconnected:
		if ev.Err == nil {
			return
		}
		reason := ev.Err.Error()
		if reason == u.connReason {
			return
		}
		u.connReason = reason
		var km *client.KeyMismatchError
		if errors.As(ev.Err, &km) {
			u.notice(noticeError, "Not connected: %s. Nothing is sent to that server; the client keeps trying and reconnects when the server with the pinned key is back.", reason)
			return
		}
		u.notice(noticeWarn, "Disconnected: %s. Reconnecting…", reason)
	case client.ConnConnected:
		if u.connReason != "" {
			u.connReason = ""
			u.notice(noticeInfo, "Connected to the server again.")
		}
	}
}

func identityChangedText(name string) string {
	return "WARNING: " + name + "'s identity key has changed. This happens when " + name +
		" reinstalls or gets a new phone, but it is also what someone in the middle would cause. " +
		"Sending to " + name + " is blocked until you accept the new key: compare safety numbers with /verify " + name + "."
}

// message shows a new entry, counts it unread and rings the bell when it
// arrived in a conversation that is not open.
func (u *UI) message(ev client.UIEvent) {
	e := ev.Entry
	if e == nil {
		return
	}
	conv := ev.Conversation
	if conv.IsZero() {
		conv = e.Conversation
	}
	c := u.conversation(conv, true)
	if c == nil {
		return
	}
	// A line about a group may mean its members changed; a group not seen
	// before needs its title.
	note := conv.IsGroup() && e.Kind == chat.KindSystem
	if conv.IsGroup() && (note || c.group == nil) {
		u.refreshGroups()
	}
	if e.Kind == chat.KindFile {
		u.refreshFile(e.ID)
	}
	isNew := true
	if c.loaded {
		isNew = c.add(*e)
	}
	if !isNew {
		return
	}
	switch {
	case !known(e.Time):
		c.LastActivity = u.now()
	case e.Time.After(c.LastActivity):
		c.LastActivity = e.Time
	}
	c.LastText = e.Text
	u.sortConversations()
	if e.Outgoing || note { // the home does not count a group's notes unread either
		return
	}
	if c.typingUntil.After(u.now()) { // what they typed has arrived
		c.typingUntil = time.Time{}
		c.stopTypingTimer()
	}
	if c == u.open {
		u.markRead(c)
		return
	}
	c.Unread++
	u.bell()
}

// peerTyping shows "NAME is typing…" for a while.
func (u *UI) peerTyping(conv chat.Conversation, who string) {
	c := u.byConv[conv]
	if c == nil {
		return
	}
	c.typingWho = who
	c.typingUntil = u.now().Add(typingShown)
	c.stopTypingTimer()
	c.typingStop = u.opts.Clock.AfterFunc(typingShown, func() {
		// Only redraw: the typing line compares typingUntil with the clock.
		u.update(func() {})
	})
}

// engineStopped is called when the engine closed its event stream.
func (u *UI) engineStopped() {
	u.engineGone = true
	u.conn = client.ConnDisconnected
}
