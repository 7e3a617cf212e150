package ui

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/securechat/securechat/client"
)

// The screen:
//
//	 alice         │ bob  not verified (/verify bob)
//	   bob   12:01 │ 12:00 bob: hi
//	   carol (3) … │ 12:01 alice: hello ✓✓ read
//	               │ bob is typing…
//	bob> _
//	 connected │ server f90a d123 8ca2 52e4 │ bob: not verified
//
// Below MinWidth×MinHeight only "terminal too small" is shown.

var (
	styleDim       = tcell.StyleDefault.Foreground(tcell.ColorGray)
	styleSelf      = tcell.StyleDefault.Foreground(tcell.ColorGreen).Bold(true)
	stylePeer      = tcell.StyleDefault.Foreground(tcell.ColorTeal).Bold(true)
	styleInfo      = tcell.StyleDefault
	styleWarn      = tcell.StyleDefault.Foreground(tcell.ColorYellow).Bold(true)
	styleError     = tcell.StyleDefault.Foreground(tcell.ColorRed)
	styleDelivered = tcell.StyleDefault.Foreground(tcell.ColorGreen)
	styleRead      = tcell.StyleDefault.Foreground(tcell.ColorDodgerBlue).Bold(true)
	styleSelected  = tcell.StyleDefault.Reverse(true)
	styleAlert     = tcell.StyleDefault.Background(tcell.ColorRed).Foreground(tcell.ColorWhite).Bold(true)
	styleStatus    = tcell.StyleDefault.Background(tcell.ColorNavy).Foreground(tcell.ColorWhite)
)

// build makes the widgets.
func (u *UI) build() {
	u.app = tview.NewApplication()
	u.list = newConvList(u)
	u.pane = newMessagePane(u)
	u.header = newLineView(u.headerLine, tcell.StyleDefault)
	u.typing = newLineView(u.typingLine, tcell.StyleDefault)
	u.status = newLineView(u.statusLine, styleStatus)
	u.buildInput()

	right := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(u.header, 1, 0, false).
		AddItem(u.pane, 0, 1, false).
		AddItem(u.typing, 1, 0, false)
	u.main = tview.NewFlex().
		AddItem(u.list, 24, 0, false).
		AddItem(right, 0, 1, false)
	u.body = tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(u.main, 0, 1, false).
		AddItem(u.input, u.inputRows, 0, true).
		AddItem(u.status, 1, 0, false)
	u.verify = newVerifyView(u)
	u.pages = tview.NewPages().
		AddPage("chat", u.body, true, true).
		AddPage("verify", u.verify, true, false)
	for _, b := range []*tview.Box{right.Box, u.main.Box, u.body.Box, u.pages.Box} {
		b.SetBackgroundColor(tcell.ColorDefault)
	}
	u.root = &rootView{Box: tview.NewBox(), u: u}
	u.app.SetInputCapture(u.globalKeys)
}

// globalKeys sees every key first.
func (u *UI) globalKeys(ev *tcell.EventKey) *tcell.EventKey {
	if ev.Key() == tcell.KeyCtrlC {
		u.requestQuit()
		return nil
	}
	if u.root.small { // nothing is visible to act on
		return nil
	}
	return ev
}

// rootView draws the layout, or "terminal too small" below the minimum.
type rootView struct {
	*tview.Box
	u     *UI
	small bool
}

func (r *rootView) Draw(screen tcell.Screen) {
	x, y, w, h := r.GetRect()
	r.small = w < MinWidth || h < MinHeight
	if r.small {
		screen.Fill(' ', tcell.StyleDefault)
		need := fmt.Sprintf("(need %dx%d)", MinWidth, MinHeight)
		var msg []line
		if text := "terminal too small " + need; textWidth(text) <= w {
			msg = append(msg, cells(span{text, styleWarn}))
		} else {
			msg = append(msg, cells(span{"terminal too small", styleWarn}), cells(span{need, styleWarn}))
		}
		msg = append(msg, cells(span{fmt.Sprintf("it is %dx%d", w, h), styleDim}))
		top := y + max(0, (h-len(msg))/2)
		for i, l := range msg {
			if top+i >= y+h {
				break
			}
			drawLine(screen, x, top+i, w, centre(l, w), tcell.StyleDefault)
		}
		return
	}
	r.u.main.ResizeItem(r.u.list, min(30, max(14, w*3/10)), 0)
	r.u.resizeInput(w)
	r.u.pages.SetRect(x, y, w, h)
	r.u.pages.Draw(screen)
	if r.u.reselect && r.u.failed && !r.u.verify.shown {
		// The text area drops its selection when its width changes (a
		// new label): show the failed line selected again.
		r.u.selectAll()
		r.u.input.Draw(screen)
	}
}

