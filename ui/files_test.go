package ui_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/ui/uitest"
)

const mib = 1 << 20

// writeFile writes size bytes of a pattern to dir/name and returns its path.
func writeFile(t *testing.T, dir, name string, size int) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, bytes.Repeat([]byte("0123456789abcdef"), size/16), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lineAfter is the pane's part of the row below the first one holding
// s, without the blanks around it.
func lineAfter(lines []string, s string) string {
	if i := uitest.Row(lines, s); i >= 0 && i+1 < len(lines) {
		_, pane, _ := strings.Cut(lines[i+1], "│")
		return strings.TrimSpace(pane)
	}
	return ""
}

// TestFileSend: /file PATH has a line at once, which shows the upload's
// bar with its bytes, rate and time left, a transfer cut off, then
// "sent" with the message's delivery mark once the file message exists
// (the same line, not a second one); an upload that fails for good says
// why, and one refused before it started goes with a one-line reason.
func TestFileSend(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	x := start(t, b, 110, 30)
	dir := t.TempDir()
	path := writeFile(t, dir, "report.pdf", 5*mib)
	bob := chat.Peer("bob")

	x.term.Type("/file " + path + "\n")
	x.waitCalls(1, "StartFile", "bob", path)
	lines := x.term.WaitText(t, "alice: file report.pdf")
	if got := lineAfter(lines, "alice: file report.pdf"); !strings.Contains(got, "encrypting…") {
		t.Errorf("the line under the upload is %q, want encrypting…", got)
	}

	fi := b.Upload(bob, path)
	b.Progress(fi.ID, 2*mib, 5*mib, 1*mib, 3*time.Second)
	lines = x.term.WaitText(t, "sending [####------] 2 MiB of 5 MiB, 1 MiB/s, 3s left")
	if !uitest.Contains(lines, "alice: file report.pdf (5 MiB)") {
		t.Errorf("the upload's line lacks its name and size:\n%s", x.term.Text())
	}
	b.Interrupted(fi.ID, errors.New("connection lost"))
	x.term.WaitText(t, "interrupted: connection lost; tried again when connected")
	b.Progress(fi.ID, 5*mib, 5*mib, 2*mib, 0)
	x.term.WaitText(t, "sending [##########] 5 MiB of 5 MiB, 2 MiB/s")

	b.Uploaded(fi.ID)
	lines = x.term.WaitFor(t, "sent …", func(lines []string) bool { return lineAfter(lines, "file report.pdf") == "sent …" })
	if n := strings.Count(strings.Join(lines, "\n"), "file report.pdf"); n != 1 {
		t.Errorf("%d lines name report.pdf, want 1:\n%s", n, x.term.Text())
	}
	b.SetState("bob", fi.ID, client.StateDelivered)
	x.term.WaitFor(t, "sent ✓✓", func(lines []string) bool { return lineAfter(lines, "file report.pdf") == "sent ✓✓" })

	// Refused by the engine after /file returned (over the server's
	// limit): the line goes, the reason stays.
	big := writeFile(t, dir, "big.iso", 64)
	x.term.Type("/file " + big + "\n")
	x.term.WaitText(t, "alice: file big.iso")
	b.Refuse(bob, "big.iso", errors.New("big.iso is 2 GiB; this server takes files up to 1 GiB"))
	x.term.WaitText(t, "/file: not sent: big.iso is 2 GiB; this server takes files up to 1 GiB")
	x.term.WaitNoText(t, "alice: file big.iso")

	// Failed for good.
	old := writeFile(t, dir, "old.tar", 2*mib)
	x.term.Type("/file " + old + "\n")
	x.term.WaitText(t, "alice: file old.tar")
	fo := b.Upload(bob, old)
	b.Progress(fo.ID, mib, 2*mib, mib, time.Second)
	x.term.WaitText(t, "sending [#####-----] 1 MiB of 2 MiB")
	b.Fail(fo.ID, "the server no longer has the upload (it expired): send it again")
	x.term.WaitText(t, "failed: the server no longer has the upload (it expired): send it again")
}

