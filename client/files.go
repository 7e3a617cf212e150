package client

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// File transfer (issue 12; protocol.md §8.4, §6.8, §9.5). The sender's
// device encrypts the file under a key of its own (the attachment cipher),
// uploads the ciphertext as a blob for every device the message goes to
// (the fan-out rule, docs/design.md §10), and then sends a file message —
// the blob's id, the key, the digest, the sizes, the name and the type —
// through the conversation's end-to-end encryption like a text. A
// recipient fetches the blob, checks its size and digest and every chunk,
// and only then has the file (home.FileComplete) and tells the server,
// which deletes the blob once every recipient device has. Both ends keep
// what they need to resume in the sealed home (home/files.go) and the
// ciphertext under files/ in the home directory: nothing in the clear.

// FileRef is what a file message carries (Content field 13).
type FileRef struct {
	Blob   BlobID
	Key    []byte // e2ee.AttachmentKeySize
	Digest []byte // e2ee.AttachmentDigestSize: SHA-256 of the whole encoding
	Size   int64  // the encoding's size: what the server stores
	Plain  int64  // the file's size
	Name   string // the file's name, no directory
	Type   string // its media type, "" if unknown
}

// File names and types (protocol.md §8.4).
const (
	maxFileName = 255
	maxFileType = 127
	maxFileSize = 1 << 40
)

func (r *FileRef) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, r.Blob[:])
	e.BytesField(2, r.Key)
	e.BytesField(3, r.Digest)
	e.Uint(4, uint64(r.Size))
	e.Uint(5, uint64(r.Plain))
	e.String(6, r.Name)
	e.String(7, r.Type)
}

func (r *FileRef) UnmarshalFields(d *transport.Decoder) error {
	var blob []byte
	err := transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			blob, err = f.Fixed(transport.BlobIDLen)
		case 2:
			r.Key, err = f.Fixed(e2ee.AttachmentKeySize)
		case 3:
			r.Digest, err = f.Fixed(e2ee.AttachmentDigestSize)
		case 4:
			var v uint64
			v, err = f.Uint()
			r.Size = int64(min(v, maxFileSize*2))
		case 5:
			var v uint64
			v, err = f.Uint()
			r.Plain = int64(min(v, maxFileSize*2))
		case 6:
			r.Name, err = f.String(maxFileName)
		case 7:
			r.Type, err = f.String(maxFileType)
		default:
			return f.Unknown()
		}
		return err
	})
	if err != nil {
		return err
	}
	copy(r.Blob[:], blob)
	switch {
	case blob == nil || r.Key == nil || r.Digest == nil:
		return errors.New("a file without its id, key or digest")
	case r.Plain > maxFileSize || r.Size != e2ee.AttachmentSize(r.Plain):
		return fmt.Errorf("a file of %d bytes said to be %d bytes encrypted", r.Plain, r.Size)
	case r.Name == "" || r.Name != cleanFileName(r.Name):
		return fmt.Errorf("a file named %q, which no sender makes", r.Name)
	case !validFileType(r.Type):
		return errors.New("a file whose type holds spaces or control characters")
	}
	return nil
}

// cleanFileName is the name a file is offered and saved under: its last
// path element, without control or bidirectional-override characters
// (they would rewrite a terminal line, or disguise the extension), at most
// maxFileName bytes, and never "", "." or "..".
func cleanFileName(name string) string {
	name = strings.Map(func(r rune) rune {
		switch {
		case r == '/' || r == '\\' || r == utf8.RuneError:
			return '_'
		case unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u200e' || r == '\u200f':
			return '_'
		}
		return r
	}, name)
	for len(name) > maxFileName {
		_, n := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-n]
	}
	if name == "" || name == "." || name == ".." {
		return "file"
	}
	return name
}

// FileInfo is a file as front ends see it.
type FileInfo struct {
	ID           string // the file message's id (hex); files list shows its first 8 digits
	Conversation chat.Conversation
	From         string
	Outgoing     bool // sent by this account (from this device, or a copy from another)
	Name, Type   string
	Size         int64 // the file's size
	State        home.FileState
	Error        string
	Time         time.Time
	Source       string // the path it was sent from (sent from this device)
	Saved        string // where it was last saved
	// Progress of a transfer running now (UIFile events).
	Done, Total int64
	Rate        float64       // bytes a second since this transfer started
	Left        time.Duration // the time left at that rate; 0 if unknown
}

