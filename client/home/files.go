package home

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Files sent and received (docs/protocol.md §8.4, §10): one record per
// file message, keyed by the message's id, and the files' ciphertext in
// the directory files/ beside client.db. Nothing in either is plaintext:
// the records are sealed, and the ciphertext is the attachment encoding
// (§9.5), whose key is only in the sealed record.

var bucketFiles = []byte("files")

// FileState is where a file stands.
type FileState uint8

const (
	// FileUploading: this device encrypted it and is uploading it; the
	// message goes once the upload is complete.
	FileUploading FileState = 1
	// FileSent: uploaded, and the message queued or sent.
	FileSent FileState = 2
	// FileOffered: a message offered it; not fetched (or not whole) yet.
	FileOffered FileState = 3
	// FileComplete: fetched whole, and its digest and every chunk checked.
	FileComplete FileState = 4
	// FileFailed: it cannot be had: altered on the way, gone from the
	// server, or refused (Error says why).
	FileFailed FileState = 5
)

func (s FileState) String() string {
	switch s {
	case FileUploading:
		return "uploading"
	case FileSent:
		return "sent"
	case FileOffered:
		return "offered"
	case FileComplete:
		return "complete"
	case FileFailed:
		return "failed"
	}
	return fmt.Sprintf("state%d", uint8(s))
}

// FileRecord is what the home keeps of one file.
type FileRecord struct {
	ID           []byte // the file message's id
	Conversation chat.Conversation
	From         string
	Outgoing     bool
	Ref          []byte // the message's file reference (the client's FileRef, marshalled): blob, key, digest, sizes, name, type
	State        FileState
	Error        string
	Time         int64 // unix ms, the message's sent time
	// Source is the path the file was sent from, and SourceSize and
	// SourceMod (unix ns) what it was then: an upload cut off resumes
	// only from the same file (outgoing only).
	Source     string
	SourceSize int64
	SourceMod  int64
	// Saved is where the file was last saved in the clear.
	Saved string
	// Fetched: the server was told this device has it (BlobDone).
	Fetched bool
	// Unverified: the message came with an identity key not accepted for
	// From; the file is fetched only when the user asks.
	Unverified bool
}

func (r *FileRecord) MarshalFields(e *transport.Encoder) {
	e.BytesField(1, r.ID)
	if !r.Conversation.IsZero() {
		e.String(2, convName(r.Conversation))
	}
	e.String(3, r.From)
	e.Bool(4, r.Outgoing)
	e.BytesField(5, r.Ref)
	e.Uint(6, uint64(r.State))
	e.String(7, r.Error)
	e.Int(8, r.Time)
	e.String(9, r.Source)
	e.Int(10, r.SourceSize)
	e.Int(11, r.SourceMod)
	e.String(12, r.Saved)
	e.Bool(13, r.Fetched)
	e.Bool(14, r.Unverified)
}

// maxFileRef bounds a stored file reference.
const maxFileRef = 1024

// maxPath bounds a stored path.
const maxPath = 4096

func (r *FileRecord) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			r.ID, err = f.Fixed(transport.MessageIDLen)
		case 2:
			var s string
			if s, err = f.String(maxConvName); err == nil {
				r.Conversation, err = parseConvName(s)
			}
		case 3:
			r.From, err = f.String(transport.MaxUserName)
		case 4:
			r.Outgoing, err = f.Bool()
		case 5:
			r.Ref, err = f.Bytes(maxFileRef)
		case 6:
			var v uint64
			if v, err = f.Uint(); err == nil && (v < uint64(FileUploading) || v > uint64(FileFailed)) {
				return fmt.Errorf("file record in state %d", v)
			}
			r.State = FileState(v)
		case 7:
			r.Error, err = f.String(transport.MaxText)
		case 8:
			r.Time, err = f.Int()
		case 9:
			r.Source, err = f.String(maxPath)
		case 10:
			r.SourceSize, err = f.Int()
		case 11:
			r.SourceMod, err = f.Int()
		case 12:
			r.Saved, err = f.String(maxPath)
		case 13:
			r.Fetched, err = f.Bool()
		case 14:
			r.Unverified, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
}

// PutFile keeps a file's record.
func (t *Tx) PutFile(r *FileRecord) error {
	if len(r.ID) != transport.MessageIDLen {
		return errors.New("a file record without a message id")
	}
	return t.put(bucketFiles, r.ID, transport.Marshal(r))
}

// File reads the record of the file message id; nil if there is none.
func (t *Tx) File(id []byte) (*FileRecord, error) {
	v, err := t.get(bucketFiles, id)
	if err != nil || v == nil {
		return nil, err
	}
	r := new(FileRecord)
	if err := transport.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("file record %x: %w", id, err)
	}
	return r, nil
}

// PutFile: see Tx.PutFile.
func (h *Home) PutFile(r *FileRecord) error {
	return h.Update(func(tx *Tx) error { return tx.PutFile(r) })
}

// File: see Tx.File.
func (h *Home) File(id []byte) (*FileRecord, error) {
	var r *FileRecord
	err := h.View(func(tx *Tx) (err error) {
		r, err = tx.File(id)
		return err
	})
	return r, err
}

// Files lists every file record, oldest first.
func (h *Home) Files() ([]*FileRecord, error) {
	var out []*FileRecord
	err := h.View(func(tx *Tx) error {
		return tx.tx.Bucket(bucketFiles).ForEach(func(k, _ []byte) error {
			r, err := tx.File(k)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	slices.SortStableFunc(out, func(a, b *FileRecord) int {
		if a.Time != b.Time {
			return int(min(max(a.Time-b.Time, -1), 1))
		}
		return bytes.Compare(a.ID, b.ID)
	})
	return out, err
}

// FindFile finds the file a user names by the start of its id (at least
// 4 hex digits), as `files list` shows it.
func (h *Home) FindFile(prefix string) (*FileRecord, error) {
	p := strings.ToLower(strings.TrimSpace(prefix))
	if len(p) < 4 || strings.Trim(p, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("%q is not a file id: give 4 or more of the hex digits `files list` shows", prefix)
	}
	files, err := h.Files()
	if err != nil {
		return nil, err
	}
	var found *FileRecord
	for _, r := range files {
		if strings.HasPrefix(hex.EncodeToString(r.ID), p) {
			if found != nil {
				return nil, fmt.Errorf("more than one file has an id starting %s: give more digits", p)
			}
			found = r
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no file has an id starting %s (see securechat files list)", p)
	}
	return found, nil
}

// FilesDir is the directory of the files' ciphertext, created (0700) if
// it is not there.
func (h *Home) FilesDir() (string, error) {
	dir := filepath.Join(h.Dir, "files")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("the home's files directory: %w", err)
	}
	return dir, nil
}
