package uitest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/mattn/go-runewidth"
)

// WaitTimeout bounds every Terminal wait.
const WaitTimeout = 5 * time.Second

// Terminal is a tcell.Screen for tests: tcell's simulation screen that
// takes the size it was made with when the UI initialises it (tview's
// SetScreen calls Init, which resets a simulation screen to 80x25), keeps
// a copy of the text of every frame the UI shows, and counts bells.
type Terminal struct {
	tcell.SimulationScreen
	width, height int
	ready         chan struct{} // closed by Init
	readyOnce     sync.Once
	finished      chan struct{} // closed by Fini
	finishOnce    sync.Once

	mu      sync.Mutex      // guards the fields below
	lines   []string        // the last frame shown, one string a row
	styles  [][]tcell.Style // the last frame's styles, a row of cells each
	frames  int
	beeps   int
	changed chan struct{} // closed and replaced on every frame and bell
}

// NewTerminal makes a width×height terminal. Give it to the UI's Run,
// which initialises it.
func NewTerminal(width, height int) *Terminal {
	return &Terminal{
		SimulationScreen: tcell.NewSimulationScreen("UTF-8"),
		width:            width,
		height:           height,
		ready:            make(chan struct{}),
		finished:         make(chan struct{}),
		changed:          make(chan struct{}),
	}
}

// Init initialises the simulation screen and sets its size.
func (t *Terminal) Init() error {
	err := t.SimulationScreen.Init()
	t.SimulationScreen.SetSize(t.width, t.height)
	t.readyOnce.Do(func() { close(t.ready) })
	return err
}

// Fini finalises the screen, as the UI does when it stops.
func (t *Terminal) Fini() {
	t.SimulationScreen.Fini()
	t.finishOnce.Do(func() { close(t.finished) })
}

// Show shows the frame and keeps its text.
func (t *Terminal) Show() {
	t.SimulationScreen.Show()
	t.snapshot()
}

// Sync redraws and keeps the frame's text.
func (t *Terminal) Sync() {
	t.SimulationScreen.Sync()
	t.snapshot()
}

// Beep counts a bell.
func (t *Terminal) Beep() error {
	t.mu.Lock()
	t.beeps++
	t.notifyLocked()
	t.mu.Unlock()
	return nil
}

func (t *Terminal) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *Terminal) snapshot() {
	cells, w, h := t.SimulationScreen.GetContents()
	lines := make([]string, 0, h)
	styles := make([][]tcell.Style, 0, h)
	for y := range h {
		var b strings.Builder
		row := make([]tcell.Style, w)
		for x := range w {
			row[x] = cells[y*w+x].Style
		}
		styles = append(styles, row)
		for x := 0; x < w; x++ {
			c := cells[y*w+x]
			if len(c.Runes) == 0 {
				b.WriteByte(' ')
				continue
			}
			b.WriteString(string(c.Runes))
			if runewidth.RuneWidth(c.Runes[0]) == 2 {
				x++ // the right half of a wide character
			}
		}
		lines = append(lines, strings.TrimRight(b.String(), " "))
	}
	t.mu.Lock()
	t.lines, t.styles = lines, styles
	t.frames++
	t.notifyLocked()
	t.mu.Unlock()
}

// Lines returns the text of the last frame, a string a row, without
// trailing blanks.
func (t *Terminal) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}

// StyleOf returns the style of the first cell of the first place s is
// shown in the last frame, and whether it is shown.
func (t *Terminal) StyleOf(s string) (tcell.Style, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for y, l := range t.lines {
		if i := strings.Index(l, s); i >= 0 {
			x := runewidth.StringWidth(l[:i])
			if x < len(t.styles[y]) {
				return t.styles[y][x], true
			}
		}
	}
	return tcell.StyleDefault, false
}

// Text returns the last frame as one string, rows ending in "\n".
func (t *Terminal) Text() string {
	return strings.Join(t.Lines(), "\n") + "\n"
}

// Frames is how many frames the UI has shown. tview draws after every
// key it handles, so waiting for Frames to grow by the number of keys
// typed waits until they have been handled (when nothing else draws).
func (t *Terminal) Frames() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.frames
}

