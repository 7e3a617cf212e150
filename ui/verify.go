package ui

import (
	"fmt"
	"strings"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// verifyView is the verification screen (/verify NAME): the safety number
// with a contact in twelve groups of five digits, what to do with it, and
// buttons to mark the contact verified or, after an identity change, to
// accept the new key. It is modal: it takes every key and click until it
// is closed (Close or Esc).
type verifyView struct {
	*tview.Box
	u      *UI
	frame  *tview.Flex
	text   *tview.TextView
	spacer *tview.Box
	form   *tview.Form

	shown bool
	conv  chat.Conversation
	token int // identifies the current query; a stale answer is dropped
	info  *client.SafetyInfo
	err   error
	note  string // the outcome of the last button, e.g. an error
	body  string // the text shown, with tview style tags
}

func newVerifyView(u *UI) *verifyView {
	v := &verifyView{Box: tview.NewBox(), u: u}
	v.text = tview.NewTextView().SetDynamicColors(true).SetWrap(true).SetWordWrap(true)
	v.text.SetBackgroundColor(tcell.ColorDefault)
	v.text.SetTextStyle(tcell.StyleDefault)
	v.spacer = tview.NewBox()
	v.spacer.SetBackgroundColor(tcell.ColorDefault)
	v.form = tview.NewForm().SetButtonsAlign(tview.AlignCenter)
	v.form.SetBorderPadding(0, 0, 1, 1)
	v.form.SetBackgroundColor(tcell.ColorDefault)
	v.form.SetCancelFunc(v.close)
	v.frame = tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(v.text, 0, 1, false).
		AddItem(v.spacer, 1, 0, false).
		AddItem(v.form, 1, 0, true)
	v.frame.SetBorder(true).SetBorderPadding(0, 0, 1, 1)
	v.frame.SetBackgroundColor(tcell.ColorDefault)
	return v
}

// open shows the screen for name and asks the backend for the safety
// number off the event loop: the first time, the engine fetches the
// contact's key from the server.
func (v *verifyView) open(conv chat.Conversation) {
	v.conv, v.info, v.err, v.note = conv, nil, nil, ""
	v.token++
	token := v.token
	v.shown = true
	v.render()
	v.u.pages.ShowPage("verify")
	v.focus()
	go func() {
		info, err := v.u.b.SafetyNumber(conv)
		v.u.update(func() {
			if v.shown && v.token == token {
				v.info, v.err = &info, err
				v.render()
				v.focus()
			}
		})
	}()
}

func (v *verifyView) close() {
	v.shown = false
	v.token++
	v.u.pages.HidePage("verify")
	v.u.app.SetFocus(v.u.input)
}

// focus puts the focus on Close, the last button: an Enter meant for the
// input, or pressed before reading, must not mark anyone verified or
// accept a key. Tab and Shift-Tab reach the other button.
func (v *verifyView) focus() {
	v.form.SetFocus(v.form.GetButtonCount() - 1)
	v.u.app.SetFocus(v.form)
}

// render fills the text and the buttons from what is known.
func (v *verifyView) render() {
	name := tview.Escape(sanitizeLine(v.conv.String()))
	v.frame.SetTitle(" Verify " + name + " ")
	var b strings.Builder
	v.form.ClearButtons()
	switch info := v.info; {
	case v.err != nil:
		fmt.Fprintf(&b, "[red]Cannot get the safety number with %s: %s[-]\n", name, tview.Escape(sanitizeLine(v.err.Error())))
	case info == nil:
		fmt.Fprintf(&b, "Getting the safety number with %s…\n", name)
	case info.Changed:
		fmt.Fprintf(&b, "[red::b]%s's identity key has changed.[-::-] New safety number:\n%s\n\n", name, safetyGrid(info.Number))
		fmt.Fprintf(&b, "This happens when %s reinstalls or gets a new phone, but it is also what someone in the middle would cause. Sending to %s is blocked until you accept the new key. ", name, name)
		fmt.Fprintf(&b, "Compare the number with the one %s sees (in person, or over another channel you trust) before you accept it: the button accepts only the key of this number.\n", name)
		if info.Conflict {
			fmt.Fprintf(&b, "\n[red]Yet another new key was offered for %s since; it was not taken. Someone may be in the middle.[-]\n", name)
		}
		v.form.AddButton("Accept new key", v.accept)
	default:
		fmt.Fprintf(&b, "Safety number with %s:\n%s\n\n", name, safetyGrid(info.Number))
		fmt.Fprintf(&b, "Compare these 60 digits with the ones %s sees, in person or over another channel you trust; both of you see the same number. If they match, nobody is in the middle: mark %s verified.\n\n", name, name)
		if info.Verified {
			b.WriteString("Status: [green]verified[-]\n")
		} else {
			b.WriteString("Status: not verified\n")
			v.form.AddButton("Mark verified", v.markVerified)
		}
	}
	if v.note != "" {
		fmt.Fprintf(&b, "\n%s\n", v.note)
	}
	v.form.AddButton("Close", v.close)
	v.body = strings.TrimRight(b.String(), "\n")
	v.text.SetText(v.body)
	v.text.ScrollToBeginning()
}

// safetyGrid lays a 60-digit safety number out as three rows of four
// groups of five digits, the way Signal shows it.
func safetyGrid(number string) string {
	var groups []string
	rs := []rune(sanitizeLine(number))
	for len(rs) > 0 {
		n := min(5, len(rs))
		groups = append(groups, string(rs[:n]))
		rs = rs[n:]
	}
	var rows []string
	for len(groups) > 0 {
		n := min(4, len(groups))
		rows = append(rows, "    "+strings.Join(groups[:n], " "))
		groups = groups[n:]
	}
	return tview.Escape(strings.Join(rows, "\n"))
}

func (v *verifyView) markVerified() {
	if err := v.u.b.Verify(v.conv); err != nil {
		v.note = "[red]Cannot mark verified: " + tview.Escape(sanitizeLine(err.Error())) + "[-]"
		v.render()
		v.focus()
		return
	}
	if c := v.u.conversation(v.conv, false); c != nil {
		c.Verified, c.IdentityChanged = true, false
		c.notify(noticeInfo, "you marked "+c.name()+" verified")
		if c == v.u.open {
			v.u.pane.follow()
		}
	}
	v.close()
}

// accept trusts the changed key whose safety number the screen shows (no
// other: a key swapped in meanwhile is refused) and shows the screen again for it, so the
// user can mark it verified.
func (v *verifyView) accept() {
	if v.info == nil || !v.u.trust(v.conv, v.info.Number) {
		v.note = "[red]Could not accept the new key; see the message pane.[-]"
		v.render()
		v.focus()
		return
	}
	v.open(v.conv)
}

// Draw centres the frame on the screen, over the chat page.
func (v *verifyView) Draw(screen tcell.Screen) {
	x, y, w, h := v.GetRect()
	fw := min(w-2, 72)
	rows := 0
	for para := range strings.SplitSeq(v.body, "\n") {
		rows += max(1, len(tview.WordWrap(para, fw-4)))
	}
	// The border, a blank row (when there is room) and the buttons.
	fh := min(h, rows+4)
	if fh < rows+4 {
		v.frame.ResizeItem(v.spacer, 0, 0)
	} else {
		v.frame.ResizeItem(v.spacer, 1, 0)
	}
	fx, fy := x+(w-fw)/2, y+(h-fh)/2
	for row := fy; row < fy+fh; row++ { // a Flex does not clear its area
		for col := fx; col < fx+fw; col++ {
			screen.SetContent(col, row, ' ', nil, tcell.StyleDefault)
		}
	}
	v.frame.SetRect(fx, fy, fw, fh)
	v.frame.Draw(screen)
}

func (v *verifyView) Focus(delegate func(p tview.Primitive)) { delegate(v.form) }
func (v *verifyView) HasFocus() bool                         { return v.frame.HasFocus() }

func (v *verifyView) InputHandler() func(event *tcell.EventKey, setFocus func(p tview.Primitive)) {
	return func(event *tcell.EventKey, setFocus func(p tview.Primitive)) {
		if event.Key() == tcell.KeyEscape {
			v.close()
			return
		}
		if h := v.form.InputHandler(); h != nil {
			h(event, setFocus)
		}
	}
}

// MouseHandler passes clicks to the buttons and keeps them all from the
// page below.
func (v *verifyView) MouseHandler() func(action tview.MouseAction, event *tcell.EventMouse, setFocus func(p tview.Primitive)) (bool, tview.Primitive) {
	return func(action tview.MouseAction, event *tcell.EventMouse, setFocus func(p tview.Primitive)) (bool, tview.Primitive) {
		if v.form.InRect(event.Position()) {
			_, capture := v.form.MouseHandler()(action, event, setFocus)
			return true, capture
		}
		return true, nil
	}
}

func (v *verifyView) PasteHandler() func(text string, setFocus func(p tview.Primitive)) {
	return func(string, func(tview.Primitive)) {}
}
