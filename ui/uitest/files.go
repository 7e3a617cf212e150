package uitest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// Files, as the engine keeps them (client/files.go), in memory: a test
// moves each one along with the methods below, which emit the events the
// engine would (UIFile, and the file message as a UIMessage), and the
// ui.Backend methods read and change them as the engine does. SaveFile
// writes the file's content to the real file system.

type fakeFile struct {
	info    client.FileInfo
	content []byte
}

// newFileIDLocked is a message id whose first 4 hex digits tell it apart
// (ShortID, /save ID).
func (b *Backend) newFileIDLocked() string {
	b.nextID++
	return fmt.Sprintf("%04xf11e%024x", b.nextID, b.nextID)
}

func (b *Backend) fileLocked(id string) *fakeFile {
	i := slices.IndexFunc(b.files, func(f *fakeFile) bool { return f.info.ID == id })
	if i < 0 {
		return nil
	}
	return b.files[i]
}

func (b *Backend) emitFile(id string, change func(fi *client.FileInfo), err error) client.FileInfo {
	b.mu.Lock()
	f := b.fileLocked(id)
	if f == nil {
		b.mu.Unlock()
		panic("uitest: no file " + id)
	}
	fi := f.info
	change(&fi)
	f.info.State, f.info.Error = fi.State, fi.Error
	b.mu.Unlock()
	b.Emit(client.UIEvent{Type: client.UIFile, Conversation: fi.Conversation, ID: fi.ID, File: &fi, Err: err})
	return fi
}

// HoldFetches makes FetchFile wait, after telling its first progress,
// until the channel returned is closed.
func (b *Backend) HoldFetches() chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fetchHold = make(chan struct{})
	return b.fetchHold
}

// Upload is what the engine does after StartFile checked path: it
// encrypts the file and keeps its record, uploading (no event yet).
func (b *Backend) Upload(conv chat.Conversation, path string) client.FileInfo {
	content, err := os.ReadFile(path)
	if err != nil {
		panic("uitest: " + err.Error())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f := &fakeFile{info: client.FileInfo{ID: b.newFileIDLocked(), Conversation: conv, From: b.user, Outgoing: true,
		Name: filepath.Base(path), Size: int64(len(content)), State: client.FileUploading, Time: b.now(), Source: path}, content: content}
	b.files = append(b.files, f)
	return f.info
}

// Progress emits a transfer's progress: done of total bytes at rate
// bytes a second, left to go.
func (b *Backend) Progress(id string, done, total int64, rate float64, left time.Duration) {
	b.emitFile(id, func(fi *client.FileInfo) { fi.Done, fi.Total, fi.Rate, fi.Left = done, total, rate, left }, nil)
}

// Interrupted emits a transfer cut off by err (tried again later).
func (b *Backend) Interrupted(id string, err error) {
	b.emitFile(id, func(*client.FileInfo) {}, err)
}

// Fail fails a file for good and emits it.
func (b *Backend) Fail(id, why string) {
	b.emitFile(id, func(fi *client.FileInfo) { fi.State, fi.Error = client.FileFailed, why }, nil)
}

// Complete marks a received file fetched and checked, and emits it.
func (b *Backend) Complete(id string) {
	b.emitFile(id, func(fi *client.FileInfo) { fi.State = client.FileComplete }, nil)
}

// Refuse emits what the engine does when a /file fails before it kept
// anything (a file over the server's limit): no id, the name, the error.
func (b *Backend) Refuse(conv chat.Conversation, name string, err error) {
	b.Emit(client.UIEvent{Type: client.UIFile, Conversation: conv, File: &client.FileInfo{Conversation: conv, Name: name, Outgoing: true}, Err: err})
}

// Uploaded finishes an upload: the file is sent, and its message queued
// (state sending) and emitted as the engine does.
func (b *Backend) Uploaded(id string) client.HistoryEntry {
	b.mu.Lock()
	f := b.fileLocked(id)
	f.info.State = client.FileSent
	c := b.convLocked(f.info.Conversation)
	e := client.HistoryEntry{ID: id, Conversation: f.info.Conversation, From: b.user, Outgoing: true,
		Kind: chat.KindFile, Text: f.info.Name, Time: f.info.Time, State: client.StateSending}
	c.entries = append(c.entries, e)
	c.conv.LastActivity, c.conv.LastText = e.Time, e.Text
	b.mu.Unlock()
	b.Emit(client.UIEvent{Type: client.UIMessage, Conversation: e.Conversation, Entry: &e})
	return e
}

// ReceiveFile adds a file message from name offering content as file,
// counts it unread and emits it; the file is offered, not fetched.
func (b *Backend) ReceiveFile(name, file string, content []byte, at time.Time) client.FileInfo {
	b.mu.Lock()
	conv := chat.Peer(name)
	c := b.convLocked(conv)
	e := client.HistoryEntry{ID: b.newFileIDLocked(), Conversation: conv, From: name, Kind: chat.KindFile, Text: file, Time: at}
	c.entries = append(c.entries, e)
	c.conv.Unread++
	c.conv.LastActivity, c.conv.LastText = at, file
	f := &fakeFile{info: client.FileInfo{ID: e.ID, Conversation: conv, From: name, Name: file, Size: int64(len(content)),
		State: client.FileOffered, Time: at}, content: content}
	b.files = append(b.files, f)
	b.mu.Unlock()
	b.Emit(client.UIEvent{Type: client.UIMessage, Conversation: conv, Entry: &e})
	return f.info
}

// File returns a file as the backend holds it now.
func (b *Backend) File(id string) client.FileInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f := b.fileLocked(id); f != nil {
		return f.info
	}
	return client.FileInfo{}
}