// ShortID is the start of the id that files list shows.
func (f *FileInfo) ShortID() string { return f.ID[:8] }

func fileInfo(r *home.FileRecord) (*FileInfo, *FileRef, error) {
	var ref FileRef
	if err := transport.Unmarshal(r.Ref, &ref); err != nil {
		return nil, nil, fmt.Errorf("file %x: %w", r.ID, err)
	}
	return &FileInfo{ID: hex.EncodeToString(r.ID), Conversation: r.Conversation, From: r.From, Outgoing: r.Outgoing,
		Name: ref.Name, Type: ref.Type, Size: ref.Plain, State: r.State, Error: r.Error, Time: time.UnixMilli(r.Time),
		Source: r.Source, Saved: r.Saved}, &ref, nil
}

// Files lists the files sent and received, oldest first.
func (e *Engine) Files() ([]*FileInfo, error) {
	recs, err := e.home.Files()
	if err != nil {
		return nil, err
	}
	out := make([]*FileInfo, 0, len(recs))
	for _, r := range recs {
		if fi, _, err := fileInfo(r); err == nil {
			out = append(out, fi)
		}
	}
	return out, nil
}

// FindFile finds a file by the start of its id.
func (e *Engine) FindFile(id string) (*FileInfo, error) {
	r, err := e.home.FindFile(id)
	if err != nil {
		return nil, err
	}
	fi, _, err := fileInfo(r)
	return fi, err
}

// progressMeter turns byte counts into FileProgress figures: the rate
// since the transfer (this attempt) started.
type progressMeter struct {
	info  FileInfo
	now   func() time.Time
	start time.Time
	from  int64 // bytes done when it started
	last  time.Time
	fn    func(*FileInfo)
}

func newMeter(info *FileInfo, now func() time.Time, fn func(*FileInfo)) *progressMeter {
	return &progressMeter{info: *info, now: now, fn: fn, from: -1}
}

// update reports done of total, at most 5 times a second but always the
// first and the last.
func (p *progressMeter) update(done, total int64) {
	if p.fn == nil {
		return
	}
	t := p.now()
	if p.from < 0 {
		p.from, p.start = done, t
	} else if done < total && t.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last = t
	fi := p.info
	fi.Done, fi.Total = done, total
	if el := t.Sub(p.start).Seconds(); el > 0 && done > p.from {
		fi.Rate = float64(done-p.from) / el
		fi.Left = time.Duration(float64(total-done) / fi.Rate * float64(time.Second))
	}
	p.fn(&fi)
}

// fileType names the media type of a file: by its extension, else by its
// first bytes. Only the type itself: a FileRef's type has no parameters
// (no "; charset=utf-8", whose space would not decode, protocol.md §8.4).
func fileType(name string, f io.ReaderAt) string {
	t := mime.TypeByExtension(filepath.Ext(name))
	if t == "" {
		head := make([]byte, 512)
		n, _ := f.ReadAt(head, 0)
		t = http.DetectContentType(head[:n])
	}
	t, _, err := mime.ParseMediaType(t)
	if err != nil || len(t) > maxFileType || !validFileType(t) {
		return ""
	}
	return t
}

// validFileType: a FileRef's type is printable ASCII without spaces.
func validFileType(t string) bool {
	return !strings.ContainsFunc(t, func(c rune) bool { return unicode.IsControl(c) || unicode.IsSpace(c) || c > unicode.MaxASCII })
}

// checkFileSize refuses, before anything is sent, a file of plain bytes
// (enc encrypted) that the server's limits do not take.
func checkFileSize(l BlobLimits, name string, plain, enc int64) error {
	over := enc - plain // what encryption adds
	switch {
	case enc > l.MaxSize:
		return fmt.Errorf("%s is %s; this server takes files up to %s", name, chat.FormatBytes(plain), chat.FormatBytes(max(l.MaxSize-over, 0)))
	case l.Used+enc > l.Quota:
		return fmt.Errorf("%s needs %s but your account has %s of its %s for files left on this server (files are kept until every recipient has them, at most %s)",
			name, chat.FormatBytes(enc), chat.FormatBytes(max(l.Quota-l.Used, 0)), chat.FormatBytes(l.Quota), formatTTL(l.TTL))
	}
	return nil
}