// TestFileSendRefused: what /file refuses at once is one line, and the
// command stays in the input to edit.
func TestFileSendRefused(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	x := start(t, b, 110, 30)
	dir := t.TempDir()
	x.term.Type("/file nothing-here.txt\n")
	x.term.WaitText(t, "/file: cannot read nothing-here.txt: no such file or directory")
	x.term.WaitText(t, "not done: Enter retries")
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	x.term.Type("/file .\n")
	x.term.WaitText(t, "/file: . is a directory: send the files in it one by one")
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	x.term.Type("/file\n")
	x.term.WaitText(t, "usage: /file PATH")
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)

	// erin's identity key changed: nothing goes to her.
	x.term.Type("/msg erin\n")
	x.term.Type("/file " + writeFile(t, dir, "a.txt", 16) + "\n")
	x.term.WaitText(t, "not sent: erin's safety number changed: compare it with /verify erin")
	if n := x.calls("StartFile"); n != 3 {
		t.Errorf("%d StartFile calls, want 3 (not for the usage error)", n)
	}

	// No conversation open.
	y := start(t, uitest.NewBackend("alice"), 110, 30)
	y.term.Type("/file " + filepath.Join(dir, "a.txt") + "\n")
	y.term.WaitText(t, "no conversation is open: /msg NAME opens one, then /file PATH sends it a file")
}

// TestFileReceive: a file message's line shows the file offered, the
// fetch's bar (gone with the connection, back when it resumes), then
// "complete — /save ID"; one that does not check out says why it failed.
func TestFileReceive(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	x := start(t, b, 110, 30)
	fi := b.ReceiveFile("bob", "photo.jpg", make([]byte, 3*mib), t0)
	short := fi.ID[:8]
	lines := x.term.WaitText(t, "bob: file photo.jpg (3 MiB)")
	if got := lineAfter(lines, "bob: file photo.jpg"); !strings.Contains(got, "not fetched yet — /save "+short+" fetches it") {
		t.Errorf("the line under the offer is %q", got)
	}
	b.Progress(fi.ID, mib, 3*mib, 512<<10, 4*time.Second)
	x.term.WaitText(t, "fetching [###-------] 1 MiB of 3 MiB, 512 KiB/s, 4s left")
	// The connection drops: the transfer stopped with it, and resumes.
	b.Emit(client.UIEvent{Type: client.UIConn, Conn: client.ConnDisconnected, Err: errors.New("timeout")})
	x.term.WaitText(t, "interrupted: the connection was lost; tried again when connected")
	x.term.WaitNoText(t, "fetching [")
	b.Progress(fi.ID, 2*mib, 3*mib, 512<<10, 2*time.Second)
	x.term.WaitText(t, "fetching [######----] 2 MiB of 3 MiB, 512 KiB/s, 2s left")
	b.Complete(fi.ID)
	x.term.WaitText(t, "complete — /save "+short)
	x.term.WaitNoText(t, "fetching [")

	bad := b.ReceiveFile("bob", "notes.txt", make([]byte, 100), t0)
	x.term.WaitText(t, "bob: file notes.txt (100 bytes)")
	b.Fail(bad.ID, "it was altered on the way: its digest is not the one the sender sent; not kept")
	lines = x.term.WaitText(t, "failed: it was altered on the way: its digest is not the one the sender")
	if got := lineAfter(lines, "failed: it was altered on the way"); got != "sent; not kept" {
		t.Errorf("the failed line goes on with %q", got)
	}

	// In a conversation not open: counted unread, like a message.
	b.ReceiveFile("carol", "cat.gif", make([]byte, 10), t0)
	x.term.WaitFor(t, "carol unread", func(lines []string) bool { return strings.Contains(lines[uitest.Row(lines, "carol")], "(4)") })
}

