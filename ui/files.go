package ui

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// Files in the terminal client (issue 12 point 1; docs/protocol.md §8.4):
// /file PATH sends one to the open conversation, /files lists them, /save
// ID [PATH] writes one out. The engine does the work and reports it as
// UIFile events: the UI keeps the last it heard of each file (fileView)
// and draws a file message's line from it — a bar with the bytes, the
// rate and the time left while a transfer runs, then "sent", "complete —
// /save ID" or "failed: reason". An upload has a line from the moment it
// is asked for (an uploadItem), which becomes the file message's line
// once the file is uploaded and its message queued.

// progressBar is the bar's width in a file's line and in /files.
const progressBar = 10

// maxFilesListed bounds what /files shows: the newest ones.
const maxFilesListed = 100

// styleFile is a file's name and size in its line.
var styleFile = tcell.StyleDefault.Bold(true)

// maxCompletions bounds the candidates a Tab on a path lists.
const maxCompletions = 30

// fileView is what the UI last heard of a file.
type fileView struct {
	info   client.FileInfo
	moving bool   // info.Done and info.Total are of a transfer running now
	err    string // why the last transfer stopped; the engine tries again
}

// uploadItem is the line of a file being sent before its message exists:
// id is "" until the engine has encrypted it and named it.
type uploadItem struct {
	id, name string
	at       time.Time // when it was asked for, or heard of
}

// pendingSave is a /save waiting for its file to be fetched.
type pendingSave struct {
	c    *conversation // where /save was typed
	path string
}

// loadFiles reads what the home holds of files (at start).
func (u *UI) loadFiles() {
	files, err := u.b.Files()
	if err != nil {
		u.console.notify(noticeError, "cannot list the files: "+err.Error())
		return
	}
	for _, fi := range files {
		u.files[fi.ID] = &fileView{info: *fi}
	}
}

// refreshFile reads one file again from the home: a file message arrived
// (offered, or sent once its upload finished).
func (u *UI) refreshFile(id string) {
	fi, err := u.b.FindFile(id)
	if err != nil || fi.ID != id {
		return
	}
	fv := u.files[id]
	if fv == nil {
		u.files[id] = &fileView{info: *fi}
		return
	}
	if fv.info.State != fi.State {
		fv.moving, fv.err = false, ""
	}
	done, total, rate, left := fv.info.Done, fv.info.Total, fv.info.Rate, fv.info.Left
	fv.info = *fi
	if fv.moving { // the progress is the engine's events', not the home's
		fv.info.Done, fv.info.Total, fv.info.Rate, fv.info.Left = done, total, rate, left
	}
}

// fileEvent takes a UIFile event: a transfer's progress, a file's new
// state, or a transfer that stopped (err: the engine tries it again
// unless the state is failed).
func (u *UI) fileEvent(conv chat.Conversation, fi *client.FileInfo, err error) {
	if fi == nil {
		return
	}
	if conv.IsZero() {
		conv = fi.Conversation
	}
	c := u.conversation(conv, true)
	if fi.ID == "" { // a /file refused before the engine kept anything
		if c == nil {
			return
		}
		c.dropUpload(fi.Name)
		why := "unknown error"
		if err != nil {
			why = err.Error()
		}
		if !strings.Contains(why, fi.Name) {
			why = fi.Name + ": " + why
		}
		c.notify(noticeError, "/file: not sent: "+why)
		if c == u.open {
			u.pane.follow()
		}
		return
	}
	fv := u.files[fi.ID]
	if fv == nil {
		fv = &fileView{}
		u.files[fi.ID] = fv
	}
	saved := fv.info.Saved
	fv.info = *fi
	if fv.info.Saved == "" {
		fv.info.Saved = saved
	}
	running := fi.State == client.FileUploading || fi.State == client.FileOffered
	fv.moving = running && fi.Total > 0 && err == nil
	fv.err = ""
	if err != nil && running {
		fv.err = err.Error()
	}
	if c != nil {
		if fi.Outgoing && fi.State == client.FileUploading {
			c.showUpload(fi.ID, fi.Name, u.now())
		}
		c.changed()
	}
	switch ps := u.saves[fi.ID]; {
	case ps == nil:
	case fi.State == client.FileComplete:
		delete(u.saves, fi.ID)
		u.saveFile(ps.c, fi.ID, fi.Name, ps.path)
	case fi.State == client.FileFailed:
		delete(u.saves, fi.ID)
		u.tell(ps.c, noticeError, fmt.Sprintf("/save: %s cannot be had: %s", fi.Name, fi.Error))
	}
}