func formatTTL(d time.Duration) string {
	if d >= 48*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

// upPath and inPath are where a file's ciphertext is kept while it is
// uploaded, and once (or while) it is fetched.
func upPath(dir string, id []byte) string { return filepath.Join(dir, hex.EncodeToString(id)+".up") }
func inPath(dir string, id []byte) string { return filepath.Join(dir, hex.EncodeToString(id)+".enc") }

// sweepFiles removes from the home's files directory the copies no record
// needs, which a run killed between two steps leaves: an upload's copy
// whose record was never kept or whose message went, a fetched copy of a
// file that failed. It runs as an engine opens, before any transfer of
// this process starts (the home's lock keeps other processes out).
func (e *Engine) sweepFiles() {
	dir := filepath.Join(e.home.Dir, "files")
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		return
	}
	recs, err := e.home.Files()
	if err != nil {
		return
	}
	need := make(map[string]bool)
	for _, r := range recs {
		switch r.State {
		case home.FileUploading:
			need[upPath("", r.ID)] = true
		case home.FileOffered:
			need[inPath("", r.ID)+".part"] = true
		case home.FileComplete:
			need[inPath("", r.ID)] = true
		}
	}
	for _, ent := range ents {
		name := ent.Name()
		id, _, _ := strings.Cut(name, ".")
		if need[name] || len(id) != 2*transport.MessageIDLen || strings.Trim(id, "0123456789abcdef") != "" {
			continue
		}
		switch name[len(id):] {
		case ".up", ".enc", ".enc.part":
			os.Remove(filepath.Join(dir, name))
		}
	}
}

// transfers keeps one transfer of a file running at a time.
type transfers struct {
	mu      sync.Mutex
	running map[string]bool
}

func (t *transfers) start(id []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.running == nil {
		t.running = make(map[string]bool)
	}
	if t.running[string(id)] {
		return false
	}
	t.running[string(id)] = true
	return true
}

func (t *transfers) end(id []byte) {
	t.mu.Lock()
	delete(t.running, string(id))
	t.mu.Unlock()
}

var errTransferRunning = errors.New("that file is being transferred already")

// SendFile sends the file at path to a conversation: it checks the
// server's limits, encrypts the file into the home, uploads it and sends
// the file message. progress (if not nil) is told the upload's progress.
// It returns once the server has stored the message (a one-shot engine)
// or queued it (the interactive engine). Cut off, it leaves the upload to
// ResumeUploads.
func (e *Engine) SendFile(ctx context.Context, to chat.Conversation, path string, progress func(*FileInfo)) (*FileInfo, error) {
	c, err := e.connected()
	if err != nil {
		return nil, err
	}
	rec, err := e.prepareFile(ctx, c, to, path)
	if err != nil {
		return nil, err
	}
	return e.finishUpload(ctx, c, rec, progress)
}

// checkSendTo checks that this account may send to conv and names a peer
// canonically.
func (e *Engine) checkSendTo(to chat.Conversation) (chat.Conversation, error) {
	if to.IsGroup() {
		return to, checkCanSend(e.home, e.prof.User, to, e.opts.Now())
	}
	user, err := transport.CanonicalUser(to.ID())
	if err != nil {
		return to, err
	}
	return chat.Peer(user), e.checkContact(user)
}