func (r *rootView) Focus(delegate func(p tview.Primitive)) { delegate(r.u.pages) }
func (r *rootView) HasFocus() bool                         { return r.u.pages.HasFocus() }

func (r *rootView) InputHandler() func(event *tcell.EventKey, setFocus func(p tview.Primitive)) {
	return func(event *tcell.EventKey, setFocus func(p tview.Primitive)) {
		if !r.small {
			r.u.pages.InputHandler()(event, setFocus)
		}
	}
}

func (r *rootView) PasteHandler() func(text string, setFocus func(p tview.Primitive)) {
	return func(text string, setFocus func(p tview.Primitive)) {
		if r.small || (r.u.input.HasFocus() && !r.u.pasteInput(text)) {
			return
		}
		r.u.pages.PasteHandler()(text, setFocus)
	}
}

func (r *rootView) MouseHandler() func(action tview.MouseAction, event *tcell.EventMouse, setFocus func(p tview.Primitive)) (bool, tview.Primitive) {
	return func(action tview.MouseAction, event *tcell.EventMouse, setFocus func(p tview.Primitive)) (bool, tview.Primitive) {
		if r.small {
			return false, nil
		}
		if action == tview.MouseLeftClick && r.u.input.InRect(event.Position()) {
			r.u.failed = false // a click places the cursor: the failed line is text to edit
		}
		return r.u.pages.MouseHandler()(action, event, setFocus)
	}
}

// lineView is a one-row widget whose content is computed when drawn.
type lineView struct {
	*tview.Box
	content func(width int) line
	fill    tcell.Style
}

func newLineView(content func(width int) line, fill tcell.Style) *lineView {
	v := &lineView{Box: tview.NewBox(), content: content, fill: fill}
	v.SetBackgroundColor(tcell.ColorDefault)
	return v
}

func (v *lineView) Draw(screen tcell.Screen) {
	x, y, w, h := v.GetInnerRect()
	if w <= 0 || h <= 0 {
		return
	}
	drawLine(screen, x, y, w, truncate(v.content(w), w), v.fill)
}

// MouseHandler ignores the mouse: clicks must not move the focus here.
func (v *lineView) MouseHandler() func(action tview.MouseAction, event *tcell.EventMouse, setFocus func(p tview.Primitive)) (bool, tview.Primitive) {
	return func(tview.MouseAction, *tcell.EventMouse, func(tview.Primitive)) (bool, tview.Primitive) {
		return false, nil
	}
}

// headerLine is the open conversation's name and verification state.
func (u *UI) headerLine(width int) line {
	c := u.open
	var left line
	if c == u.console {
		left = cells(span{" securechat", styleSelf}, span{"  /msg NAME starts a conversation, /help lists commands", styleDim})
	} else {
		name := sanitizeLine(c.name())
		left = cells(span{" " + name + "  ", tcell.StyleDefault.Bold(true)})
		switch {
		case c.isSystem():
			left = append(left, cells(span{"the server's announcements, read-only", styleDim})...)
		case c.Conversation.IsGroup():
			left = append(left, u.groupHeader(c)...)
		case c.IdentityChanged:
			left = append(left, cells(span{" IDENTITY CHANGED: sending blocked, /verify " + name + " ", styleAlert})...)
		case c.Verified:
			left = append(left, cells(span{"verified ✓", styleDelivered})...)
		default:
			left = append(left, cells(span{"not verified (/verify " + name + ")", styleDim})...)
		}
	}
	if u.pane.following {
		return left
	}
	return leftRight(left, cells(span{" scrolled up, PgDn for newer ", styleWarn}), width, tcell.StyleDefault)
}

// typingLine shows a completion hint, or who is typing.
func (u *UI) typingLine(int) line {
	if u.hint != "" {
		return cells(span{" " + sanitizeLine(u.hint), styleDim})
	}
	if c := u.open; c != u.console && c.typingUntil.After(u.now()) {
		who := c.name()
		if c.Conversation.IsGroup() && c.typingWho != "" {
			who = c.typingWho
		}
		return cells(span{" " + sanitizeLine(who) + " is typing…", styleDim.Italic(true)})
	}
	return nil
}