// TestFilesView: /files lists every file with its id, state, size, who
// and name; /help lists the file commands.
func TestFilesView(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	x := start(t, b, 120, 60)
	x.term.Type("/files\n")
	x.term.WaitText(t, "no files yet: /file PATH sends one")

	dir := t.TempDir()
	sent := b.Upload(chat.Peer("bob"), writeFile(t, dir, "report.pdf", 2*mib))
	b.Uploaded(sent.ID)
	done := b.ReceiveFile("bob", "photo.jpg", make([]byte, 3*mib), t0)
	moving := b.ReceiveFile("carol", "talk.mp4", make([]byte, 8*mib), t0)
	b.Progress(moving.ID, 2*mib, 8*mib, mib, 6*time.Second)
	failed := b.ReceiveFile("dave", "notes.txt", make([]byte, 100), t0)
	b.Fail(failed.ID, "it was altered on the way")
	// The UI takes the events in order: once the last one shows, the
	// others (carol's progress, in a conversation not open) are applied.
	b.Complete(done.ID)
	x.term.WaitText(t, "complete — /save "+done.ID[:8])

	x.term.Type("/files\n")
	lines := x.term.WaitText(t, "Files (/save ID [PATH] saves one):")
	for _, row := range []struct{ id, rest string }{
		{sent.ID, `sent +2 MiB +to bob +report\.pdf`},
		{done.ID, `complete +3 MiB +from bob +photo\.jpg`},
		{moving.ID, `fetching 25% +8 MiB +from carol +talk\.mp4`},
		{failed.ID, `failed: it was altered on the way +100 bytes +from dave +notes\.txt`},
	} {
		i := uitest.Row(lines, row.id[:8]+" ")
		if i < 0 || !regexp.MustCompile(row.rest).MatchString(lines[i]) {
			t.Errorf("no row %s %s in /files:\n%s", row.id[:8], row.rest, x.term.Text())
		}
	}

	x.term.Type("/help\n")
	lines = x.term.WaitText(t, "Commands:")
	for _, want := range []string{"/file PATH", "/files", "/save ID [PATH]"} {
		if !uitest.Contains(lines, want) {
			t.Errorf("help lacks %q:\n%s", want, x.term.Text())
		}
	}
}

// TestFileSave: /save ID DIR writes a complete file there, never over
// another; a file not fetched yet is fetched first, its line showing the
// bar, and saved once complete; what cannot be saved says why.
func TestFileSave(t *testing.T) {
	t.Parallel()
	b := sampleBackend()
	x := start(t, b, 120, 40)
	dir := t.TempDir()
	photo := bytes.Repeat([]byte("photo"), 1000)
	fi := b.ReceiveFile("bob", "photo.jpg", photo, t0)
	b.Complete(fi.ID)
	x.term.WaitText(t, "complete — /save "+fi.ID[:8])

	x.term.Type("/save " + fi.ID[:8] + " " + dir + "\n")
	want := filepath.Join(dir, "photo.jpg")
	x.term.WaitText(t, "photo.jpg saved to "+want)
	if got, err := os.ReadFile(want); err != nil || !bytes.Equal(got, photo) {
		t.Errorf("%s: %d bytes, %v; want the file", want, len(got), err)
	}
	x.term.WaitText(t, "complete — /save "+fi.ID[:8]+" (saved to "+want+")")
	x.term.Type("/save " + fi.ID[:4] + " " + dir + "\n")
	x.term.WaitText(t, "photo.jpg saved to "+filepath.Join(dir, "photo (1).jpg"))

	// Not fetched yet: fetched with progress, then saved.
	hold := b.HoldFetches()
	notes := b.ReceiveFile("bob", "notes.txt", []byte("some notes\n"), t0)
	x.term.WaitText(t, "bob: file notes.txt")
	x.term.Type("/save " + notes.ID[:8] + " " + filepath.Join(dir, "n.txt") + "\n")
	x.term.WaitText(t, "fetching notes.txt (11 bytes); it is saved once it is complete")
	x.waitCalls(1, "FetchFile", notes.ID)
	x.term.WaitText(t, "fetching [####------] 5 bytes of 11 bytes, 2 bytes/s, 2s left")
	close(hold)
	x.term.WaitText(t, "notes.txt saved to "+filepath.Join(dir, "n.txt"))
	if got, err := os.ReadFile(filepath.Join(dir, "n.txt")); err != nil || string(got) != "some notes\n" {
		t.Errorf("n.txt: %q, %v", got, err)
	}

	// What cannot be saved.
	x.term.Type("/save zz\n")
	x.term.WaitText(t, `/save: "zz" is not a file id`)
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	x.term.Type("/save abcd\n")
	x.term.WaitText(t, "/save: no file has an id starting abcd")
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	x.term.Type("/save\n")
	x.term.WaitText(t, "usage: /save ID [PATH] (/files lists the ids)")
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	bad := b.ReceiveFile("bob", "bad.bin", make([]byte, 10), t0)
	b.Fail(bad.ID, "it was altered on the way")
	x.term.WaitText(t, "failed: it was altered on the way")
	x.term.Type("/save " + bad.ID[:8] + " " + dir + "\n")
	x.term.WaitText(t, "/save: bad.bin cannot be had: it was altered on the way")
	x.term.Type("/save " + fi.ID[:8] + " " + filepath.Join(dir, "no", "such", "dir") + "\n")
	x.term.WaitText(t, "/save: no directory "+filepath.Join(dir, "no", "such"))
	sent := b.Upload(chat.Peer("bob"), want)
	b.Uploaded(sent.ID)
	x.term.Type("/save " + sent.ID[:8] + "\n")
	x.term.WaitText(t, "/save: you sent photo.jpg (from "+want+"); this device")
}