// openSource opens the file to send and says what it is.
func openSource(path string) (*os.File, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a file", path)
		if st.IsDir() {
			err = fmt.Errorf("%s is a directory: send the files in it one by one (or an archive of them)", path)
		}
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// prepareFile checks, encrypts and creates the blob, and keeps the
// record that resumes the upload.
func (e *Engine) prepareFile(ctx context.Context, c *Client, to chat.Conversation, path string) (*home.FileRecord, error) {
	to, err := e.checkSendTo(to)
	if err != nil {
		return nil, err
	}
	f, st, err := openSource(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	name := cleanFileName(filepath.Base(abs))
	plain := st.Size()
	if plain > maxFileSize {
		return nil, fmt.Errorf("%s is %s: too large", name, chat.FormatBytes(plain))
	}
	enc := e2ee.AttachmentSize(plain)
	lim, err := c.BlobLimits(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkFileSize(lim, name, plain, enc); err != nil {
		return nil, err
	}
	targets, err := c.recipients(ctx, to)
	if err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%s has no device that can receive files", to)
	}
	dir, err := e.home.FilesDir()
	if err != nil {
		return nil, err
	}
	id := newID(c)
	ref := &FileRef{Plain: plain, Name: name, Type: fileType(name, f)}
	if ref.Key, err = e2ee.NewAttachmentKey(c.rand); err != nil {
		return nil, err
	}
	up := upPath(dir, id)
	if err := encryptFile(f, plain, up, ref, c.rand); err != nil {
		os.Remove(up)
		return nil, fmt.Errorf("encrypting %s: %w", name, err)
	}
	blob, err := c.CreateBlob(ctx, ref.Size, targets)
	if err != nil {
		os.Remove(up)
		return nil, err
	}
	ref.Blob = blob
	rec := &home.FileRecord{ID: id, Conversation: to, From: e.prof.User, Outgoing: true, Ref: transport.Marshal(ref),
		State: home.FileUploading, Time: e.opts.Now().UnixMilli(), Source: abs, SourceSize: plain, SourceMod: st.ModTime().UnixNano()}
	if err := e.home.PutFile(rec); err != nil {
		os.Remove(up)
		return nil, err
	}
	return rec, nil
}

// encryptFile writes the attachment encoding of the plain bytes of f to
// path, synced, and fills ref's digest and size.
func encryptFile(f io.Reader, plain int64, path string, ref *FileRef, rand io.Reader) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	aw, err := e2ee.NewAttachmentWriter(out, ref.Key, rand)
	if err != nil {
		return err
	}
	n, err := io.Copy(aw, io.LimitReader(f, plain+1))
	if err != nil {
		return err
	}
	if n != plain {
		return errors.New("the file changed while it was read")
	}
	if err := aw.Close(); err != nil {
		return err
	}
	ref.Digest, ref.Size = aw.Digest(), aw.Size()
	return out.Sync()
}

// finishUpload uploads what the server lacks of a file being sent, then
// sends its message.
func (e *Engine) finishUpload(ctx context.Context, c *Client, rec *home.FileRecord, progress func(*FileInfo)) (*FileInfo, error) {
	if !e.xfers.start(rec.ID) {
		return nil, errTransferRunning
	}
	defer e.xfers.end(rec.ID)
	rec, err := e.current(rec)
	if err != nil {
		return nil, err
	}
	info, ref, err := fileInfo(rec)
	switch {
	case err != nil:
		return nil, err
	case rec.State == home.FileFailed:
		return info, fmt.Errorf("%s: %s", info.Name, rec.Error)
	case rec.State != home.FileUploading:
		return info, nil // sent meanwhile
	}
	dir, err := e.home.FilesDir()
	if err != nil {
		return nil, err
	}
	up := upPath(dir, rec.ID)
	f, err := os.Open(up)
	if err != nil {
		return info, e.failFile(rec, fmt.Sprintf("its encrypted copy is gone (%v): send it again", errors.Unwrap(err)))
	}
	defer f.Close()
	meter := newMeter(info, e.opts.Now, progress)
	meter.info.Total = ref.Size
	if err := c.UploadBlob(ctx, ref.Blob, f, meter.update); err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.Code == transport.ErrNoSuchBlob {
			os.Remove(up)
			return info, e.failFile(rec, "the server no longer has the upload (it expired): send it again")
		}
		return info, fmt.Errorf("sending %s: %w", ref.Name, err)
	}
	if err := e.sendFileMessage(ctx, c, rec, ref); err != nil {
		return info, err
	}
	f.Close()
	os.Remove(up)
	info.State = home.FileSent
	return info, nil
}

// current is rec as the home holds it now: another transfer of the file
// may have moved it on since rec was read (the transfer loop's list, a
// /save or files get of the same file). Called under the xfers guard.
func (e *Engine) current(rec *home.FileRecord) (*home.FileRecord, error) {
	cur, err := e.home.File(rec.ID)
	if err == nil && cur == nil {
		err = fmt.Errorf("file %x: its record is gone", rec.ID)
	}
	return cur, err
}

// failFile records why a file cannot be had and returns that as an error.
func (e *Engine) failFile(rec *home.FileRecord, why string) error {
	rec.State, rec.Error = home.FileFailed, why
	if err := e.home.PutFile(rec); err != nil {
		return err
	}
	info, _, _ := fileInfo(rec)
	if info != nil {
		e.emit(UIEvent{Type: UIFile, Conversation: rec.Conversation, ID: info.ID, File: info})
		return fmt.Errorf("%s: %s", info.Name, why)
	}
	return errors.New(why)
}

