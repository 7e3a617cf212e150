package ui

import (
	"fmt"
	"strings"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// messagePane shows a conversation's entries and notices, newest at the
// bottom. It follows new lines unless scrolled up; scrolling to the top
// loads older history (UI.scrollPane).
type messagePane struct {
	*tview.Box
	u    *UI
	conv *conversation

	following   bool // pinned to the newest line
	top         int  // first line shown when not following
	prependFrom int  // line count before older history was put on top; -1: none
	toUnread    bool // at the next draw, start at the "new" divider if it is out of view

	// From the last Draw: the number of lines and rows.
	lastTotal, lastHeight int

	cacheConv    *conversation
	cacheVersion int
	cacheWidth   int
	cacheLines   []line
	cacheUnread  int // the line of the "new" divider in cacheLines; -1: none
}

func newMessagePane(u *UI) *messagePane {
	p := &messagePane{Box: tview.NewBox(), u: u, following: true, prependFrom: -1}
	p.SetBackgroundColor(tcell.ColorDefault)
	return p
}

// show switches to c, at its newest line.
func (p *messagePane) show(c *conversation) {
	p.conv = c
	p.following = true
	p.prependFrom = -1
	p.toUnread = false
}

// seekUnread makes the next draw start at the "new" divider when the
// unread lines do not all fit below it, so that the first unread message
// is in view; else the view stays at the newest line.
func (p *messagePane) seekUnread() { p.toUnread = true }

// follow scrolls to the newest line.
func (p *messagePane) follow() { p.following = true }

// prepended notes that older lines were put on top of total lines, so the
// view can stay where it is.
func (p *messagePane) prepended(total int) {
	if !p.following {
		p.prependFrom = total
	}
}

// scroll moves the view by delta lines (negative: up, to older ones) and
// reports whether the oldest line is now in view.
func (p *messagePane) scroll(delta int) (atTop bool) {
	h := max(1, p.lastHeight)
	maxTop := max(0, p.lastTotal-h)
	if p.following {
		p.top = maxTop
	}
	p.top += delta
	if p.top >= maxTop {
		p.top, p.following = maxTop, true
	} else {
		p.following = false
	}
	p.top = max(0, p.top)
	return p.top == 0
}

// page is how far PgUp and PgDn scroll.
func (p *messagePane) page() int { return max(1, p.lastHeight-1) }

func (p *messagePane) Draw(screen tcell.Screen) {
	p.DrawForSubclass(screen, p)
	x, y, w, h := p.GetInnerRect()
	if w <= 0 || h <= 0 || p.conv == nil {
		return
	}
	lines := p.layout(w)
	total := len(lines)
	if p.prependFrom >= 0 {
		p.top += total - p.prependFrom
		p.prependFrom = -1
	}
	maxTop := max(0, total-h)
	if p.toUnread {
		p.toUnread = false
		if u := p.cacheUnread; u >= 0 && u < maxTop {
			p.top, p.following = u, false
			p.u.header.Draw(screen) // drawn before: now it says "scrolled up"
		}
	}
	if p.following || p.top >= maxTop {
		p.top, p.following = maxTop, true
	}
	row := y
	if total < h { // few lines: keep them at the bottom, next to the input
		row = y + h - total
	}
	for _, l := range lines[p.top:min(total, p.top+h)] {
		drawLine(screen, x, row, w, l, tcell.StyleDefault)
		row++
	}
	p.lastTotal, p.lastHeight = total, h
}

// MouseHandler scrolls with the wheel; clicks don't take the focus from
// the input.
func (p *messagePane) MouseHandler() func(action tview.MouseAction, event *tcell.EventMouse, setFocus func(p tview.Primitive)) (bool, tview.Primitive) {
	return p.WrapMouseHandler(func(action tview.MouseAction, event *tcell.EventMouse, setFocus func(tview.Primitive)) (bool, tview.Primitive) {
		if !p.InRect(event.Position()) {
			return false, nil
		}
		switch action {
		case tview.MouseScrollUp:
			p.u.scrollPane(-3)
		case tview.MouseScrollDown:
			p.u.scrollPane(3)
		}
		return true, nil
	})
}

// layout is the conversation wrapped to width, cached until it changes.
func (p *messagePane) layout(width int) []line {
	c := p.conv
	if p.cacheConv == c && p.cacheVersion == c.version && p.cacheWidth == width {
		return p.cacheLines
	}
	var lines []line
	if c.complete && !c.Conversation.IsZero() {
		start := "start of your conversation with " + sanitizeLine(c.name())
		switch {
		case c.isSystem():
			start = "announcements from your server, signed with its key; read-only"
		case c.Conversation.IsGroup():
			start = "start of the group " + sanitizeLine(c.name())
		}
		lines = append(lines, centre(cells(span{start, styleDim}), width))
	}
	lastDay := ""
	unread := -1
	for _, it := range c.items {
		if it.upload != nil {
			lines = append(lines, wrap(p.uploadCells(it.upload), width, 6)...)
			continue
		}
		if it.entry == nil {
			lines = append(lines, noticeLines(it, width)...)
			continue
		}
		e := it.entry
		if known(e.Time) {
			t := e.Time.In(p.u.opts.Location)
			if day := t.Format("2006-01-02"); day != lastDay {
				lastDay = day
				lines = append(lines, divider(t.Format("Mon 2 Jan 2006"), width, styleDim))
			}
		}
		if e.ID == c.unreadFrom {
			unread = len(lines)
			lines = append(lines, divider("new", width, styleWarn))
		}
		lines = append(lines, wrap(p.entryCells(c, e), width, 6)...)
	}
	p.cacheConv, p.cacheVersion, p.cacheWidth, p.cacheLines, p.cacheUnread = c, c.version, width, lines, unread
	return lines
}

// entryCells is one entry of c: "15:04 name: text" and, for outgoing
// messages, the delivery mark. In a group each member's name has its
// colour, and the lines the engine keeps about the group (who added whom,
// a message waiting for its key) are in italics, without a name.
func (p *messagePane) entryCells(c *conversation, e *client.HistoryEntry) line {
	when := "--:--"
	if known(e.Time) {
		when = e.Time.In(p.u.opts.Location).Format("15:04")
	}
	sp := []span{{when + " ", styleDim}}
	from, fromStyle := e.From, stylePeer
	group := c.Conversation.IsGroup()
	if group {
		fromStyle = memberStyle(from)
	}
	if e.Outgoing {
		fromStyle = styleSelf
		if from == "" {
			from = p.u.self
		}
	}
	if e.Unverified {
		// Not from the key accepted for From: the name is only claimed.
		sp = append(sp, span{"(unverified) ", styleError})
	}
	switch {
	case e.Kind == chat.KindSystem && group:
		sp = append(sp, span{"-- " + sanitize(e.Text), styleGroupNote})
	case e.Kind == chat.KindSystem:
		sp = append(sp, span{"-- " + sanitize(e.Text), styleDim})
	case e.Kind == chat.KindError:
		sp = append(sp, span{sanitizeLine(from) + ": ", fromStyle}, span{sanitize(e.Text), styleError})
	case e.Kind == chat.KindFile:
		sp = append(sp, span{sanitizeLine(from) + ": ", fromStyle})
		sp = append(sp, p.u.fileCells(e.ID, e.Text, e.Outgoing)...)
	default:
		sp = append(sp, span{sanitizeLine(from) + ": ", fromStyle}, span{sanitize(e.Text), tcell.StyleDefault})
	}
	l := cells(sp...)
	if e.Outgoing && e.State != client.StateFailed {
		l = append(l, glue(cells(stateMark(e)...))...) // "✓✓ read" stays on one line
	} else if e.Outgoing {
		l = append(l, cells(stateMark(e)...)...)
	}
	return l
}

// uploadCells is the line of a file being sent whose message does not
// exist yet: "15:04 alice: file NAME (SIZE)" and its progress.
func (p *messagePane) uploadCells(up *uploadItem) line {
	when := "--:--"
	if known(up.at) {
		when = up.at.In(p.u.opts.Location).Format("15:04")
	}
	sp := []span{{when + " ", styleDim}, {sanitizeLine(p.u.self) + ": ", styleSelf}}
	return cells(append(sp, p.u.fileCells(up.id, up.name, true)...)...)
}

// stateMark is an outgoing message's delivery state, as /help explains it.
func stateMark(e *client.HistoryEntry) []span {
	switch e.State {
	case client.StateSending:
		return []span{{" …", styleDim}}
	case client.StateStored:
		return []span{{" ✓", styleDim}}
	case client.StateDelivered, client.StateRead:
		if e.Conversation.IsGroup() && e.Recipients > 0 {
			// A group message's receipts are per member (protocol.md §8.1).
			if len(e.ReadBy) > 0 {
				return []span{{fmt.Sprintf(" ✓✓ read by %d of %d", min(len(e.ReadBy), e.Recipients), e.Recipients), styleRead}}
			}
			// Capped: a member added since may send a receipt too.
			return []span{{fmt.Sprintf(" ✓✓ %d of %d", min(len(e.DeliveredTo), e.Recipients), e.Recipients), styleDelivered}}
		}
		if e.State == client.StateRead {
			return []span{{" ✓✓ read", styleRead}}
		}
		return []span{{" ✓✓", styleDelivered}}
	case client.StateFailed:
		text := " ✗ not sent"
		if e.Error != "" {
			text += ": " + sanitizeLine(failureText(e.Error))
		}
		return []span{{text, styleError}}
	}
	return nil
}

// failureText is why a message was not sent, as the pane says it. The
// engine records the error's text, which for a contact whose identity key
// changed gives the command line's advice; here the line says what to do
// in this client. The text is matched whole, as the engine's error writes
// it for that name, so no other error is taken for it.
func failureText(errText string) string {
	user, _, ok := strings.Cut(errText, "'s identity key changed")
	if ok && errText == (&client.IdentityChangedError{User: user}).Error() {
		return identityChangedLine(user)
	}
	return errText
}

// identityChangedLine says what to do about a send refused because name's
// identity key changed.
func identityChangedLine(name string) string {
	return name + "'s safety number changed: compare it with /verify " + name
}

func noticeLines(it item, width int) []line {
	style, prefix := styleInfo, "-- "
	switch it.level {
	case noticeWarn:
		style, prefix = styleWarn, "!! "
	case noticeError:
		style, prefix = styleError, "!! "
	}
	return wrap(cells(span{prefix, style}, span{sanitize(it.notice), style}), width, len(prefix))
}

// divider is a centred label in a rule across the pane: a date, or "new"
// above the first unread message.
func divider(label string, width int, style tcell.Style) line {
	label = " " + label + " "
	side := max(0, (width-textWidth(label))/2)
	rule := strings.Repeat("─", side)
	return truncate(cells(span{rule + label + rule, style}), width)
}

// centre pads l on the left to centre it in width.
func centre(l line, width int) line {
	l = truncate(l, width)
	pad := (width - l.width()) / 2
	out := make(line, 0, pad+len(l))
	for range pad {
		out = append(out, cell{text: " ", width: 1})
	}
	return append(out, l...)
}
