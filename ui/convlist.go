package ui

import (
	"fmt"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"
)

// convList is the conversation list: this account's name on top, then one
// row per conversation, most recent first:
//
//	! bob          (3) 12:01
//	  #family      (2) 11:58
//	× #old book club     Mon
//
// "!" marks a changed identity key, "#" a group, "×" a group this account
// left or was removed from, "(3)" unread messages; the time is the
// last activity (a weekday or a date when not today). The open
// conversation is highlighted. A click opens a conversation.
type convList struct {
	*tview.Box
	u        *UI
	offset   int           // first conversation shown
	lastOpen *conversation // the open one at the last Draw
}

func newConvList(u *UI) *convList {
	l := &convList{Box: tview.NewBox(), u: u}
	l.SetBackgroundColor(tcell.ColorDefault)
	return l
}

func (l *convList) Draw(screen tcell.Screen) {
	l.DrawForSubclass(screen, l)
	x, y, w, h := l.GetInnerRect()
	if w < 2 || h < 1 {
		return
	}
	// The right column is the separator from the message pane.
	for row := y; row < y+h; row++ {
		screen.SetContent(x+w-1, row, '│', nil, styleDim)
	}
	w--
	drawLine(screen, x, y, w, truncate(cells(span{" " + sanitizeLine(l.u.self), styleSelf}), w), tcell.StyleDefault)
	rows := h - 1
	if rows < 1 {
		return
	}
	convs := l.u.convs
	// Bring a newly opened conversation into view.
	if i := l.index(l.u.open); i >= 0 && l.u.open != l.lastOpen {
		if i < l.offset {
			l.offset = i
		} else if i >= l.offset+rows {
			l.offset = i - rows + 1
		}
	}
	l.lastOpen = l.u.open
	l.offset = max(0, min(l.offset, len(convs)-rows))
	now := l.u.now().In(l.u.opts.Location)
	for i := 0; i < rows && l.offset+i < len(convs); i++ {
		c := convs[l.offset+i]
		drawLine(screen, x, y+1+i, w, l.row(c, w, now), l.rowStyle(c))
	}
}

func (l *convList) index(c *conversation) int {
	for i, x := range l.u.convs {
		if x == c {
			return i
		}
	}
	return -1
}

func (l *convList) rowStyle(c *conversation) tcell.Style {
	if c == l.u.open {
		return styleSelected
	}
	return tcell.StyleDefault
}

// row lays out one conversation in width columns.
func (l *convList) row(c *conversation, width int, now time.Time) line {
	base := l.rowStyle(c)
	nameStyle := base
	if c.Unread > 0 {
		nameStyle = nameStyle.Bold(true)
	}
	marker := span{"  ", base}
	switch {
	case c.IdentityChanged:
		marker = span{" !", base.Foreground(tcell.ColorRed).Bold(true)}
	case c.group != nil && c.group.Left:
		marker = span{" ×", base.Foreground(tcell.ColorGray)}
		nameStyle = nameStyle.Foreground(tcell.ColorGray)
	}
	var right []span
	if c.Unread > 0 {
		right = append(right, span{fmt.Sprintf(" (%d)", c.Unread), base.Foreground(tcell.ColorYellow).Bold(true)})
	}
	if known(c.LastActivity) {
		right = append(right, span{" " + activityTime(c.LastActivity.In(l.u.opts.Location), now), base.Foreground(tcell.ColorGray)})
	}
	rightCells := cells(right...)
	// Drop the time before squeezing the name below four columns.
	if width-2-rightCells.width() < 4 && len(right) > 1 {
		rightCells = cells(right[0])
	}
	nameWidth := width - 2 - rightCells.width() - 1
	if nameWidth < 1 {
		rightCells, nameWidth = nil, width-3
	}
	name := truncate(cells(span{sanitizeLine(c.name()), nameStyle}), nameWidth)
	out := append(cells(marker, span{" ", base}), name...)
	for out.width() < width-rightCells.width() {
		out = append(out, cell{text: " ", width: 1, style: base})
	}
	return truncate(append(out, rightCells...), width)
}

// activityTime is 15:04 today, a weekday within the week, else a date.
func activityTime(t, now time.Time) string {
	ty, tm, td := t.Date()
	ny, nm, nd := now.Date()
	switch {
	case ty == ny && tm == nm && td == nd:
		return t.Format("15:04")
	case now.Sub(t) < 6*24*time.Hour && now.Sub(t) > 0:
		return t.Format("Mon")
	case ty == ny:
		return t.Format("2 Jan")
	}
	return t.Format("Jan 06")
}

// MouseHandler opens the clicked conversation, leaving the focus on the
// input.
func (l *convList) MouseHandler() func(action tview.MouseAction, event *tcell.EventMouse, setFocus func(p tview.Primitive)) (bool, tview.Primitive) {
	return l.WrapMouseHandler(func(action tview.MouseAction, event *tcell.EventMouse, setFocus func(tview.Primitive)) (bool, tview.Primitive) {
		mx, my := event.Position()
		if !l.InRect(mx, my) {
			return false, nil
		}
		switch action {
		case tview.MouseLeftClick:
			_, y, _, _ := l.GetInnerRect()
			if i := l.offset + my - y - 1; my > y && i >= 0 && i < len(l.u.convs) {
				l.u.openConversation(l.u.convs[i])
			}
		case tview.MouseScrollUp:
			l.offset = max(0, l.offset-1)
		case tview.MouseScrollDown:
			l.offset++
		}
		return true, nil
	})
}