// sendFileMessage sends the file message of an uploaded file: a one-shot
// engine waits for the server to store it (the outbox keeps it until it
// has, FlushOutbox); the interactive engine queues it with its history
// entry, in the commit that marks the file sent.
func (e *Engine) sendFileMessage(ctx context.Context, c *Client, rec *home.FileRecord, ref *FileRef) error {
	content := &Content{Kind: chat.KindFile, SentAt: rec.Time, File: ref}
	if rec.Conversation.IsGroup() {
		content.Group = rec.Conversation.ID()
	}
	hrec := &home.HistoryRecord{ID: rec.ID, From: e.prof.User, Outgoing: true, Kind: chat.KindFile, Text: ref.Name, Time: rec.Time, State: home.StateSending}
	if e.events == nil {
		hrec.State = home.StateStored
		_, err := c.sendContent(ctx, rec.ID, rec.Conversation, content, hrec)
		var ue *UnconfirmedError
		if err == nil || errors.As(err, &ue) {
			// Stored, or in the outbox to be flushed: sent either way.
			rec.State = home.FileSent
			if perr := e.home.PutFile(rec); perr != nil && err == nil {
				err = perr
			}
		}
		return err
	}
	var entry HistoryEntry
	err := e.home.Update(func(tx *home.Tx) error {
		if rec.Conversation.IsGroup() {
			hrec.Recipients = othersIn(tx, rec.Conversation, e.prof.User)
		}
		var err error
		if entry, err = tx.AddHistory(rec.Conversation, hrec, false); err != nil {
			return err
		}
		if err := tx.Enqueue(&home.Queued{ID: rec.ID, To: rec.Conversation, Content: transport.Marshal(content), History: true}); err != nil {
			return err
		}
		rec.State = home.FileSent
		return tx.PutFile(rec)
	})
	if err != nil {
		return err
	}
	e.emit(UIEvent{Type: UIMessage, Conversation: rec.Conversation, Entry: &entry})
	e.poke()
	return nil
}

// ResumeUploads finishes the uploads earlier runs left (cut off: the
// connection lost, the client killed, the server restarted): each from
// the last chunk the server confirmed. started is told each one as it
// resumes; progress its progress.
func (e *Engine) ResumeUploads(ctx context.Context, started func(*FileInfo, int64), progress func(*FileInfo)) ([]*FileInfo, error) {
	c, err := e.connected()
	if err != nil {
		return nil, err
	}
	recs, err := e.home.Files()
	if err != nil {
		return nil, err
	}
	var done []*FileInfo
	var errs []error
	for _, rec := range recs {
		if !rec.Outgoing || rec.State != home.FileUploading {
			continue
		}
		info, ref, err := fileInfo(rec)
		if err != nil {
			continue
		}
		if started != nil {
			var have int64
			if st, err := c.BlobStatus(ctx, ref.Blob); err == nil {
				have = st.Confirmed
			}
			started(info, have)
		}
		info, err = e.finishUpload(ctx, c, rec, progress)
		if err != nil {
			if errors.Is(err, errTransferRunning) {
				continue
			}
			errs = append(errs, err)
			var ce *ConnError
			if errors.As(err, &ce) || ctx.Err() != nil {
				break
			}
			continue
		}
		done = append(done, info)
	}
	return done, errors.Join(errs...)
}

// FetchFile fetches a received file into the home, resuming a fetch cut
// off, and checks it: its size, its digest and every chunk. Only then is
// it complete, and the server told it can delete its copy for this
// device. A file that does not check out is failed for good (Error says
// why): fetching it again would give the same bytes.
func (e *Engine) FetchFile(ctx context.Context, id string, progress func(*FileInfo)) (*FileInfo, error) {
	rec, err := e.home.FindFile(id)
	if err != nil {
		return nil, err
	}
	c, err := e.connected()
	if err != nil {
		if rec.State == home.FileComplete {
			info, _, err := fileInfo(rec)
			return info, err
		}
		return nil, err
	}
	return e.fetch(ctx, c, rec, progress)
}