// The ui.Backend methods.

// StartFile checks the conversation and the path as the engine does and
// records the call; the test then moves the upload along (Upload,
// Progress, Uploaded).
func (b *Backend) StartFile(to chat.Conversation, path string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("StartFile", to.String(), path)
	if c := b.convs[to]; c != nil && c.conv.IdentityChanged {
		return &client.IdentityChangedError{User: to.ID()}
	}
	if g := b.groups[to]; to.IsGroup() && (g == nil || g.Left) {
		return errors.New("you are no longer a member of that group")
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	case st.IsDir():
		return fmt.Errorf("%s is a directory: send the files in it one by one (or an archive of them)", path)
	}
	return nil
}

func (b *Backend) Files() ([]*client.FileInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("Files")
	out := make([]*client.FileInfo, len(b.files))
	for i, f := range b.files {
		fi := f.info
		out[i] = &fi
	}
	return out, nil
}

// FindFile finds a file by the start of its id, as the home does.
func (b *Backend) FindFile(prefix string) (*client.FileInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("FindFile", prefix)
	return b.findLocked(prefix)
}

func (b *Backend) findLocked(prefix string) (*client.FileInfo, error) {
	p := strings.ToLower(strings.TrimSpace(prefix))
	if _, err := hex.DecodeString(p + p); len(p) < 4 || err != nil {
		return nil, fmt.Errorf("%q is not a file id: give 4 or more of the hex digits `files list` shows", prefix)
	}
	var found *client.FileInfo
	for _, f := range b.files {
		if strings.HasPrefix(f.info.ID, p) {
			if found != nil {
				return nil, fmt.Errorf("more than one file has an id starting %s: give more digits", p)
			}
			fi := f.info
			found = &fi
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no file has an id starting %s (see securechat files list)", p)
	}
	return found, nil
}

// FetchFile tells progress half of the file, waits for HoldFetches'
// channel if it was called, then completes the file and emits that.
func (b *Backend) FetchFile(ctx context.Context, id string, progress func(*client.FileInfo)) (*client.FileInfo, error) {
	b.mu.Lock()
	b.record("FetchFile", id)
	fi, err := b.findLocked(id)
	hold := b.fetchHold
	b.mu.Unlock()
	switch {
	case err != nil:
		return nil, err
	case fi.State == client.FileComplete:
		return fi, nil
	case fi.State != client.FileOffered:
		return fi, fmt.Errorf("%s cannot be had: %s", fi.Name, fi.Error)
	}
	half := *fi
	half.Done, half.Total, half.Rate, half.Left = fi.Size/2, fi.Size, float64(fi.Size)/4, 2*time.Second
	progress(&half)
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return fi, ctx.Err()
		}
	}
	done := b.emitFile(fi.ID, func(fi *client.FileInfo) { fi.State = client.FileComplete }, nil)
	return &done, nil
}

// SaveFile writes a complete file's content as the engine does: to path,
// into it if it is a directory, never over a file ("name (1).ext").
func (b *Backend) SaveFile(id, path string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("SaveFile", id, path)
	fi, err := b.findLocked(id)
	if err != nil {
		return "", err
	}
	switch {
	case fi.State == client.FileFailed:
		return "", fmt.Errorf("%s cannot be had: %s", fi.Name, fi.Error)
	case fi.Source != "":
		return "", fmt.Errorf("you sent %s (from %s); this device keeps no copy of it", fi.Name, fi.Source)
	case fi.State != client.FileComplete:
		return "", fmt.Errorf("%s is not fetched yet", fi.Name)
	}
	if path == "" {
		path = "."
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, fi.Name)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(filepath.Dir(abs)); err != nil || !st.IsDir() {
		return "", fmt.Errorf("no directory %s", filepath.Dir(abs))
	}
	ext := filepath.Ext(abs)
	target := abs
	for i := 1; ; i++ {
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, err = f.Write(b.fileLocked(fi.ID).content)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return "", err
			}
			break
		}
		if !errors.Is(err, os.ErrExist) || i > 100 {
			return "", err
		}
		target = fmt.Sprintf("%s (%d)%s", strings.TrimSuffix(abs, ext), i, ext)
	}
	b.fileLocked(fi.ID).info.Saved = target
	return target, nil
}
