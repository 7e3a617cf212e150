package home

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// The history archive (docs/protocol.md §10.1): what a device hands a new
// device of its account when it links it (issue 11 point 4) — the
// conversations and their messages (all, or those since a time), in their
// order, the contacts' trust, the groups' logs and the front-end settings.
// It is plaintext here; the linking device encrypts it as an attachment
// (e2ee, protocol.md §9.5) under a key that travels only in the sealed link
// message (§9.8), so the server sees its size and nothing else.
//
//	archive = "SCHA" ‖ u8 1 ‖ records ‖ end record
//	record  = u8 kind ‖ uvarint len ‖ body (fields, §3.2)
//
// Kinds: 1 message (1 conversation, 2 HistoryRecord), 2 contact (1 user, 2
// Contact), 3 group (1 group conversation, 2 log, 3 left), 4 settings (1
// typing, 2 receipts), 0 end (1 messages, 2 conversations), last. Messages
// come conversation by conversation, the least recently active first, each
// oldest first, so that adding them in the order read gives the same
// conversations in the same order.

const (
	archiveMagic   = "SCHA"
	archiveVersion = 1
	// maxArchiveRecord bounds one record: a group's log is the largest.
	maxArchiveRecord = MaxGroupLog + 64<<10
	// archiveBatch is how many records one import commit takes, and
	// archiveBatchBytes how many bytes of them at most (a batch of group
	// logs holds no more in memory than this and one record).
	archiveBatch      = 512
	archiveBatchBytes = 8 << 20
)

const (
	arEnd      = 0
	arMessage  = 1
	arContact  = 2
	arGroup    = 3
	arSettings = 4
)

// ArchiveStats counts what an archive holds, or what an import took.
type ArchiveStats struct {
	Conversations int
	Messages      int
	Contacts      int
	Groups        int
	Skipped       int // messages already in the home (import)
}

// ExportOptions chooses what an archive holds.
type ExportOptions struct {
	// Since: only messages sent at or after it (the zero time: all).
	Since time.Time
}

type archiveMessage struct {
	Conv string
	Rec  HistoryRecord
}

func (m *archiveMessage) MarshalFields(e *transport.Encoder) {
	e.String(1, m.Conv)
	e.Message(2, &m.Rec)
}

func (m *archiveMessage) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.Conv, err = f.String(maxConvName)
		case 2:
			err = f.Message(&m.Rec)
		default:
			return f.Unknown()
		}
		return err
	})
}

type archiveContact struct {
	User    string
	Contact Contact
}

func (m *archiveContact) MarshalFields(e *transport.Encoder) {
	e.String(1, m.User)
	e.Message(2, &m.Contact)
}

func (m *archiveContact) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.User, err = f.String(transport.MaxUserName)
		case 2:
			err = f.Message(&m.Contact)
		default:
			return f.Unknown()
		}
		return err
	})
}

type archiveGroup struct {
	Group string
	Log   []byte
	Left  bool
}

func (m *archiveGroup) MarshalFields(e *transport.Encoder) {
	e.String(1, m.Group)
	e.BytesField(2, m.Log)
	e.Bool(3, m.Left)
}

func (m *archiveGroup) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.Group, err = f.String(maxConvName)
		case 2:
			m.Log, err = f.Bytes(MaxGroupLog)
		case 3:
			m.Left, err = f.Bool()
		default:
			return f.Unknown()
		}
		return err
	})
}

type archiveSettings struct{ Settings }

func (m *archiveSettings) MarshalFields(e *transport.Encoder) {
	e.Bool(1, !m.SendTyping) // stored as "off", so that the default is on
	e.Bool(2, !m.SendReceipts)
}

func (m *archiveSettings) UnmarshalFields(d *transport.Decoder) error {
	m.SendTyping, m.SendReceipts = true, true
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		var off bool
		switch f.Num {
		case 1:
			off, err = f.Bool()
			m.SendTyping = !off
		case 2:
			off, err = f.Bool()
			m.SendReceipts = !off
		default:
			return f.Unknown()
		}
		return err
	})
}

type archiveEnd struct{ Messages, Conversations uint64 }

func (m *archiveEnd) MarshalFields(e *transport.Encoder) {
	e.Uint(1, m.Messages)
	e.Uint(2, m.Conversations)
}

func (m *archiveEnd) UnmarshalFields(d *transport.Decoder) error {
	return transport.ForEachField(d, func(f transport.Field) (err error) {
		switch f.Num {
		case 1:
			m.Messages, err = f.Uint()
		case 2:
			m.Conversations, err = f.Uint()
		default:
			return f.Unknown()
		}
		return err
	})
}