// transfersCut notes that the transfers running stopped with the
// connection: their bars go, and their lines say they resume (the
// engine resumes them at the next connection, with progress events).
func (u *UI) transfersCut() {
	for _, fv := range u.files {
		if fv.moving {
			fv.moving, fv.err = false, "the connection was lost"
			if c := u.byConv[fv.info.Conversation]; c != nil {
				c.changed()
			}
		}
	}
}

// showUpload gives an upload its line: the one /file made for it (the
// first still unnamed with its name, else the first unnamed), or a new
// one (an upload an earlier run left, resumed).
func (c *conversation) showUpload(id, name string, now time.Time) {
	if c.find(id) >= 0 || c.findUpload(id) >= 0 {
		return
	}
	i := c.findUpload("")
	for j, it := range c.items {
		if it.upload != nil && it.upload.id == "" && it.upload.name == name {
			i = j
			break
		}
	}
	if i >= 0 {
		c.items[i].upload.id, c.items[i].upload.name = id, name
		return
	}
	c.items = append(c.items, item{upload: &uploadItem{id: id, name: name, at: now}})
}

// findUpload is the index of the upload line of id ("": the first not
// named yet), or -1.
func (c *conversation) findUpload(id string) int {
	return slices.IndexFunc(c.items, func(it item) bool { return it.upload != nil && it.upload.id == id })
}

// dropUpload removes the unnamed upload line of name (a /file refused
// after it was asked for).
func (c *conversation) dropUpload(name string) {
	i := slices.IndexFunc(c.items, func(it item) bool { return it.upload != nil && it.upload.id == "" && it.upload.name == name })
	if i < 0 {
		i = c.findUpload("")
	}
	if i >= 0 {
		c.items = slices.Delete(c.items, i, i+1)
		c.changed()
	}
}

// fileCommand runs /file PATH: the engine checks the path and the
// conversation at once, and sends the file in the background.
func (u *UI) fileCommand(rest string) bool {
	c := u.open
	switch {
	case c == u.console:
		u.notice(noticeError, "no conversation is open: /msg NAME opens one, then /file PATH sends it a file")
		return false
	case c.isSystem():
		u.notice(noticeError, "%s", readOnlyNote)
		return false
	case c.group != nil && c.group.Left:
		u.notice(noticeError, "not sent: %s", u.readOnly(c))
		return false
	}
	path := expandHome(unquote(strings.TrimSpace(rest)))
	if path == "" {
		u.notice(noticeError, "usage: /file PATH (Tab completes it)")
		return false
	}
	if err := u.b.StartFile(c.Conversation, path); err != nil {
		var ic *client.IdentityChangedError
		if errors.As(err, &ic) {
			if !c.IdentityChanged {
				c.IdentityChanged, c.Verified = true, false
			}
			u.notice(noticeError, "not sent: %s", identityChangedLine(ic.User))
		} else {
			u.notice(noticeError, "/file: %v", err)
		}
		return false
	}
	c.items = append(c.items, item{upload: &uploadItem{name: filepath.Base(filepath.Clean(path)), at: u.now()}})
	c.changed()
	c.LastActivity = u.now()
	u.sortConversations()
	u.pane.follow()
	return true
}

// saveCommand runs /save ID [PATH]: a complete file is written out at
// once; one not fetched yet is fetched first, its line showing the
// progress, and written out when complete.
func (u *UI) saveCommand(rest string) bool {
	id, path := nextField(rest)
	path = expandHome(unquote(strings.TrimSpace(path)))
	if id == "" {
		u.notice(noticeError, "usage: /save ID [PATH] (/files lists the ids)")
		return false
	}
	fi, err := u.b.FindFile(id)
	if err != nil {
		u.notice(noticeError, "/save: %v", err)
		return false
	}
	c := u.open
	if fi.State != client.FileOffered {
		// Complete: saved; else the engine says why it cannot be.
		u.saveFile(c, fi.ID, fi.Name, path)
		return true
	}
	u.saves[fi.ID] = &pendingSave{c: c, path: path}
	u.notice(noticeInfo, "fetching %s (%s); it is saved once it is complete", fi.Name, chat.FormatBytes(fi.Size))
	if fv := u.files[fi.ID]; fv != nil && fv.moving {
		return true // the engine is fetching it already
	}
	id = fi.ID
	progress := func(fi *client.FileInfo) {
		u.update(func() { u.fileEvent(fi.Conversation, fi, nil) })
	}
	go func() {
		got, err := u.b.FetchFile(u.ctx, id, progress)
		u.update(func() {
			ps := u.saves[id]
			switch {
			case ps == nil: // saved already, or failed and said so
			case got != nil && got.State == client.FileComplete:
				delete(u.saves, id)
				u.saveFile(ps.c, id, got.Name, ps.path)
			case err != nil && (got == nil || got.State == client.FileFailed):
				delete(u.saves, id)
				u.tell(ps.c, noticeError, "/save: "+err.Error())
			case err != nil:
				// Cut off, or fetched by the engine already: saved when
				// the engine has it.
				u.tell(ps.c, noticeWarn, fmt.Sprintf("/save: %v; %s is saved once it is fetched", err, got.Name))
			}
		})
	}()
	return true
}