// TestFileCompletion: Tab completes paths after /file and /save ID:
// a unique start, directories with "/", several listed and cycled, hidden
// files only when asked for, "~" as $HOME; and /save's ids.
func TestFileCompletion(t *testing.T) { // not parallel: it sets HOME
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, f := range []string{"alpha.txt", "beta.bin", ".hidden", "alpine/inner.txt"} {
		os.MkdirAll(filepath.Join(home, filepath.Dir(f)), 0o755)
		writeFile(t, home, f, 16)
	}
	b := sampleBackend()
	x := start(t, b, 110, 30)

	x.term.Type("/fi")
	x.term.Press(tcell.KeyTab)
	x.term.WaitText(t, "completions: file  files")
	x.waitInput("bob> ", "/file")
	x.term.Type(" ~")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/file ~/")
	x.term.Type("b")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/file ~/beta.bin")
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)

	x.term.Type("/file ~/al")
	x.term.Press(tcell.KeyTab)
	x.term.WaitText(t, "completions: alpha.txt  alpine/")
	x.waitInput("bob> ", "/file ~/alp")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/file ~/alpha.txt")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/file ~/alpine/")
	x.term.Type("i") // Tab goes on cycling through the two
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/file ~/alpine/inner.txt")
	x.term.Press(tcell.KeyEnter)
	x.waitCalls(1, "StartFile", "bob", filepath.Join(home, "alpine", "inner.txt"))
	x.term.WaitText(t, "alice: file inner.txt")

	x.term.Type("/file ~/.")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/file ~/.hidden")
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)
	x.term.Type("/file ~/zz")
	x.term.Press(tcell.KeyTab)
	x.term.WaitText(t, "no completions")
	x.term.Press(tcell.KeyCtrlU, tcell.ModCtrl)

	// /save: the id, then the path.
	fi := b.ReceiveFile("bob", "photo.jpg", []byte("jpeg"), t0)
	b.Complete(fi.ID)
	x.term.WaitText(t, "complete — /save "+fi.ID[:8])
	x.term.Type("/save ")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/save "+fi.ID[:8]+" ")
	x.term.Type("~/alpi")
	x.term.Press(tcell.KeyTab)
	x.waitInput("bob> ", "/save "+fi.ID[:8]+" ~/alpine/")
	x.term.Press(tcell.KeyEnter)
	x.term.WaitText(t, "photo.jpg saved to "+filepath.Join(home, "alpine", "photo.jpg"))
}