// statusLine: connection, server key, the open conversation's
// verification, and the signals turned off; shortened to fit.
func (u *UI) statusLine(width int) line {
	base := styleStatus
	var connFull, connErr, connShort []span // connErr: connFull without "reconnecting"
	switch {
	case u.engineGone:
		connShort = []span{{" client stopped ", styleAlert}}
		connFull = connShort
	case u.conn == client.ConnConnected && u.connErr != nil:
		connShort = []span{{" connected", base.Foreground(tcell.ColorLime).Bold(true)}}
		connFull = append(connShort, span{" (" + sanitizeLine(u.connErr.Error()) + ")", base.Foreground(tcell.ColorYellow)})
	case u.conn == client.ConnConnected:
		connShort = []span{{" connected", base.Foreground(tcell.ColorLime).Bold(true)}}
		connFull = connShort
	case u.conn == client.ConnDisconnected:
		connShort = []span{{" disconnected ", styleAlert}}
		msg := " disconnected"
		var km *client.KeyMismatchError
		switch {
		case errors.As(u.connErr, &km):
			msg += ": server key does not match (see above)" // both fingerprints are in the pane
		case u.connErr != nil:
			msg += ": " + sanitizeLine(u.connErr.Error())
		}
		connErr = []span{{msg + " ", styleAlert}}
		connFull = []span{{msg + " ", styleAlert}, {" reconnecting…", base}}
	default:
		connShort = []span{{" connecting…", base.Foreground(tcell.ColorYellow).Bold(true)}}
		connFull = connShort
	}
	if connErr == nil {
		connErr = connFull
	}
	fp := shortFingerprint(u.fingerprint)
	fpFull := []span{{"server " + fp, base}}
	fpShort := []span{{fp, base}}
	var ver []span
	if c := u.open; c != u.console {
		name := sanitizeLine(c.name())
		switch {
		case c.isSystem():
			ver = []span{{name + ": read-only", base}}
		case c.group != nil && c.group.Left:
			ver = []span{{name + ": read-only", base}}
		case c.group != nil:
			ver = []span{{name + ": " + plural(len(c.group.Members), "member"), base}}
		case c.Conversation.IsGroup():
			ver = []span{{name, base}}
		case c.IdentityChanged:
			ver = []span{{" " + name + ": IDENTITY CHANGED ", styleAlert}}
		case c.Verified:
			ver = []span{{name + ": verified", base.Foreground(tcell.ColorLime)}}
		default:
			ver = []span{{name + ": not verified", base}}
		}
	}
	var off []string
	if !u.sendTyping {
		off = append(off, "typing off")
	}
	if !u.sendReceipts {
		off = append(off, "receipts off")
	}
	var flags []span
	if len(off) > 0 {
		flags = []span{{strings.Join(off, ", "), base}}
	}
	join := func(parts ...[]span) line {
		var sp []span
		for _, p := range parts {
			if len(p) == 0 {
				continue
			}
			if len(sp) > 0 {
				sp = append(sp, span{" │ ", base})
			}
			sp = append(sp, p...)
		}
		return cells(sp...)
	}
	// What goes first when the bar is too narrow: "reconnecting" and the
	// word "server", the key, the flags, the reason for a lost connection.
	for _, l := range []line{
		join(connFull, fpFull, ver, flags),
		join(connErr, fpShort, ver, flags),
		join(connErr, ver, flags),
		join(connErr, ver),
		join(connShort, fpShort, ver, flags),
		join(connShort, fpShort, ver),
		join(connShort, ver),
	} {
		if l.width() <= width {
			return l
		}
	}
	return join(connShort, ver)
}

// shortFingerprint is the first 16 hex digits of the server key
// fingerprint, enough to recognise it: the first four groups of the
// grouped form the backend gives (transport.Fingerprint.Grouped, as
// everywhere); the server's start-up line, the first run and the web admin
// show all 64.
func shortFingerprint(fp string) string {
	if fp == "" {
		return "unknown"
	}
	groups := strings.Fields(sanitizeLine(fp))
	return strings.Join(groups[:min(4, len(groups))], " ")
}

// leftRight puts right at the right edge of width, after left, which is
// shortened to make room.
func leftRight(left, right line, width int, fill tcell.Style) line {
	if right.width() > width {
		return truncate(right, width)
	}
	out := truncate(left, width-right.width())
	for out.width() < width-right.width() {
		out = append(out, cell{text: " ", width: 1, style: fill})
	}
	return append(out, right...)
}