func (e *Engine) fetch(ctx context.Context, c *Client, rec *home.FileRecord, progress func(*FileInfo)) (*FileInfo, error) {
	info, ref, err := fileInfo(rec)
	if err != nil {
		return nil, err
	}
	if rec.State == home.FileOffered {
		if !e.xfers.start(rec.ID) {
			return info, errTransferRunning
		}
		defer e.xfers.end(rec.ID)
		if rec, err = e.current(rec); err != nil {
			return info, err
		}
		info.State, info.Error = rec.State, rec.Error
	}
	switch {
	case rec.State == home.FileComplete:
		if !rec.Fetched {
			e.tellFetched(ctx, c, rec, ref)
		}
		return info, nil
	case rec.State == home.FileFailed:
		return info, fmt.Errorf("%s cannot be had: %s", ref.Name, rec.Error)
	case rec.Source != "":
		return info, fmt.Errorf("you sent %s (from %s); this device keeps no copy of it", ref.Name, rec.Source)
	}
	dir, err := e.home.FilesDir()
	if err != nil {
		return info, err
	}
	path := inPath(dir, rec.ID)
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return info, err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return info, err
	}
	if have > ref.Size {
		// Never written by this code: start again.
		if err := f.Truncate(0); err != nil {
			return info, err
		}
		have, _ = f.Seek(0, io.SeekStart)
	}
	meter := newMeter(info, e.opts.Now, progress)
	if have < ref.Size {
		// No more than the message said: a server cannot fill the disk.
		n, err := c.Download(ctx, ref.Blob, &limitWriter{w: f, n: ref.Size - have}, have, meter.update)
		var te *transport.Error
		switch {
		case errors.As(err, &te) && te.Code == transport.ErrNoSuchBlob:
			f.Close()
			os.Remove(part)
			return info, e.failFile(rec, "the server no longer has it (it expired, or the sender's upload never finished)")
		case errors.As(err, &te) && te.Code == transport.ErrUnauthorized:
			// For good: a blob's recipients are fixed when it is created.
			f.Close()
			os.Remove(part)
			return info, e.failFile(rec, "the sender's upload was not sent to this device (it was made for other devices)")
		case err != nil && n != 0 && n != ref.Size:
			f.Close()
			os.Remove(part)
			return info, e.failFile(rec, fmt.Sprintf("the server's copy is %d bytes, not the %d the sender sent: altered on the server; not kept", n, ref.Size))
		case err != nil:
			return info, fmt.Errorf("fetching %s: %w", ref.Name, err)
		case n != ref.Size:
			f.Close()
			os.Remove(part)
			return info, e.failFile(rec, fmt.Sprintf("the server's copy is %d bytes, not the %d the sender sent: altered on the server; not kept", n, ref.Size))
		}
	}
	if err := f.Sync(); err != nil {
		return info, err
	}
	if err := checkFile(f, ref); err != nil {
		f.Close()
		os.Remove(part)
		return info, e.failFile(rec, err.Error()+"; not kept")
	}
	f.Close()
	if err := os.Rename(part, path); err != nil {
		return info, err
	}
	rec.State, rec.Error = home.FileComplete, ""
	if err := e.home.PutFile(rec); err != nil {
		return info, err
	}
	info.State, info.Error = home.FileComplete, ""
	e.emit(UIEvent{Type: UIFile, Conversation: rec.Conversation, ID: info.ID, File: info})
	e.tellFetched(ctx, c, rec, ref)
	return info, nil
}

// checkFile checks a fetched encoding: its digest, then every chunk.
func checkFile(f *os.File, ref *FileRef) error {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, ref.Size)); err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), ref.Digest) != 1 {
		return errors.New("it was altered on the way: its digest is not the one the sender sent")
	}
	ar, err := e2ee.NewAttachmentReader(io.NewSectionReader(f, 0, ref.Size), ref.Key, nil)
	if err == nil {
		var n int64
		n, err = io.Copy(io.Discard, ar)
		if err == nil && n != ref.Plain {
			err = fmt.Errorf("it decrypts to %d bytes, not %d", n, ref.Plain)
		}
	}
	if err != nil {
		return fmt.Errorf("it does not decrypt (%v)", err)
	}
	return nil
}

// tellFetched tells the server this device has the file; tried again
// later (ResumeFetches) if it cannot be told now.
func (e *Engine) tellFetched(ctx context.Context, c *Client, rec *home.FileRecord, ref *FileRef) {
	err := c.BlobDone(ctx, ref.Blob)
	var te *transport.Error
	if err == nil || (errors.As(err, &te) && te.Code == transport.ErrNoSuchBlob) {
		rec.Fetched = true
		e.home.PutFile(rec)
	}
}

