// Package ui implements the terminal client, `securechat chat` (docs/design.md §6):
// a tview front end on the client engine with a conversation list, a
// message pane with delivery state, a typing line, an input line with
// history, paste and slash commands, a status bar, a screen to compare
// safety numbers, and files sent and received with their progress
// (files.go).
//
// The UI only calls its Backend and reads the Backend's event stream; the
// engine never calls the UI (docs/design.md §1). All UI state belongs to tview's
// event loop: key, mouse and paste handlers run on it, and everything that
// happens elsewhere (engine events, timers, slow queries) reaches it through
// Application.QueueUpdateDraw.
package ui

import (
	"context"
	"sync"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// Minimum terminal size for the main layout; below it the UI shows a
// "terminal too small" message instead.
const (
	MinWidth  = 40
	MinHeight = 10
)

const (
	typingShown    = 5 * time.Second // how long "NAME is typing…" stays up after a signal
	typingInterval = 3 * time.Second // at most one outgoing typing signal per this
	historyPage    = 100             // entries loaded at once from the history
	inputHistory   = 200             // lines kept for Up/Down
	eventBatch     = 64              // engine events applied in one screen update
)

// Clock is the UI's source of time; tests inject a fake one.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed; stop
	// cancels the call and reports whether it did.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Options configure a UI. The zero value is the default.
type Options struct {
	// Bell is rung for a message arriving in a conversation other than
	// the open one. Default: the terminal bell (tcell.Screen.Beep).
	Bell func()
	// Clock is the time source. Default: the system clock.
	Clock Clock
	// Location is the time zone message times are shown in. Default:
	// time.Local.
	Location *time.Location
}

// UI is the terminal client. Make one with New and call Run once.
type UI struct {
	b      Backend
	opts   Options
	app    *tview.Application
	screen tcell.Screen // from the last draw, for the bell

	// Lifecycle. gateMu guards gateClosed; inflight counts updates on
	// their way to the event loop (see update).
	gateMu     sync.Mutex
	gateClosed bool
	inflight   sync.WaitGroup
	quit       chan struct{}   // closed to ask Run to return
	ctx        context.Context // ends with Run: bounds the changes of groups
	quitOnce   sync.Once
	loopDone   chan struct{} // closed when the tview event loop has ended

	// Everything below belongs to the event loop (or to Run before the
	// loop starts and after it ends).
	self, server, fingerprint string
	conn                      client.ConnState
	connErr                   error
	connReason                string // the last reason for a lost connection shown in the pane
	engineGone                bool

	convs   []*conversation // most recent activity first
	byConv  map[chat.Conversation]*conversation
	console *conversation // shown when no conversation is open: help, errors
	open    *conversation // the conversation shown, or console

	files map[string]*fileView    // by id: what the engine last told of each file
	saves map[string]*pendingSave // by id: /save waiting for a fetch

	sendTyping, sendReceipts bool
	lastTyping               time.Time // last outgoing typing signal
	lastTypingTo             chat.Conversation

	hist        []string // sent lines, oldest first
	histPos     int      // index into hist while browsing; len(hist) when not
	histDraft   string   // what was typed before browsing began
	comp        *completion
	hint        string // one-line hint in the typing line until the next key
	failed      bool   // the input holds a line that failed, selected: typing replaces it (submit)
	reselect    bool   // select it again after the next draw (a new label dropped the selection)
	settingText bool   // the input is being changed by the UI, not the user
	inputRows   int
	inputWidth  int // the screen's width at the last draw

	// Widgets.
	root   *rootView
	pages  *tview.Pages
	body   *tview.Flex // rows: main, input, status
	main   *tview.Flex // columns: list, right column
	list   *convList
	pane   *messagePane
	header *lineView
	typing *lineView
	input  *tview.TextArea
	status *lineView
	verify *verifyView
}

// New makes a UI on b.
func New(b Backend, opts Options) *UI {
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Location == nil {
		opts.Location = time.Local
	}
	u := &UI{
		b:            b,
		opts:         opts,
		quit:         make(chan struct{}),
		ctx:          context.Background(),
		loopDone:     make(chan struct{}),
		conn:         client.ConnConnecting,
		byConv:       make(map[chat.Conversation]*conversation),
		files:        make(map[string]*fileView),
		saves:        make(map[string]*pendingSave),
		console:      &conversation{},
		sendTyping:   true,
		sendReceipts: true,
	}
	u.build()
	return u
}

// Run shows the UI on screen (nil: the process's terminal) and returns when
// the user quits (/quit or Ctrl-C) or ctx ends; the terminal is restored
// before it returns. The error is nil unless the terminal failed.
func (u *UI) Run(ctx context.Context, screen tcell.Screen) error {
	if screen != nil {
		u.app.SetScreen(screen) // initialises it
	} // else the application opens the terminal in Run
	u.app.SetBeforeDrawFunc(func(s tcell.Screen) bool {
		u.screen = s // for the bell
		return false
	})
	u.app.EnableMouse(true)
	u.app.EnablePaste(true)
	u.app.SetRoot(u.root, true)
	u.app.SetFocus(u.input)
	var cancelOps context.CancelFunc
	u.ctx, cancelOps = context.WithCancel(ctx)
	defer cancelOps()
	u.sendTyping, u.sendReceipts = u.b.Settings()
	u.load() // the loop is not running yet: no update needed

	runErr := make(chan error, 1)
	go func() {
		runErr <- u.app.Run()
		close(u.loopDone)
	}()
	// Wait for the loop: Stop does nothing before Run has its screen.
	if !u.update(func() {}) {
		<-u.loopDone
		return <-runErr
	}
	stopPump := make(chan struct{})
	pumpDone := make(chan struct{})
	go func() {
		defer close(pumpDone)
		u.pump(u.b.Events(), stopPump)
	}()

	var err error
	loopEnded := false
	select {
	case <-ctx.Done():
	case <-u.quit:
	case err = <-runErr: // the terminal failed; the loop is gone
		loopEnded = true
	}
	// Let updates already on their way finish while the loop still runs,
	// refuse new ones, then stop the loop.
	u.gateMu.Lock()
	u.gateClosed = true
	u.gateMu.Unlock()
	u.inflight.Wait()
	close(stopPump)
	<-pumpDone
	if !loopEnded {
		u.app.Stop()
		err = <-runErr
	}
	<-u.loopDone
	for _, c := range u.convs {
		c.stopTypingTimer()
	}
	return err
}

// requestQuit makes Run return; safe from any goroutine.
func (u *UI) requestQuit() {
	u.quitOnce.Do(func() { close(u.quit) })
}

// update runs f on the event loop and redraws. It must not be called from
// the loop itself. It reports false, without running f, once Run is
// shutting down.
func (u *UI) update(f func()) bool {
	u.gateMu.Lock()
	if u.gateClosed {
		u.gateMu.Unlock()
		return false
	}
	u.inflight.Add(1)
	u.gateMu.Unlock()
	defer u.inflight.Done()
	done := make(chan struct{})
	go func() {
		u.app.QueueUpdateDraw(f)
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-u.loopDone: // the loop died with the terminal
		return false
	}
}

// pump applies the engine's events on the event loop, in order, a batch
// at a time.
func (u *UI) pump(events <-chan client.UIEvent, stop <-chan struct{}) {
	for {
		var batch []client.UIEvent
		select {
		case <-stop:
			return
		case ev, ok := <-events:
			if !ok {
				u.update(u.engineStopped)
				return
			}
			batch = append(batch, ev)
		}
		closed := false
	drain:
		for len(batch) < eventBatch {
			select {
			case ev, ok := <-events:
				if !ok {
					closed = true
					break drain
				}
				batch = append(batch, ev)
			default:
				break drain
			}
		}
		if !u.update(func() {
			for _, ev := range batch {
				u.apply(ev)
			}
		}) {
			return
		}
		if closed {
			u.update(u.engineStopped)
			return
		}
	}
}

// bell rings for a message in another conversation.
func (u *UI) bell() {
	if u.opts.Bell != nil {
		u.opts.Bell()
		return
	}
	if u.screen != nil {
		u.screen.Beep()
	}
}

func (u *UI) now() time.Time { return u.opts.Clock.Now() }