type archiveWriter struct {
	w   *bufio.Writer
	err error
}

func (a *archiveWriter) record(kind byte, m transport.Marshaler) {
	if a.err != nil {
		return
	}
	body := transport.Marshal(m)
	a.w.WriteByte(kind)
	var n [binary.MaxVarintLen64]byte
	a.w.Write(n[:binary.PutUvarint(n[:], uint64(len(body)))])
	_, a.err = a.w.Write(body)
}

// ExportArchive writes the home's history archive to w, in one read
// transaction.
func (h *Home) ExportArchive(w io.Writer, o ExportOptions) (ArchiveStats, error) {
	var st ArchiveStats
	aw := &archiveWriter{w: bufio.NewWriterSize(w, 64<<10)}
	aw.w.WriteString(archiveMagic)
	aw.w.WriteByte(archiveVersion)
	since := int64(0)
	if !o.Since.IsZero() {
		since = o.Since.UnixMilli()
	}
	err := h.View(func(tx *Tx) error {
		var convs []convRecord
		err := tx.tx.Bucket(bucketConvs).ForEach(func(k, sealed []byte) error {
			v, err := h.seal.open(bucketConvs, k, sealed)
			if err != nil {
				return err
			}
			var cr convRecord
			if err := transport.Unmarshal(v, &cr); err != nil {
				return err
			}
			convs = append(convs, cr)
			return nil
		})
		if err != nil {
			return err
		}
		slices.SortStableFunc(convs, func(a, b convRecord) int {
			return cmp.Or(cmp.Compare(a.LastActivity, b.LastActivity), cmp.Compare(a.Name, b.Name))
		})
		peers := make(map[string]bool)
		for _, cr := range convs {
			conv, err := parseConvName(cr.Name)
			if err != nil {
				return err
			}
			if !conv.IsGroup() {
				peers[conv.ID()] = true
			}
			n := 0
			prefix := h.historyPrefix(cr.Name)
			c := tx.tx.Bucket(bucketHistory).Cursor()
			for k, sealed := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, sealed = c.Next() {
				v, err := h.seal.open(bucketHistory, k, sealed)
				if err != nil {
					return err
				}
				m := &archiveMessage{Conv: cr.Name}
				if err := transport.Unmarshal(v, &m.Rec); err != nil {
					return err
				}
				if m.Rec.Time < since {
					continue
				}
				if m.Rec.State == StateSending {
					// The exporting device is still sending it.
					m.Rec.State = StateStored
				}
				aw.record(arMessage, m)
				n++
			}
			if n > 0 {
				st.Conversations++
				st.Messages += n
			}
		}
		groups, err := tx.Groups()
		if err != nil {
			return err
		}
		for _, g := range groups {
			aw.record(arGroup, &archiveGroup{Group: convName(g.Group), Log: g.Log, Left: g.Left})
			st.Groups++
			if l, err := e2ee.ParseStoredGroupLog(g.Log, e2ee.MaxGroupMembers); err == nil {
				for _, m := range l.State().Members {
					peers[m.User] = true
				}
			}
		}
		users := make([]string, 0, len(peers))
		for u := range peers {
			users = append(users, u)
		}
		slices.Sort(users)
		for _, u := range users {
			ct, err := tx.Contact(u)
			if err != nil {
				return err
			}
			if ct != nil {
				aw.record(arContact, &archiveContact{User: u, Contact: *ct})
				st.Contacts++
			}
		}
		aw.record(arSettings, &archiveSettings{tx.Settings()})
		aw.record(arEnd, &archiveEnd{Messages: uint64(st.Messages), Conversations: uint64(st.Conversations)})
		return nil
	})
	if err == nil {
		err = aw.err
	}
	if err == nil {
		err = aw.w.Flush()
	}
	return st, err
}

// ErrArchive reports an archive that is not one, or is damaged or cut
// short; what was imported before the damage stays.
var ErrArchive = errors.New("not a complete history archive")