// SaveFile writes a fetched file in the clear to path (a directory: the
// file's name in it; "": its name in the current directory), without
// replacing a file there: "name (1).ext" instead. It returns the path
// written. The file is decrypted into a temporary file beside it and
// renamed once every chunk checked.
func (e *Engine) SaveFile(id, path string) (string, error) {
	rec, err := e.home.FindFile(id)
	if err != nil {
		return "", err
	}
	info, ref, err := fileInfo(rec)
	if err != nil {
		return "", err
	}
	if rec.State != home.FileComplete {
		switch {
		case rec.State == home.FileFailed:
			return "", fmt.Errorf("%s cannot be had: %s", ref.Name, rec.Error)
		case rec.Source != "":
			return "", fmt.Errorf("you sent %s (from %s); this device keeps no copy of it", ref.Name, rec.Source)
		}
		return "", fmt.Errorf("%s is not fetched yet", info.Name)
	}
	dir, err := e.home.FilesDir()
	if err != nil {
		return "", err
	}
	target, err := savePath(path, visibleName(ref.Name))
	if err != nil {
		return "", err
	}
	in, err := os.Open(inPath(dir, rec.ID))
	if err != nil {
		return "", e.failFile(rec, "its fetched copy is gone from the home")
	}
	defer in.Close()
	ar, err := e2ee.NewAttachmentReader(in, ref.Key, ref.Digest)
	if err != nil {
		return "", err
	}
	tmp, mode, err := saveTemp(filepath.Dir(target))
	if err != nil {
		return "", fmt.Errorf("cannot write in %s: %w", filepath.Dir(target), errors.Unwrap(err))
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := io.Copy(tmp, ar); err != nil {
		if errors.Is(err, e2ee.ErrAttachment) {
			return "", e.failFile(rec, fmt.Sprintf("its fetched copy is damaged (%v)", err))
		}
		return "", fmt.Errorf("saving %s: %w", ref.Name, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	// A name taken meanwhile is not replaced: link fails if it exists.
	for i := 1; ; i++ {
		err := os.Link(tmp.Name(), target)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || i > 1000 {
			return "", fmt.Errorf("saving %s: %w", ref.Name, err)
		}
		target = numbered(target, i)
	}
	rec.Saved = target
	e.home.PutFile(rec)
	return target, nil
}

// saveTemp creates SaveFile's temporary file in dir, private (0600)
// while the plaintext is written, and returns the permissions the saved
// file takes: 0644 less the user's umask, as the system gives a new file
// (read from the file as created, since a process cannot read its umask
// without changing it).
func saveTemp(dir string) (*os.File, os.FileMode, error) {
	var b [8]byte
	for range 100 {
		rand.Read(b[:])
		f, err := os.OpenFile(filepath.Join(dir, ".securechat-save-"+hex.EncodeToString(b[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err == nil {
			err = f.Chmod(0o600)
		}
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, 0, err
		}
		return f, st.Mode().Perm(), nil
	}
	return nil, 0, &os.PathError{Op: "create", Path: dir, Err: os.ErrExist}
}

// visibleName is the name a file is saved under in a directory: its
// name without leading dots, each made "_", so that a sender cannot add a
// hidden file (a shell's .bash_profile in the home directory files get is
// run from) that the user would not see in a listing.
func visibleName(name string) string {
	n := len(name) - len(strings.TrimLeft(name, "."))
	return strings.Repeat("_", n) + name[n:]
}

// savePath is where SaveFile writes name given path.
func savePath(path, name string) (string, error) {
	if path == "" {
		path = "."
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, name)
	} else if strings.HasSuffix(path, string(filepath.Separator)) {
		return "", fmt.Errorf("no directory %s", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(filepath.Dir(abs)); err != nil || !st.IsDir() {
		return "", fmt.Errorf("no directory %s", filepath.Dir(abs))
	}
	return abs, nil
}

// numbered is path with " (i)" before its extension.
func numbered(path string, i int) string {
	base := strings.TrimSuffix(path, fmt.Sprintf(" (%d)", i-1)+filepath.Ext(path))
	if i == 1 {
		base = strings.TrimSuffix(path, filepath.Ext(path))
	}
	ext := filepath.Ext(path)
	return fmt.Sprintf("%s (%d)%s", base, i, ext)
}

// autoFetchBudget bounds the received files resumeFetches keeps fetched
// and not saved (their encodings in the home): a contact sending file
// after file cannot fill the disk; past it, a file waits for the user to
// ask (/save, files get).
const autoFetchBudget = 1 << 30

// ResumeFetches fetches the received files not fetched whole yet (the
// interactive engine: at each connection and as file messages arrive),
// one at a time, within autoFetchBudget, and tells the server of files
// fetched before it could be told. Files from a sender whose identity key
// is not accepted wait for the user to ask.
func (e *Engine) resumeFetches(ctx context.Context, c *Client) {
	recs, err := e.home.Files()
	if err != nil {
		return
	}
	budget := e.autoFetch
	if budget == 0 {
		budget = autoFetchBudget
	}
	var held int64 // fetched, not saved
	for _, rec := range recs {
		if _, ref, err := fileInfo(rec); err == nil && rec.State == home.FileComplete && rec.Saved == "" {
			held += ref.Size
		}
	}
	for _, rec := range recs {
		if ctx.Err() != nil || e.client() != c {
			return
		}
		switch {
		case rec.State == home.FileComplete && !rec.Fetched:
			if _, ref, err := fileInfo(rec); err == nil {
				e.tellFetched(ctx, c, rec, ref)
			}
		case rec.State == home.FileOffered && !rec.Unverified:
			_, ref, err := fileInfo(rec)
			if err != nil || held+ref.Size > budget {
				continue
			}
			if fi, err := e.fetch(ctx, c, rec, e.emitProgress); err == nil && fi.State == home.FileComplete {
				held += ref.Size
			}
		}
	}
}

// emitProgress reports a transfer's progress to the front end.
func (e *Engine) emitProgress(fi *FileInfo) {
	e.emit(UIEvent{Type: UIFile, Conversation: fi.Conversation, ID: fi.ID, File: fi})
}

// transferLoop runs the interactive engine's transfers: at each
// connection and each kick, the uploads left and then the fetches.
func (e *Engine) transferLoop() {
	for {
		select {
		case <-e.xferKick:
		case <-e.ctx.Done():
			return
		}
		c := e.client()
		if c == nil {
			continue
		}
		e.ResumeUploads(e.ctx, nil, e.emitProgress)
		e.resumeFetches(e.ctx, c)
	}
}

// kickTransfers wakes the transfer loop.
func (e *Engine) kickTransfers() {
	if e.xferKick == nil {
		return
	}
	select {
	case e.xferKick <- struct{}{}:
	default:
	}
}

// StartFile sends a file in the background (the terminal client's /file):
// what can be checked here is (the path, the conversation); the rest is
// reported as UIFile events, an error as one whose File.State is failed
// or whose Err is set.
func (e *Engine) StartFile(to chat.Conversation, path string) error {
	to, err := e.checkSendTo(to)
	if err != nil {
		return err
	}
	f, _, err := openSource(path)
	if err != nil {
		return err
	}
	f.Close()
	c, err := e.connected()
	if err != nil {
		return errors.New("not connected: send the file once the connection is back")
	}
	e.wg.Go(func() {
		rec, err := e.prepareFile(e.ctx, c, to, path)
		if err == nil {
			_, err = e.finishUpload(e.ctx, c, rec, e.emitProgress)
		}
		if err != nil && e.ctx.Err() == nil {
			fi := &FileInfo{Conversation: to, Name: cleanFileName(filepath.Base(path)), Outgoing: true}
			if rec != nil {
				if i, _, ierr := fileInfo(rec); ierr == nil {
					fi = i
				}
			}
			e.emit(UIEvent{Type: UIFile, Conversation: to, ID: fi.ID, File: fi, Err: err})
			e.kickTransfers() // a cut upload resumes at the next connection
		}
	})
	return nil
}

// PendingUpload finds an upload an earlier run left of the file at path
// to conv (the same file: its size and time unchanged); nil if none.
func (e *Engine) PendingUpload(conv chat.Conversation, path string) (*FileInfo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if !conv.IsGroup() {
		if u, err := transport.CanonicalUser(conv.ID()); err == nil {
			conv = chat.Peer(u)
		}
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, nil // SendFile says what is wrong with it
	}
	recs, err := e.home.Files()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.State == home.FileUploading && r.Source == abs && r.Conversation == conv && r.SourceSize == st.Size() && r.SourceMod == st.ModTime().UnixNano() {
			fi, _, err := fileInfo(r)
			return fi, err
		}
	}
	return nil, nil
}