// saveFile writes a file out off the UI goroutine (it decrypts all of
// it) and says where, or why not, in c.
func (u *UI) saveFile(c *conversation, id, name, path string) {
	hint := "saving " + sanitizeLine(name) + "…"
	u.hint = hint
	go func() {
		written, err := u.b.SaveFile(id, path)
		u.update(func() {
			if u.hint == hint {
				u.hint = ""
			}
			if err != nil {
				u.tell(c, noticeError, "/save: "+err.Error())
				return
			}
			if fv := u.files[id]; fv != nil {
				fv.info.Saved = written
				if fc := u.byConv[fv.info.Conversation]; fc != nil {
					fc.changed()
				}
			}
			u.tell(c, noticeInfo, fmt.Sprintf("%s saved to %s", name, written))
		})
	}()
}

// tell shows a notice in c (nil: the console), following it if open.
func (u *UI) tell(c *conversation, level noticeLevel, text string) {
	if c == nil {
		c = u.console
	}
	c.notify(level, text)
	if c == u.open {
		u.pane.follow()
	}
}

// filesCommand runs /files: every file sent and received, newest last,
// with its id, state, size, who and name.
func (u *UI) filesCommand() bool {
	files, err := u.b.Files()
	if err != nil {
		u.notice(noticeError, "/files: %v", err)
		return false
	}
	if len(files) == 0 {
		u.notice(noticeInfo, "no files yet: /file PATH sends one to the open conversation")
		return true
	}
	var b strings.Builder
	b.WriteString("Files (/save ID [PATH] saves one):")
	if n := len(files) - maxFilesListed; n > 0 {
		fmt.Fprintf(&b, "\n  … %d older ones: securechat files list shows them all", n)
		files = files[n:]
	}
	rows := make([][5]string, 0, len(files))
	widths := [5]int{}
	for _, fi := range files {
		fv := u.files[fi.ID]
		if fv == nil || fv.info.State != fi.State {
			fv = &fileView{info: *fi}
			u.files[fi.ID] = fv
		}
		who := "from " + fi.From
		if fi.Outgoing && !fi.Conversation.IsGroup() {
			who = "to " + fi.Conversation.ID()
		}
		if fi.Conversation.IsGroup() {
			g := "in " + fi.Conversation.String()
			if c := u.byConv[fi.Conversation]; c != nil {
				g = "in " + c.name()
			}
			if fi.Outgoing {
				who = "to " + strings.TrimPrefix(g, "in ")
			} else {
				who += " " + g
			}
		}
		row := [5]string{fi.ShortID(), fileState(fv), chat.FormatBytes(fi.Size), who, fi.Name}
		for i, s := range row[:4] {
			widths[i] = max(widths[i], textWidth(sanitizeLine(s)))
		}
		rows = append(rows, row)
	}
	for _, row := range rows {
		b.WriteString("\n ")
		for i, s := range row {
			s = sanitizeLine(s)
			b.WriteString(" " + s)
			if i < 4 {
				b.WriteString(strings.Repeat(" ", widths[i]-textWidth(s)))
			}
		}
	}
	u.notice(noticeInfo, "%s", b.String())
	return true
}