// ImportArchive adds an archive's history to the home, in the archive's
// order, a batch of records per commit: messages already here are
// skipped, contacts and groups this home has are kept as they are, the
// settings taken. An archive cut short or damaged stops the import with
// ErrArchive; what came before stays.
func (h *Home) ImportArchive(r io.Reader) (ArchiveStats, error) {
	var st ArchiveStats
	br := bufio.NewReaderSize(r, 64<<10)
	head := make([]byte, len(archiveMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil || string(head[:4]) != archiveMagic {
		return st, fmt.Errorf("%w: no archive header", ErrArchive)
	}
	if head[4] != archiveVersion {
		return st, fmt.Errorf("%w: version %d", ErrArchive, head[4])
	}
	type rec struct {
		kind byte
		body []byte
	}
	var batch []rec
	batchBytes := 0
	convs := make(map[string]bool)
	apply := func() error {
		before := st
		err := h.Update(func(tx *Tx) error {
			st = before // counted again if the commit is retried
			for _, r := range batch {
				if err := h.importRecord(tx, r.kind, r.body, &st, convs); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			st = before
		}
		batch, batchBytes = batch[:0], 0
		return err
	}
	for {
		kind, err := br.ReadByte()
		if err != nil {
			apply()
			return st, fmt.Errorf("%w: it ends without its last record", ErrArchive)
		}
		n, err := binary.ReadUvarint(br)
		if err != nil || n > maxArchiveRecord {
			apply()
			return st, fmt.Errorf("%w: a record of %d bytes", ErrArchive, n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			apply()
			return st, fmt.Errorf("%w: it ends inside a record", ErrArchive)
		}
		if kind == arEnd {
			var end archiveEnd
			if err := transport.Unmarshal(body, &end); err != nil {
				return st, fmt.Errorf("%w: %v", ErrArchive, err)
			}
			if err := apply(); err != nil {
				return st, err
			}
			st.Conversations = len(convs)
			if end.Messages != uint64(st.Messages+st.Skipped) {
				return st, fmt.Errorf("%w: it says %d messages and holds %d", ErrArchive, end.Messages, st.Messages+st.Skipped)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				return st, fmt.Errorf("%w: bytes after its last record", ErrArchive)
			}
			return st, nil
		}
		if kind != arMessage && kind != arContact && kind != arGroup && kind != arSettings {
			apply()
			return st, fmt.Errorf("%w: a record of kind %d", ErrArchive, kind)
		}
		batch = append(batch, rec{kind, body})
		if batchBytes += len(body); len(batch) >= archiveBatch || batchBytes >= archiveBatchBytes {
			if err := apply(); err != nil {
				return st, err
			}
		}
	}
}

// importRecord adds one record of an archive in tx.
func (h *Home) importRecord(tx *Tx, kind byte, body []byte, st *ArchiveStats, convs map[string]bool) error {
	bad := func(err error) error { return fmt.Errorf("%w: %v", ErrArchive, err) }
	switch kind {
	case arMessage:
		var m archiveMessage
		if err := transport.Unmarshal(body, &m); err != nil {
			return bad(err)
		}
		conv, err := parseConvName(m.Conv)
		if err != nil || len(m.Rec.ID) != transport.MessageIDLen {
			return bad(fmt.Errorf("a message of %q", m.Conv))
		}
		if in, err := tx.InHistory(m.Rec.ID); err != nil || in {
			if in {
				st.Skipped++
			}
			return err
		}
		if _, err := tx.AddHistory(conv, &m.Rec, false); err != nil {
			return err
		}
		st.Messages++
		convs[m.Conv] = true
	case arContact:
		var c archiveContact
		if err := transport.Unmarshal(body, &c); err != nil {
			return bad(err)
		}
		if _, err := transport.CanonicalUser(c.User); err != nil {
			return bad(err)
		}
		if old, err := tx.Contact(c.User); err != nil || old != nil {
			return err
		}
		st.Contacts++
		return tx.PutContact(c.User, &c.Contact)
	case arGroup:
		var g archiveGroup
		if err := transport.Unmarshal(body, &g); err != nil {
			return bad(err)
		}
		conv, err := parseConvName(g.Group)
		if err != nil || !conv.IsGroup() {
			return bad(fmt.Errorf("a group record of %q", g.Group))
		}
		if _, err := e2ee.ParseStoredGroupLog(g.Log, e2ee.MaxGroupMembers); err != nil {
			return bad(err)
		}
		if old, err := tx.Group(conv); err != nil || old != nil {
			return err
		}
		st.Groups++
		// A new chain is made for this device's first message: it holds
		// none of the exporting device's sending state.
		return tx.PutGroup(&GroupRecord{Group: conv, Log: g.Log, Left: g.Left, Rotate: true})
	case arSettings:
		var s archiveSettings
		if err := transport.Unmarshal(body, &s); err != nil {
			return bad(err)
		}
		return tx.PutSettings(s.Settings)
	default:
		return bad(fmt.Errorf("a record of kind %d", kind))
	}
	return nil
}