// Beeps is how many times the bell rang.
func (t *Terminal) Beeps() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.beeps
}

// WaitFor waits until cond holds for the last frame, failing tb after
// WaitTimeout with what it waited for and the screen.
func (t *Terminal) WaitFor(tb testing.TB, what string, cond func(lines []string) bool) []string {
	tb.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		t.mu.Lock()
		lines, changed := append([]string(nil), t.lines...), t.changed
		t.mu.Unlock()
		if cond(lines) {
			return lines
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("timed out waiting for %s; the screen:\n%s", what, strings.Join(lines, "\n"))
			return nil
		}
	}
}

// WaitText waits until s is on the screen and returns the frame.
func (t *Terminal) WaitText(tb testing.TB, s string) []string {
	tb.Helper()
	return t.WaitFor(tb, "text "+quote(s), func(lines []string) bool { return Contains(lines, s) })
}

// WaitNoText waits until s is not on the screen.
func (t *Terminal) WaitNoText(tb testing.TB, s string) []string {
	tb.Helper()
	return t.WaitFor(tb, "no text "+quote(s), func(lines []string) bool { return !Contains(lines, s) })
}

// WaitBeeps waits until the bell rang n times.
func (t *Terminal) WaitBeeps(tb testing.TB, n int) {
	tb.Helper()
	t.WaitFor(tb, "bell", func([]string) bool { return t.Beeps() >= n })
}

// Eventually waits until cond holds, checking after every frame and bell
// and at least every 10ms (for conditions on things other than the
// screen).
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Contains reports whether s is on one of the lines.
func Contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// Row returns the index of the first line holding s, or -1.
func Row(lines []string, s string) int {
	for i, l := range lines {
		if strings.Contains(l, s) {
			return i
		}
	}
	return -1
}

func quote(s string) string { return "\"" + s + "\"" }

func (t *Terminal) waitReady() { <-t.ready }

// Type types text; "\n" presses Enter.
func (t *Terminal) Type(text string) {
	t.waitReady()
	for _, r := range text {
		if r == '\n' {
			t.InjectKey(tcell.KeyEnter, 0, tcell.ModNone)
			continue
		}
		t.InjectKey(tcell.KeyRune, r, tcell.ModNone)
	}
}

// Press presses a key (with modifiers).
func (t *Terminal) Press(key tcell.Key, mod ...tcell.ModMask) {
	t.waitReady()
	var m tcell.ModMask
	for _, x := range mod {
		m |= x
	}
	t.InjectKey(key, 0, m)
}

// Paste pastes text as a terminal with bracketed paste does.
func (t *Terminal) Paste(text string) {
	t.waitReady()
	t.post(tcell.NewEventPaste(true))
	t.Type(text)
	t.post(tcell.NewEventPaste(false))
}

// Wheel turns the mouse wheel at (x, y), up or down.
func (t *Terminal) Wheel(x, y int, up bool) {
	t.waitReady()
	b := tcell.WheelDown
	if up {
		b = tcell.WheelUp
	}
	t.InjectMouse(x, y, b, tcell.ModNone)
	t.InjectMouse(x, y, tcell.ButtonNone, tcell.ModNone)
}

// Click clicks the left button at (x, y).
func (t *Terminal) Click(x, y int) {
	t.waitReady()
	t.InjectMouse(x, y, tcell.Button1, tcell.ModNone)
	t.InjectMouse(x, y, tcell.ButtonNone, tcell.ModNone)
}

// Reshape changes the terminal's size as resizing the window does.
func (t *Terminal) Reshape(width, height int) {
	t.waitReady()
	t.SimulationScreen.SetSize(width, height)
	t.post(tcell.NewEventResize(width, height))
}

// post queues ev, waiting while the queue is full, until the screen is
// finalised.
func (t *Terminal) post(ev tcell.Event) {
	for t.PostEvent(ev) != nil {
		select {
		case <-t.finished:
			return
		case <-time.After(time.Millisecond):
		}
	}
}