// fileState is a file's state in /files, in a word or a few.
func fileState(fv *fileView) string {
	fi := &fv.info
	switch {
	case fv.moving && fi.State == client.FileUploading:
		return fmt.Sprintf("sending %d%%", percent(fi.Done, fi.Total))
	case fv.moving:
		return fmt.Sprintf("fetching %d%%", percent(fi.Done, fi.Total))
	case fi.State == client.FileComplete && fi.Saved != "":
		return "saved"
	case fi.State == client.FileFailed:
		return "failed: " + fi.Error
	}
	return fi.State.String()
}

func percent(done, total int64) int64 {
	if total <= 0 {
		return 0
	}
	return min(done, total) * 100 / total
}

// fileCells is a file message's line (or an upload's, before its message
// exists): "file NAME (SIZE)", and under it what became of it.
func (u *UI) fileCells(id, name string, outgoing bool) []span {
	fv := u.files[id]
	head := "file " + sanitizeLine(name)
	if fv != nil {
		head += " (" + chat.FormatBytes(fv.info.Size) + ")"
	}
	sp := []span{{head, styleFile}}
	status, style := fileStatus(fv, id, outgoing)
	if status != "" {
		sp = append(sp, span{"\n", style}, span{sanitizeLine(status), style})
	}
	return sp
}

// fileStatus is the second line of a file's entry.
func fileStatus(fv *fileView, id string, outgoing bool) (string, tcell.Style) {
	if fv == nil {
		if id == "" && outgoing {
			return "encrypting…", styleDim
		}
		return "", styleDim
	}
	fi := &fv.info
	bar := func(verb string) string {
		return verb + " " + chat.FormatProgress(fi.Done, fi.Total, fi.Rate, fi.Left, progressBar)
	}
	short := fi.ShortID()
	switch {
	case fv.moving && fi.State == client.FileUploading:
		return bar("sending"), styleDim
	case fv.moving:
		return bar("fetching"), styleDim
	case fv.err != "":
		return "interrupted: " + fv.err + "; tried again when connected", styleWarn
	case fi.State == client.FileUploading:
		return "sending…", styleDim
	case fi.State == client.FileSent:
		return "sent", styleDim
	case fi.State == client.FileOffered:
		return "not fetched yet — /save " + short + " fetches it", styleDim
	case fi.State == client.FileComplete && fi.Saved != "":
		return "complete — /save " + short + " (saved to " + fi.Saved + ")", styleDelivered
	case fi.State == client.FileComplete:
		return "complete — /save " + short, styleDelivered
	case fi.State == client.FileFailed:
		return "failed: " + fi.Error, styleError
	}
	return "", styleDim
}

// expandHome puts $HOME for a leading "~".
func expandHome(path string) string {
	if path != "~" && !strings.HasPrefix(path, "~/") {
		return path
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return path
	}
	return home + path[1:]
}

// unquote takes the quotes off a path typed in them.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// completePath completes the path being typed after base: the entries of
// its directory that start with what follows the last "/" (hidden ones
// only when that starts with "."), directories with a "/" after them.
func (u *UI) completePath(base, word string) {
	if word == "~" {
		u.setInput(base + "~/")
		return
	}
	dirPart := word[:strings.LastIndexByte(word, '/')+1]
	prefix := word[len(dirPart):]
	dir := expandHome(dirPart)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		u.hint = "no completions: cannot read " + sanitizeLine(dir)
		return
	}
	var cands []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || (strings.HasPrefix(name, ".") && !strings.HasPrefix(prefix, ".")) {
			continue
		}
		isDir := e.IsDir()
		if e.Type()&os.ModeSymlink != 0 {
			if st, err := os.Stat(filepath.Join(dir, name)); err == nil {
				isDir = st.IsDir()
			}
		}
		if isDir {
			name += "/"
		}
		cands = append(cands, name)
	}
	slices.Sort(cands)
	u.offer(base+dirPart, prefix, cands, false)
}

// fileIDs are the ids /save completes: of the files that can be saved or
// fetched.
func (u *UI) fileIDs() []string {
	var out []string
	for _, fv := range u.files {
		if s := fv.info.State; s == client.FileComplete || s == client.FileOffered {
			out = append(out, fv.info.ShortID())
		}
	}
	slices.Sort(out)
	return out
}

// shownCompletions is the hint listing candidates, at most
// maxCompletions of them.
func shownCompletions(cands []string) string {
	if len(cands) > maxCompletions {
		return "completions: " + strings.Join(cands[:maxCompletions], "  ") + fmt.Sprintf("  … (%d more)", len(cands)-maxCompletions)
	}
	return "completions: " + strings.Join(cands, "  ")
}
