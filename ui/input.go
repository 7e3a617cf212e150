package ui

import (
	"errors"
	"strings"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/securechat/securechat/client"
)

const maxInputRows = 5

// buildInput makes the input line: a text area that grows to a few rows
// for pasted or Alt-Enter multi-line text.
func (u *UI) buildInput() {
	t := tview.NewTextArea()
	t.SetBackgroundColor(tcell.ColorDefault)
	t.SetTextStyle(tcell.StyleDefault)
	t.SetPlaceholderStyle(styleDim)
	t.SetLabelStyle(styleSelf)
	t.SetWrap(true)
	t.SetWordWrap(true)
	t.SetInputCapture(u.inputKeys)
	t.SetChangedFunc(u.inputChanged)
	u.input = t
	u.inputRows = 1
}

// inputKeys handles the keys with a meaning beyond editing text.
func (u *UI) inputKeys(ev *tcell.EventKey) *tcell.EventKey {
	key := ev.Key()
	if key != tcell.KeyTab {
		u.comp = nil
		u.hint = ""
	}
	typed := key == tcell.KeyRune && ev.Modifiers()&tcell.ModAlt == 0
	if u.failed {
		u.failed = false
		switch {
		case key == tcell.KeyEnter && ev.Modifiers()&(tcell.ModAlt|tcell.ModShift) == 0:
			// tried again below
		case typed:
			if !u.mayType(string(ev.Rune()), true) {
				u.failed = true
				return nil
			}
			u.setInput("") // replaced by what is typed
		case key == tcell.KeyBackspace || key == tcell.KeyBackspace2 || key == tcell.KeyDelete:
			u.setInput("") // deleted, as a selection is
			return nil
		} // any other key makes it text to edit
	}
	if typed && !u.mayType(string(ev.Rune()), false) {
		return nil
	}
	switch key {
	case tcell.KeyEnter:
		if ev.Modifiers()&(tcell.ModAlt|tcell.ModShift) != 0 {
			return tcell.NewEventKey(tcell.KeyEnter, 0, tcell.ModNone) // a newline
		}
		u.submit()
		return nil
	case tcell.KeyCtrlJ: // a newline where Alt-Enter does not reach us
		return tcell.NewEventKey(tcell.KeyEnter, 0, tcell.ModNone)
	case tcell.KeyUp:
		if u.browseHistory(-1) {
			return nil
		}
	case tcell.KeyDown:
		if u.browseHistory(1) {
			return nil
		}
	case tcell.KeyTab:
		u.complete()
		return nil
	case tcell.KeyBacktab:
		return nil
	case tcell.KeyPgUp:
		u.scrollPane(-u.pane.page())
		return nil
	case tcell.KeyPgDn:
		u.scrollPane(u.pane.page())
		return nil
	case tcell.KeyCtrlN:
		u.cycleConversation(1)
		return nil
	case tcell.KeyCtrlP:
		u.cycleConversation(-1)
		return nil
	case tcell.KeyEscape:
		u.pane.follow()
		return nil
	}
	return ev
}

// mayType reports whether text may go into the input where the cursor
// is, or replace all of it. The server's announcements and a group this
// account left are read-only: there the input takes commands only, and
// text that would not begin with "/" is refused with the reason in the
// line above the input.
func (u *UI) mayType(text string, replacing bool) bool {
	why := u.readOnly(u.open)
	if why == "" || strings.HasPrefix(text, "/") {
		return true
	}
	if _, start, _ := u.input.GetSelection(); start > 0 && !replacing {
		return true // after the "/" of a command
	}
	u.hint = why
	return false
}

// scrollPane scrolls the message pane; at the top it loads older history.
func (u *UI) scrollPane(delta int) {
	if u.pane.scroll(delta) && delta < 0 {
		u.loadOlder(u.open)
	}
}

// setInput replaces the input's text without it counting as typing.
func (u *UI) setInput(text string) {
	u.settingText = true
	u.input.SetText(text, true)
	u.settingText = false
}

func (u *UI) inputChanged() {
	if !u.settingText {
		u.userTyping()
	}
}

// resizeInput gives the input as many rows as its text needs in width
// columns, up to maxInputRows; beyond that it scrolls. It is called
// before each draw.
func (u *UI) resizeInput(width int) {
	if width != u.inputWidth { // the text area drops its selection
		u.inputWidth = width
		u.reselect = u.failed
	}
	w := max(1, width-textWidth(u.input.GetLabel()))
	rows := len(wrap(cells(span{text: u.input.GetText()}), w, 0))
	fits := rows <= maxInputRows
	rows = min(max(rows, 1), maxInputRows)
	if rows != u.inputRows {
		u.inputRows = rows
		u.body.ResizeItem(u.input, rows, 0)
	}
	if fits {
		// Show all of it: the text area keeps the offset it scrolled to
		// while it had fewer rows.
		_, _, cursor, _ := u.input.GetCursor()
		u.input.SetOffset(max(0, cursor-rows+1), 0)
	}
}

// userTyping tells the open conversation's peer that this user types, at
// most once per typingInterval, unless turned off or the text is a
// command; in a group, not once this account left it.
func (u *UI) userTyping() {
	c := u.open
	if c == u.console || c.isSystem() || !u.sendTyping || (c.group != nil && c.group.Left) {
		return
	}
	text := u.input.GetText()
	if strings.TrimSpace(text) == "" || isCommand(text) {
		return
	}
	now := u.now()
	if c.Conversation == u.lastTypingTo && now.Sub(u.lastTyping) < typingInterval {
		return
	}
	u.lastTyping, u.lastTypingTo = now, c.Conversation
	u.b.Typing(c.Conversation)
}

// isCommand: a line starting with one "/" is a command; "//" escapes a
// message that starts with "/".
func isCommand(text string) bool {
	return strings.HasPrefix(text, "/") && !strings.HasPrefix(text, "//")
}

// submit sends the input (Enter) or runs it as a command. The input is
// emptied when that worked. A line that failed (a command refused, a
// message that could not be queued) stays in the input, all of it
// selected, as a browser's address bar keeps an address that failed:
// Enter tries it again, the arrow keys and Home/End edit it, and what is
// typed or pasted next replaces it, so the failed text is never glued
// onto the next line. It is in the input history (Up) either way.
func (u *UI) submit() {
	text := u.input.GetText()
	if strings.TrimSpace(text) == "" {
		return
	}
	u.remember(text)
	var ok bool
	if isCommand(text) {
		ok = u.command(text)
	} else {
		ok = u.sendText(u.open, strings.TrimPrefix(text, "/")) // "//" escapes a leading "/"
	}
	if ok {
		u.setInput("")
		return
	}
	u.setInput(text)
	u.selectAll()
	u.failed = true
	u.hint = "not done: Enter retries, ←→ edit, typing replaces it"
}

// pasteInput readies the input for a paste: a paste replaces a failed
// line, and none goes into the server's announcements unless it is a
// command. It reports whether the paste may go in.
func (u *UI) pasteInput(text string) bool {
	if !u.mayType(text, u.failed) {
		return false
	}
	if u.failed {
		u.failed = false
		u.setInput("")
	}
	return true
}

// selectAll selects the input's whole text, as Ctrl-L does, without the
// key going through inputKeys. (The text area's Select loses a selection
// that reaches the end of the text.)
func (u *UI) selectAll() {
	u.input.SetInputCapture(nil)
	u.input.InputHandler()(tcell.NewEventKey(tcell.KeyCtrlL, 0, tcell.ModCtrl), func(tview.Primitive) {})
	u.input.SetInputCapture(u.inputKeys)
	u.reselect = false
}

// sendText sends text to c; on failure it says why and reports false.
func (u *UI) sendText(c *conversation, text string) bool {
	if c == u.console {
		u.notice(noticeError, "no conversation is open: /msg NAME opens one")
		return false
	}
	if c.isSystem() {
		u.notice(noticeError, "%s", readOnlyNote)
		return false
	}
	if c.group != nil && c.group.Left {
		u.notice(noticeError, "not sent: %s (/group info shows the group as you last knew it)", u.readOnly(c))
		return false
	}
	e, err := u.b.Send(c.Conversation, text)
	if err != nil {
		var ic *client.IdentityChangedError
		if errors.As(err, &ic) {
			if !c.IdentityChanged {
				c.IdentityChanged, c.Verified = true, false
			}
			u.notice(noticeError, "not sent: %s", identityChangedLine(ic.User))
		} else {
			u.notice(noticeError, "not sent: %v", err)
		}
		return false
	}
	if e == nil {
		return true
	}
	if c.loaded {
		c.add(*e)
	}
	if e.Time.After(c.LastActivity) {
		c.LastActivity = e.Time
	}
	c.LastText = e.Text
	u.sortConversations()
	u.pane.follow()
	u.lastTyping = time.Time{} // the peer's indicator ends with the message
	return true
}

// remember adds a line to the input history.
func (u *UI) remember(text string) {
	if n := len(u.hist); n == 0 || u.hist[n-1] != text {
		u.hist = append(u.hist, text)
	}
	if len(u.hist) > inputHistory {
		u.hist = u.hist[len(u.hist)-inputHistory:]
	}
	u.histPos, u.histDraft = len(u.hist), ""
}

// browseHistory moves through the input history (Up: dir -1) and reports
// whether it took the key. Multi-line text being edited keeps Up and Down
// for moving the cursor.
func (u *UI) browseHistory(dir int) bool {
	text := u.input.GetText()
	browsing := u.histPos < len(u.hist)
	if strings.Contains(text, "\n") && !(browsing && text == u.hist[u.histPos]) {
		return false
	}
	if dir < 0 {
		if u.histPos == 0 {
			return true
		}
		if !browsing {
			u.histDraft = text
		}
		u.histPos--
		u.setInput(u.hist[u.histPos])
		return true
	}
	if !browsing {
		return true
	}
	u.histPos++
	if u.histPos == len(u.hist) {
		u.setInput(u.histDraft)
	} else {
		u.setInput(u.hist[u.histPos])
	}
	return true
}
