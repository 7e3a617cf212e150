package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/transport"
)

// Groups (docs/protocol.md §9.7). Who is in a group is stated by the
// members: every change is signed by the acting member and travels inside
// the pairwise sessions as a KindGroupChange content; each client keeps
// the group's log (e2ee.GroupLog) in its home and derives the members
// from it, never from the server. A message to a group goes, by the
// fan-out rule (docs/design.md §10), to every member's devices and this
// account's other devices, each over its pairwise session.

// groupMaxMembers is the size every client's log allows. It must be the
// same for every member, or members could disagree on which addition fits;
// the server's group_max_members caps what it carries.
const groupMaxMembers = e2ee.MaxGroupMembers

// GroupMemberInfo is one member as this home sees them.
type GroupMemberInfo struct {
	User       string
	Role       string    // owner, admin or member
	MutedUntil time.Time // zero: not muted
	// KeyTrusted: the identity key the group vouches for is the one this
	// home trusts for User (false: another one, or none known yet).
	KeyTrusted bool
	// KeyDiffers: this home holds another identity key for User (trusted
	// or pending) than the group names: one of the two is not User's.
	KeyDiffers bool
	Verified   bool // this home compared User's safety number
	// Devices are User's devices that hold this device's current sending
	// chain in the group (protocol.md §8.3): those that read what this
	// device sends there. None before this device's first message, or
	// since its chain was replaced.
	Devices []uint32
}

// GroupInfo is a group as this home sees it.
type GroupInfo struct {
	Conversation chat.Conversation
	ID           string // hex
	Title        string
	Members      []GroupMemberInfo
	Left         bool // this account left or was removed
}

// Role is user's role in the group; "" if not a member.
func (g *GroupInfo) Role(user string) string {
	for _, m := range g.Members {
		if m.User == user {
			return m.Role
		}
	}
	return ""
}

// groupConv is a group's conversation.
func groupConv(id [e2ee.GroupIDSize]byte) chat.Conversation {
	return chat.Group(hex.EncodeToString(id[:]))
}

// validGroupID reports whether s is a group id as conversations name it:
// 32 lowercase hex digits.
func validGroupID(s string) bool {
	if len(s) != 2*e2ee.GroupIDSize {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// parseLog reads a group's log as this home kept it: a log kept before
// logs carried their creation (version 1) is read too, so that an upgrade
// keeps the home's groups (protocol.md §9.7). A log from anyone else is
// read with e2ee.ParseGroupLog, which requires the creation.
func parseLog(rec *home.GroupRecord) (*e2ee.GroupLog, error) {
	l, err := e2ee.ParseStoredGroupLog(rec.Log, groupMaxMembers)
	if err != nil {
		return nil, fmt.Errorf("group %s: the stored log is damaged: %w", rec.Group.ID(), err)
	}
	return l, nil
}

// Groups lists the groups of a home, titles in order.
func Groups(h *home.Home) ([]GroupInfo, error) {
	recs, err := h.Groups()
	if err != nil {
		return nil, err
	}
	var out []GroupInfo
	for _, rec := range recs {
		info, err := groupInfo(h, rec)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	slices.SortStableFunc(out, func(a, b GroupInfo) int { return strings.Compare(a.Title, b.Title) })
	return out, nil
}

func groupInfo(h *home.Home, rec *home.GroupRecord) (GroupInfo, error) {
	l, err := parseLog(rec)
	if err != nil {
		return GroupInfo{}, err
	}
	st := l.State()
	info := GroupInfo{Conversation: rec.Group, ID: rec.Group.ID(), Title: st.Title, Left: rec.Left}
	for _, m := range st.Members {
		mi := GroupMemberInfo{User: m.User, Role: m.Role.String()}
		if m.MutedUntil != 0 {
			mi.MutedUntil = time.UnixMilli(m.MutedUntil)
		}
		if ct, err := h.Contact(m.User); err == nil && ct != nil {
			mi.KeyTrusted = bytes.Equal(ct.Identity, m.Identity.Bytes()) && ct.Pending == nil
			mi.KeyDiffers = !bytes.Equal(ct.Identity, m.Identity.Bytes()) && (ct.Pending == nil || !bytes.Equal(ct.Pending, m.Identity.Bytes()))
			mi.Verified = mi.KeyTrusted && ct.Verified
		}
		for _, k := range rec.Holders {
			if k.User == m.User && !slices.Contains(mi.Devices, k.Device) {
				mi.Devices = append(mi.Devices, k.Device)
			}
		}
		slices.Sort(mi.Devices)
		info.Members = append(info.Members, mi)
	}
	return info, nil
}

// ResolveGroup finds the group a user names: by its title, or by its id
// or the id's first 8 or more hex digits (g: in front or not). Two groups
// of one title are told apart by id.
func ResolveGroup(h *home.Home, name string) (GroupInfo, error) {
	all, err := Groups(h)
	if err != nil {
		return GroupInfo{}, err
	}
	var byTitle []GroupInfo
	for _, g := range all {
		if g.Title == name {
			byTitle = append(byTitle, g)
		}
	}
	if len(byTitle) == 1 {
		return byTitle[0], nil
	}
	if len(byTitle) > 1 {
		var ids []string
		for _, g := range byTitle {
			ids = append(ids, "g:"+g.ID[:8])
		}
		return GroupInfo{}, fmt.Errorf("%d groups are called %q: name one by its id (%s)", len(byTitle), name, strings.Join(ids, ", "))
	}
	prefix := strings.ToLower(strings.TrimPrefix(name, "g:"))
	var byID []GroupInfo
	if len(prefix) >= 8 {
		for _, g := range all {
			if strings.HasPrefix(g.ID, prefix) {
				byID = append(byID, g)
			}
		}
	}
	if len(byID) == 1 {
		return byID[0], nil
	}
	return GroupInfo{}, fmt.Errorf("no group called %q (securechat group list shows yours)", name)
}

// groupMembers are the accounts of a group besides this one, as its log
// says; a group this account left has none to send to.
func (c *Client) groupMembers(conv chat.Conversation) ([]string, error) {
	_, l, err := readGroup(c.home, conv)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range l.State().Members {
		if m.User != c.prof.User {
			out = append(out, m.User)
		}
	}
	return out, nil
}

// identityFor is the identity key this home trusts for user, learned from
// the server on first use as a send would learn it. A pending key (it
// changed) refuses, as sending does.
func (c *Client) identityFor(ctx context.Context, user string) (e2ee.IdentityKey, error) {
	if user == c.prof.User {
		return c.keys.IdentityKey(), nil
	}
	ct, err := c.sessions.Contact(user)
	if err != nil {
		return e2ee.IdentityKey{}, err
	}
	if ct == nil {
		var ik transport.IdentityKey
		if err := c.request(ctx, transport.CodeIdentity, &transport.DevicesRequest{User: user}, transport.CodeIdentityKey, &ik); err != nil {
			return e2ee.IdentityKey{}, err
		}
		c.cryptoMu.Lock()
		if ct, err = c.sessions.Contact(user); err == nil && ct == nil {
			ct = &home.Contact{Identity: ik.Key}
			err = c.sessions.SaveContact(user, ct)
		}
		c.cryptoMu.Unlock()
		if err != nil {
			return e2ee.IdentityKey{}, err
		}
	}
	if ct.Pending != nil {
		return e2ee.IdentityKey{}, c.identityChanged(user, ct.Pending)
	}
	return e2ee.ParseIdentityKey(ct.Identity)
}

// CreateGroup makes a group of this account, as its owner, and members,
// and sends every member the group's log. If that send fails the group is
// forgotten again: it never existed for anyone else.
func (c *Client) CreateGroup(ctx context.Context, title string, members []string) (GroupInfo, error) {
	info, _, err := c.createGroup(ctx, title, members)
	return info, err
}

// createGroup is CreateGroup, returning the line it kept in the group's
// history too.
func (c *Client) createGroup(ctx context.Context, title string, members []string) (GroupInfo, *HistoryEntry, error) {
	if c.keys == nil {
		return GroupInfo{}, nil, ErrNotLinked
	}
	ch := &e2ee.GroupChange{Actor: c.prof.User, Time: c.now().UnixMilli(), Op: e2ee.OpCreate, Title: title,
		Members: []e2ee.GroupMember{{User: c.prof.User, Identity: c.keys.IdentityKey(), Role: e2ee.RoleOwner}}}
	if _, err := io.ReadFull(c.rand, ch.Salt[:]); err != nil {
		return GroupInfo{}, nil, err
	}
	added, err := c.newMembers(ctx, members, e2ee.RoleMember)
	if err != nil {
		return GroupInfo{}, nil, err
	}
	ch.Members = append(ch.Members, added...)
	// The id is the creation's (protocol.md §9.7): nobody else can make
	// a creation, and so a log, for it.
	id := e2ee.GroupID(ch)
	ch.Group = id
	if err := e2ee.SignGroupChange(ch, c.keys.IdentityPrivateKey()); err != nil {
		return GroupInfo{}, nil, groupError(err)
	}
	l, err := e2ee.NewGroupLog(ch, groupMaxMembers)
	if err != nil {
		return GroupInfo{}, nil, groupError(err)
	}
	lb, err := l.MarshalBinary()
	if err != nil {
		return GroupInfo{}, nil, err
	}
	conv := groupConv(id)
	c.groupMu.Lock()
	defer c.groupMu.Unlock()
	rec := &home.GroupRecord{Group: conv, Log: lb}
	if err := c.home.Update(func(tx *home.Tx) error { return tx.PutGroup(rec) }); err != nil {
		return GroupInfo{}, nil, err
	}
	content := &Content{Kind: chat.KindGroupChange, Group: conv.ID(), SentAt: c.now().UnixMilli(), GroupLog: lb}
	sent, err := c.sendGroupContent(ctx, conv, content)
	if err != nil && !sent {
		c.home.Update(func(tx *home.Tx) error { return tx.DeleteGroup(conv) })
		return GroupInfo{}, nil, err
	}
	if err != nil {
		// Some members have the group already: it is kept, and the
		// error says the others do not have it yet.
		err = fmt.Errorf("the group is made and some members have it, not all: %w", err)
	}
	sendErr := err
	var line HistoryEntry
	text := fmt.Sprintf("%s (%s)", describeChange(ch, c.prof.User), memberList(l.State(), c.prof.User))
	if err := c.home.Update(func(tx *home.Tx) (err error) {
		line, err = c.keepOwnChange(tx, conv, text)
		return err
	}); err != nil {
		return GroupInfo{}, nil, err
	}
	info, err := groupInfo(c.home, rec)
	return info, &line, cmp.Or(err, sendErr)
}

// keepOwnChange keeps the line of the group's history that says what
// this account did ("you added dave"): the other members' clients, and
// this account's other devices, keep theirs as the change arrives
// (receiveGroup); the acting device keeps its own as it makes it.
func (c *Client) keepOwnChange(tx *home.Tx, conv chat.Conversation, text string) (HistoryEntry, error) {
	rec := &home.HistoryRecord{ID: newID(c), From: c.prof.User, Kind: chat.KindSystem, Text: text, Time: c.now().UnixMilli()}
	return tx.AddHistory(conv, rec, false)
}

// newMembers names users as members of role, each with the identity key
// this home trusts for them.
func (c *Client) newMembers(ctx context.Context, users []string, role e2ee.GroupRole) ([]e2ee.GroupMember, error) {
	var out []e2ee.GroupMember
	for _, u := range users {
		u, err := transport.CanonicalUser(u)
		if err != nil {
			return nil, err
		}
		if u == c.prof.User || slices.ContainsFunc(out, func(m e2ee.GroupMember) bool { return m.User == u }) {
			continue
		}
		key, err := c.identityFor(ctx, u)
		if err != nil {
			return nil, err
		}
		out = append(out, e2ee.GroupMember{User: u, Identity: key, Role: role})
	}
	return out, nil
}

// AddToGroup adds users to a group as members.
func (c *Client) AddToGroup(ctx context.Context, conv chat.Conversation, users []string) error {
	_, err := c.addToGroup(ctx, conv, users)
	return err
}

// RemoveFromGroup removes users from a group.
func (c *Client) RemoveFromGroup(ctx context.Context, conv chat.Conversation, users []string) error {
	_, err := c.removeFromGroup(ctx, conv, users)
	return err
}

// LeaveGroup takes this account out of a group.
func (c *Client) LeaveGroup(ctx context.Context, conv chat.Conversation) error {
	_, err := c.changeGroup(ctx, conv, &e2ee.GroupChange{Op: e2ee.OpLeave})
	return err
}

// SetGroupRole makes users admins or plain members of a group.
func (c *Client) SetGroupRole(ctx context.Context, conv chat.Conversation, users []string, admin bool) error {
	_, err := c.setGroupRole(ctx, conv, users, admin)
	return err
}

// addToGroup, removeFromGroup and setGroupRole are the commands above,
// returning the line of the group's history each keeps for this account
// (changeGroup).
func (c *Client) addToGroup(ctx context.Context, conv chat.Conversation, users []string) (*HistoryEntry, error) {
	added, err := c.newMembers(ctx, users, e2ee.RoleMember)
	if err != nil {
		return nil, err
	}
	if len(added) == 0 {
		return nil, errors.New("nobody to add")
	}
	return c.changeGroup(ctx, conv, &e2ee.GroupChange{Op: e2ee.OpAdd, Members: added})
}

func (c *Client) removeFromGroup(ctx context.Context, conv chat.Conversation, users []string) (*HistoryEntry, error) {
	targets, err := canonicalUsers(users)
	if err != nil {
		return nil, err
	}
	return c.changeGroup(ctx, conv, &e2ee.GroupChange{Op: e2ee.OpRemove, Targets: targets})
}

// RenameGroup gives the group a new title: an admin's signed change every
// member applies (protocol.md §9.7).
func (c *Client) RenameGroup(ctx context.Context, conv chat.Conversation, title string) error {
	_, err := c.renameGroup(ctx, conv, title)
	return err
}

func (c *Client) renameGroup(ctx context.Context, conv chat.Conversation, title string) (*HistoryEntry, error) {
	if strings.TrimSpace(title) == "" || len(title) > 256 {
		return nil, errors.New("a title is 1 to 256 bytes")
	}
	return c.changeGroup(ctx, conv, &e2ee.GroupChange{Op: e2ee.OpTitle, Title: title})
}

// MuteInGroup keeps members from writing to the group until until (the
// zero time lifts it): an admin's signed change that every member's client
// applies (protocol.md §9.7); a muted member's messages are not shown.
func (c *Client) MuteInGroup(ctx context.Context, conv chat.Conversation, users []string, until time.Time) error {
	_, err := c.muteInGroup(ctx, conv, users, until)
	return err
}

func (c *Client) muteInGroup(ctx context.Context, conv chat.Conversation, users []string, until time.Time) (*HistoryEntry, error) {
	targets, err := canonicalUsers(users)
	if err != nil {
		return nil, err
	}
	var ms int64
	if !until.IsZero() {
		if !until.After(c.now()) {
			return nil, errors.New("the mute would end before it starts")
		}
		ms = until.UnixMilli()
	}
	return c.changeGroup(ctx, conv, &e2ee.GroupChange{Op: e2ee.OpMute, Targets: targets, Until: ms})
}

func (c *Client) setGroupRole(ctx context.Context, conv chat.Conversation, users []string, admin bool) (*HistoryEntry, error) {
	targets, err := canonicalUsers(users)
	if err != nil {
		return nil, err
	}
	role := e2ee.RoleMember
	if admin {
		role = e2ee.RoleAdmin
	}
	return c.changeGroup(ctx, conv, &e2ee.GroupChange{Op: e2ee.OpRole, Targets: targets, Role: role})
}

func canonicalUsers(users []string) ([]string, error) {
	var out []string
	for _, u := range users {
		u, err := transport.CanonicalUser(u)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no member named")
	}
	return out, nil
}

// changeGroup makes, signs and applies a change here, keeps it, and sends
// it (with the changes just before it, for a member who missed one) to the
// group's members, to those it removed, and the whole log to those it
// added. A change that this home's log refuses is refused before anything
// is sent, with the reason (only admins add members, …).
func (c *Client) changeGroup(ctx context.Context, conv chat.Conversation, ch *e2ee.GroupChange) (*HistoryEntry, error) {
	if c.keys == nil {
		return nil, ErrNotLinked
	}
	c.groupMu.Lock()
	defer c.groupMu.Unlock()
	rec, l, err := readGroup(c.home, conv)
	if err != nil {
		return nil, err
	}
	before := l.State()
	if rec.Left {
		return nil, fmt.Errorf("you are no longer a member of %q", before.Title)
	}
	if ch.Op == e2ee.OpAdd && l.Creation() == nil {
		// A new member takes only a log that carries its creation
		// (protocol.md §8.2), which a group made before ids were bound
		// to it does not have.
		return nil, fmt.Errorf("%q was made by an older version of securechat and can take no new members (its id is not bound to its creation): make the group again to add them", before.Title)
	}
	ch.Actor, ch.Time = c.prof.User, c.now().UnixMilli()
	l.Prepare(ch)
	if err := e2ee.SignGroupChange(ch, c.keys.IdentityPrivateKey()); err != nil {
		return nil, groupError(err)
	}
	if _, err := l.Add(ch); err != nil {
		return nil, fmt.Errorf("%s: %w", before.Title, groupError(err))
	}
	after := l.State()
	lb, err := l.MarshalBinary()
	if err != nil {
		return nil, err
	}
	var line HistoryEntry
	err = c.home.Update(func(tx *home.Tx) error {
		// The record as it is now: a send may have changed its chain
		// fields since it was read (senderkeys.go), and the engine may
		// have applied another member's change to its log.
		cur, err := tx.Group(conv)
		if err != nil || cur == nil {
			return cmp.Or(err, fmt.Errorf("no group %s in this home", conv.ID()))
		}
		if !bytes.Equal(cur.Log, rec.Log) {
			if l, err = parseLog(cur); err != nil {
				return err
			}
			before = l.State()
			if _, err := l.Add(ch); err != nil && !errors.Is(err, e2ee.ErrGroupDuplicate) {
				return fmt.Errorf("%s: %w", before.Title, groupError(err))
			}
			after = l.State()
			if lb, err = l.MarshalBinary(); err != nil {
				return err
			}
		}
		_, stillIn := after.Member(c.prof.User)
		cur.Log, cur.Left = lb, !stillIn
		cur.Rotate = cur.Rotate || lostMember(before, after)
		if err := tx.PutGroup(cur); err != nil {
			return err
		}
		line, err = c.keepOwnChange(tx, conv, describeChange(ch, c.prof.User))
		return err
	})
	if err != nil {
		return nil, err
	}
	var recent [][]byte
	for _, r := range l.Recent(maxGroupChanges) {
		b, err := r.MarshalBinary()
		if err != nil {
			return nil, err
		}
		recent = append(recent, b)
	}
	content := &Content{Kind: chat.KindGroupChange, Group: conv.ID(), SentAt: c.now().UnixMilli(), GroupChanges: recent}
	var errs []error
	// New members get the group before anyone else learns they are in it,
	// so that what the others then send them (their sender keys) finds
	// the group there (protocol.md §8.3).
	for _, m := range after.Members {
		if _, was := before.Member(m.User); !was {
			welcome := &Content{Kind: chat.KindGroupChange, Group: conv.ID(), SentAt: content.SentAt, GroupLog: lb}
			if _, err := c.SendContent(ctx, newID(c), chat.Peer(m.User), welcome); err != nil {
				errs = append(errs, fmt.Errorf("sending %s the group: %w", m.User, err))
			}
		}
	}
	if _, err := c.sendGroupContent(ctx, conv, content); err != nil {
		errs = append(errs, err)
	}
	for _, m := range before.Members {
		if _, in := after.Member(m.User); !in && m.User != c.prof.User {
			if _, err := c.SendContent(ctx, newID(c), chat.Peer(m.User), content); err != nil {
				errs = append(errs, fmt.Errorf("telling %s: %w", m.User, err))
			}
		}
	}
	if len(errs) > 0 {
		return &line, fmt.Errorf("the change is made here, but not everyone has it yet (it goes along with the group's next change): %w", errors.Join(errs...))
	}
	return &line, nil
}

func newID(c *Client) []byte {
	id := make([]byte, transport.MessageIDLen)
	io.ReadFull(c.rand, id)
	return id
}

// sendGroupContent sends content to the group's members and this
// account's other devices. A group whose only member is this account
// sends nothing.
func (c *Client) sendGroupContent(ctx context.Context, conv chat.Conversation, content *Content) (sentAny bool, err error) {
	for attempt := 0; ; attempt++ {
		targets, err := c.recipients(ctx, conv)
		if err != nil {
			return sentAny, err
		}
		sent, err := c.sendBatches(ctx, conv, targets, content)
		sentAny = sentAny || sent
		var we *transport.Error
		if errors.As(err, &we) && we.Code == transport.ErrDeviceMismatch && attempt < 3 {
			continue // the lists are updated; what was sent is idempotent
		}
		return sentAny, err
	}
}

// Pairwise sends to many devices (a group's membership change, a sender
// key for everyone) are cut into Sends of at most maxBatchBytes of
// estimated payload and transport.MaxEnvelopes envelopes, whole accounts
// each, so that a group of group_max_members fits the frame limit
// (transport.DefaultMaxFrame).
const envelopeReserve = 1600 // a payload beyond its plaintext: the PQXDH header, ratchet header, tag

var maxBatchBytes = 3 << 20 // a variable for tests

// sendBatches encrypts content for targets over the pairwise sessions and
// sends it in batches (maxBatchBytes), each a stored Send of its own, not
// kept in the outbox: a batch that fails is reported, and what it carried
// goes again with the group's next change or message. A device mismatch
// updates the device lists and is returned for the caller to try again.
// sentAny reports whether any batch was stored.
func (c *Client) sendBatches(ctx context.Context, conv chat.Conversation, targets []chat.Device, content *Content) (sentAny bool, err error) {
	per := len(transport.Marshal(content)) + envelopeReserve
	var batch []chat.Device
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		msg, err := c.encryptTo(ctx, conv, batch, content, newID(c), nil)
		if err != nil {
			return err
		}
		batch = batch[:0]
		var sent transport.Sent
		err = c.request(ctx, transport.CodeSend, msg, transport.CodeSent, &sent)
		var we *transport.Error
		if errors.As(err, &we) && we.Code == transport.ErrDeviceMismatch {
			c.forgetDevices(msg)
			c.updateDevices(we.Devices)
		}
		sentAny = sentAny || err == nil
		return err
	}
	for i := 0; i < len(targets); {
		// One account's devices stay together (protocol.md §6.1).
		j := i + 1
		for j < len(targets) && targets[j].User == targets[i].User {
			j++
		}
		n := j - i
		if len(batch) > 0 && ((len(batch)+n)*per > maxBatchBytes || len(batch)+n > transport.MaxEnvelopes) {
			if err := flush(); err != nil {
				return sentAny, err
			}
		}
		batch = append(batch, targets[i:j]...)
		i = j
	}
	return sentAny, flush()
}

// groupError is a refused change as the user reads it: the reason without
// the package's prefix.
func groupError(err error) error {
	msg := err.Error()
	for _, p := range []string{"group log: ", "e2ee: group change refused: ", "e2ee: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	if i := strings.Index(msg, ": "); i > 0 && (strings.Contains(msg[:i], " by ")) {
		msg = msg[i+2:]
	}
	return errors.New(msg)
}

// receiveGroup applies a KindGroupChange content from m's sender to this
// home's record of the group, in tx, and returns what to tell the user.
// A log (for a member just added) makes a group this home did not have,
// if it names this account with this identity key and its sender is a
// member; changes are admitted as the log's rules say, a replayed or
// early one silently, a refused one reported.
func (c *Client) receiveGroup(tx *home.Tx, m *Message) ([]string, error) {
	conv := m.Conversation
	rec, err := tx.Group(conv)
	if err != nil {
		return nil, err
	}
	from := m.From.User
	if m.IdentityChanged {
		return []string{fmt.Sprintf("a group change from %s was not applied: %s's identity key changed", from, from)}, nil
	}
	var l *e2ee.GroupLog
	var notes []string
	var before e2ee.GroupState // nobody, for a group new here
	var newcomers []string     // members others added, in the changes applied here
	if rec == nil {
		if m.groupLog == nil {
			// A change of a group this home is not in: this member's
			// welcome may have been lost. Ask the sender for the log, once
			// per group and connection (protocol.md §8.2).
			if len(m.groupChanges) > 0 && c.askOnce(onceAskLog, conv.ID(), from) {
				ask := &Content{Kind: chat.KindGroupChange, Group: conv.ID(), SentAt: c.now().UnixMilli()}
				if err := tx.Enqueue(&home.Queued{ID: newID(c), To: chat.Peer(from), Content: transport.Marshal(ask)}); err != nil {
					return nil, err
				}
				c.queuedCatchUp.Store(true)
			}
			return nil, nil
		}
		// The log must carry its creation, which makes the group's id:
		// nobody but the group's owner can make one for an id, so a
		// stranger who knows the id cannot send a made-up group under it
		// first (protocol.md §8.2, §9.7).
		if l, err = e2ee.ParseGroupLog(m.groupLog, groupMaxMembers); errors.Is(err, e2ee.ErrGroupUnbound) {
			return []string{fmt.Sprintf("%s sent a group in the form of an older version of securechat, without the signed creation its id must come from: ignored (it can be made again)", from)}, nil
		} else if err != nil {
			return []string{fmt.Sprintf("a group from %s could not be read: %v", from, groupError(err))}, nil
		}
		st := l.State()
		me, in := st.Member(c.prof.User)
		if !in || c.keys == nil || !me.Identity.Equal(c.keys.IdentityKey()) || groupConv(st.ID) != conv {
			return []string{fmt.Sprintf("%s sent a group that does not name you: ignored", from)}, nil
		}
		if _, ok := st.Member(from); !ok && from != c.prof.User {
			return []string{fmt.Sprintf("%s, who is not in it, sent a group: ignored", from)}, nil
		}
		// A log's own word about identity keys is not taken over what
		// this home knows: the sender's key in it must be the one its
		// message came with, and every member this home has met must
		// have the key this home has for them (protocol.md §8.2). So a
		// stranger cannot make up a group in which someone known here
		// acts under another key.
		if who := keyConflict(tx, st, c.prof.User); who != "" {
			return []string{fmt.Sprintf("%s sent a group %q that names %s with another identity key than the one you have for %s: ignored", from, st.Title, who, who)}, nil
		}
		rec = &home.GroupRecord{Group: conv}
		if from == c.prof.User {
			notes = append(notes, fmt.Sprintf("you are in the group %q", st.Title))
		} else {
			notes = append(notes, fmt.Sprintf("%s added you to the group %q (%s)", from, st.Title, memberList(st, c.prof.User)))
		}
	} else {
		if l, err = parseLog(rec); err != nil {
			return nil, err
		}
		before = l.State()
		if len(m.groupChanges) == 0 && m.groupLog == nil {
			// A member that lacks the group asks for its log: sent to
			// members of it only, once per asker and connection.
			if _, in := before.Member(from); in && !rec.Left && from != c.prof.User && c.askOnce(onceAnswer, conv.ID()+"/"+from, from) {
				answer := &Content{Kind: chat.KindGroupChange, Group: conv.ID(), SentAt: c.now().UnixMilli()}
				if len(m.groupHeads) == 32 {
					// A member whose heads differ (compareHeads) has the
					// group: its recent changes are enough.
					for _, r := range l.Recent(maxGroupChanges) {
						b, err := r.MarshalBinary()
						if err != nil {
							return nil, err
						}
						answer.GroupChanges = append(answer.GroupChanges, b)
					}
				} else if answer.GroupLog, err = l.MarshalBinary(); err != nil {
					return nil, err
				}
				if len(answer.GroupChanges) > 0 || answer.GroupLog != nil {
					if err := tx.Enqueue(&home.Queued{ID: newID(c), To: chat.Peer(from), Content: transport.Marshal(answer)}); err != nil {
						return nil, err
					}
					c.queuedCatchUp.Store(true)
				}
			}
			return nil, nil
		}
		var changes []*e2ee.GroupChange
		for i := len(m.groupChanges) - 1; i >= 0; i-- { // oldest first
			ch, err := e2ee.ParseGroupChange(m.groupChanges[i])
			if err != nil {
				notes = append(notes, fmt.Sprintf("a group change from %s could not be read: %v", from, groupError(err)))
				continue
			}
			changes = append(changes, ch)
		}
		var other *e2ee.GroupLog
		if m.groupLog != nil {
			// Only the other log's changes are offered to this home's log,
			// which checks each: its base is not taken, and a group made
			// before logs carried their creation sends version 1.
			if other, err = e2ee.ParseStoredGroupLog(m.groupLog, groupMaxMembers); err == nil {
				changes = append(changes, other.Recent(e2ee.GroupWindow*4)...)
			} else {
				other = nil
			}
		}
		skipped := len(l.Skipped())
		for _, ch := range changes {
			added, err := l.Add(ch)
			switch {
			case err == nil:
				for _, a := range added {
					notes = append(notes, describeChange(a, c.prof.User))
					if a.Op == e2ee.OpAdd && a.Actor != c.prof.User {
						for _, m := range a.Members {
							newcomers = append(newcomers, m.User)
						}
					}
				}
			case errors.Is(err, e2ee.ErrGroupDuplicate), errors.Is(err, e2ee.ErrGroupMissingParent):
			default:
				notes = append(notes, fmt.Sprintf("a change to %q from %s was refused: %v", l.State().Title, from, groupError(err)))
			}
		}
		if s := l.Skipped(); len(s) > skipped {
			for _, sk := range s[skipped:] {
				notes = append(notes, fmt.Sprintf("%s's change (%s) was undone: a change made at the same time came first", sk.Change.Actor, sk.Change.Op))
			}
		}
		if other != nil && !placed(l, other) {
			// Another version of the group, whose latest changes this
			// log cannot place: one of the two was made up (someone who
			// holds the group's creation may have sent a made-up folded
			// log first). Not taken, and said (docs/security.md §5).
			notes = append(notes, fmt.Sprintf("%s sent a version of the group %q that does not match yours: its latest changes were not taken; compare the members with %s", from, l.State().Title, from))
		}
	}
	lb, err := l.MarshalBinary()
	if err != nil {
		return nil, err
	}
	st := l.State()
	_, in := st.Member(c.prof.User)
	rec.Log, rec.Left = lb, !in
	rec.Rotate = rec.Rotate || lostMember(before, st)
	if in && len(newcomers) > 0 && forkedByMe(l, c.prof.User) {
		// Someone added members while this account made a change they
		// had not seen: the newcomers got the adder's log, without it.
		// They get this log too, so that every member converges
		// (protocol.md §8.2).
		for _, u := range newcomers {
			if _, still := st.Member(u); !still || u == c.prof.User {
				continue
			}
			welcome := &Content{Kind: chat.KindGroupChange, Group: conv.ID(), SentAt: c.now().UnixMilli(), GroupLog: lb}
			q := &home.Queued{ID: newID(c), To: chat.Peer(u), Content: transport.Marshal(welcome)}
			if err := tx.Enqueue(q); err != nil {
				return nil, err
			}
			c.queuedCatchUp.Store(true)
		}
	}
	return notes, tx.PutGroup(rec)
}

// placed reports whether every head of other is a change l holds: after
// merging, other's latest changes are part of l.
func placed(l, other *e2ee.GroupLog) bool {
	known := make(map[[32]byte]bool)
	for _, h := range l.Heads() {
		known[h] = true
	}
	for _, ch := range l.Recent(e2ee.GroupWindow * 4) {
		known[ch.Hash()] = true
	}
	for _, h := range other.Heads() {
		if !known[h] {
			return false
		}
	}
	return true
}

// keyConflict names a member of st, other than self, whose identity key
// differs from the one this home holds for them (accepted or pending), or,
// for one never met, from the one another group of this home names them
// with; "" if none.
func keyConflict(tx *home.Tx, st e2ee.GroupState, self string) string {
	var others map[string][]byte // read on first need
	for _, m := range st.Members {
		if m.User == self {
			continue
		}
		ct, err := tx.Contact(m.User)
		if err != nil {
			continue
		}
		if ct != nil {
			if !bytes.Equal(ct.Identity, m.Identity.Bytes()) && (ct.Pending == nil || !bytes.Equal(ct.Pending, m.Identity.Bytes())) {
				return m.User
			}
			continue
		}
		if others == nil {
			others = make(map[string][]byte)
			recs, _ := tx.Groups()
			for _, rec := range recs {
				if rec.Group == groupConv(st.ID) || rec.Left {
					continue
				}
				if l, err := parseLog(rec); err == nil {
					for _, o := range l.State().Members {
						others[o.User] = o.Identity.Bytes()
					}
				}
			}
		}
		if k, ok := others[m.User]; ok && !bytes.Equal(k, m.Identity.Bytes()) {
			return m.User
		}
	}
	return ""
}

// compareHeads compares a group text's heads hash with this home's log:
// when they differ, one of the two lacks a change (the server withheld it,
// protocol.md §9.7). This home sends the sender its recent changes and
// asks for the sender's log, once per group and sender per connection;
// whichever lacked a change has it after.
func (c *Client) compareHeads(tx *home.Tx, m *Message, rec *home.GroupRecord, l *e2ee.GroupLog) error {
	if len(m.groupHeads) != 32 || m.From.User == c.prof.User || rec.Left {
		return nil
	}
	h := l.HeadsHash()
	if bytes.Equal(h[:], m.groupHeads) || !c.askOnce(onceHeads, m.Conversation.ID()+"/"+m.From.User, m.From.User) {
		return nil
	}
	var recent [][]byte
	for _, r := range l.Recent(maxGroupChanges) {
		b, err := r.MarshalBinary()
		if err != nil {
			return err
		}
		recent = append(recent, b)
	}
	now := c.now().UnixMilli()
	for _, content := range []*Content{
		{Kind: chat.KindGroupChange, Group: m.Conversation.ID(), SentAt: now, GroupChanges: recent},
		// Send me your recent changes: with the heads, answered with
		// changes, not the whole log.
		{Kind: chat.KindGroupChange, Group: m.Conversation.ID(), SentAt: now, GroupHeads: h[:]},
	} {
		if err := tx.Enqueue(&home.Queued{ID: newID(c), To: chat.Peer(m.From.User), Content: transport.Marshal(content)}); err != nil {
			return err
		}
	}
	c.queuedCatchUp.Store(true)
	return nil
}

// Purposes of the once-per-connection sets (onceSet): what a client asks
// or answers about groups at most once per key and connection.
const (
	onceAskLog    = iota // asking a change's sender for a group this home lacks
	onceAnswer           // answering a member's request for the log
	onceHeads            // exchanging changes with a sender whose heads differ
	onceAskKey           // asking a sender for its chain
	onceAnswerKey        // answering a member device's request for this device's chain
	onceListNote         // a line about an account's device list (devicelists.go)
	onceKinds
)

// askOnce reports whether key was not yet used for purpose on this
// connection, and marks it. Each purpose has its own set of at most
// maxWaiting keys, the oldest forgotten first, so that nobody can use up
// another purpose's set, or keep a purpose from working, by filling it;
// and one sender can make this client ask about at most
// maxAsksPerStranger groups it does not have.
func (c *Client) askOnce(purpose int, key, sender string) bool {
	c.groupMu2.Lock()
	defer c.groupMu2.Unlock()
	if c.once[purpose] == nil {
		c.once[purpose] = make(map[string]bool)
	}
	set := c.once[purpose]
	if set[key] {
		return false
	}
	if purpose == onceAskLog {
		if c.asksBy == nil {
			c.asksBy = make(map[string]int)
		}
		if c.asksBy[sender] >= maxAsksPerStranger {
			return false
		}
		if len(c.asksBy) < maxWaiting {
			c.asksBy[sender]++
		}
	}
	if len(c.onceOrder[purpose]) >= maxWaiting {
		delete(set, c.onceOrder[purpose][0])
		c.onceOrder[purpose] = c.onceOrder[purpose][1:]
	}
	set[key] = true
	c.onceOrder[purpose] = append(c.onceOrder[purpose], key)
	return true
}

// maxAsksPerStranger bounds the groups one sender can make this client ask
// about (onceAskLog) per connection.
const maxAsksPerStranger = 4

// forkedByMe reports whether one of the log's heads, when it has more than
// one, is a change of self's: a change another member made at the same
// time has not seen it.
func forkedByMe(l *e2ee.GroupLog, self string) bool {
	heads := l.Heads()
	if len(heads) < 2 {
		return false
	}
	for _, ch := range l.Recent(e2ee.GroupWindow) {
		if ch.Actor == self && slices.Contains(heads, ch.Hash()) {
			return true
		}
	}
	return false
}

// othersIn is the number of group's members other than self, as this home
// knows the group: whom a message sent now goes to (HistoryRecord.Recipients).
func othersIn(tx *home.Tx, group chat.Conversation, self string) uint32 {
	rec, err := tx.Group(group)
	if err != nil || rec == nil {
		return 0
	}
	l, err := parseLog(rec)
	if err != nil {
		return 0
	}
	var n uint32
	for _, m := range l.State().Members {
		if m.User != self {
			n++
		}
	}
	return n
}

// lostMember reports whether someone in before is not in after: this
// device's sending chain must then be replaced before its next message
// (protocol.md §8.3), so that they read nothing sent after they went.
func lostMember(before, after e2ee.GroupState) bool {
	for _, m := range before.Members {
		if _, in := after.Member(m.User); !in {
			return true
		}
	}
	return false
}

// memberList names a group's members other than self.
func memberList(st e2ee.GroupState, self string) string {
	var names []string
	for _, m := range st.Members {
		if m.User != self {
			names = append(names, m.User)
		}
	}
	if len(names) == 0 {
		return "nobody else yet"
	}
	return "with " + strings.Join(names, ", ")
}

// describeChange is a change as a line of the group's history.
func describeChange(ch *e2ee.GroupChange, self string) string {
	who := func(u string) string {
		if u == self {
			return "you"
		}
		return u
	}
	actor := who(ch.Actor)
	var names []string
	for _, m := range ch.Members {
		names = append(names, who(m.User))
	}
	for _, t := range ch.Targets {
		names = append(names, who(t))
	}
	list := strings.Join(names, ", ")
	switch ch.Op {
	case e2ee.OpCreate:
		return fmt.Sprintf("%s created the group %q", actor, ch.Title)
	case e2ee.OpAdd:
		return fmt.Sprintf("%s added %s", actor, list)
	case e2ee.OpRemove:
		return fmt.Sprintf("%s removed %s", actor, list)
	case e2ee.OpLeave:
		return fmt.Sprintf("%s left", actor)
	case e2ee.OpRole:
		return fmt.Sprintf("%s made %s %s", actor, list, map[e2ee.GroupRole]string{e2ee.RoleAdmin: "an admin", e2ee.RoleMember: "a member"}[ch.Role])
	case e2ee.OpTitle:
		return fmt.Sprintf("%s renamed the group %q", actor, ch.Title)
	case e2ee.OpMute:
		if ch.Until == 0 {
			return fmt.Sprintf("%s unmuted %s", actor, list)
		}
		return fmt.Sprintf("%s muted %s until %s", actor, list, chat.FormatTime(time.UnixMilli(ch.Until)))
	}
	return fmt.Sprintf("%s changed the group", actor)
}

// checkGroupSender decides whether a message m to a group is shown: its
// sender must be a member (not muted) of the group as this home knows it.
// It returns why not, or "".
func checkGroupSender(tx *home.Tx, m *Message, now time.Time) (string, error) {
	why, _, _, err := groupSender(tx, m, now)
	return why, err
}

// groupSender is checkGroupSender returning the record and log it read
// (nil when why is not ""), for what else the caller checks on them.
func groupSender(tx *home.Tx, m *Message, now time.Time) (why string, rec *home.GroupRecord, l *e2ee.GroupLog, err error) {
	if rec, err = tx.Group(m.Conversation); err != nil {
		return "", nil, nil, err
	}
	if rec == nil {
		return fmt.Sprintf("a message from %s for a group you are not in was not shown", m.From.User), nil, nil, nil
	}
	if l, err = parseLog(rec); err != nil {
		return "", nil, nil, err
	}
	mem, in := l.State().Member(m.From.User)
	switch {
	case !in:
		return fmt.Sprintf("a message from %s, who is not in this group, was not shown", m.From.User), nil, nil, nil
	case mem.MutedUntil > now.UnixMilli():
		return fmt.Sprintf("a message from %s, muted in this group, was not shown", m.From.User), nil, nil, nil
	}
	return "", rec, l, nil
}

// noteID names the history line of a note about message id: the same
// note of a redelivered message is the same line.
func noteID(id []byte, i int) []byte {
	h := sha256.Sum256(append(append([]byte("securechat note "), id...), byte(i)))
	return h[:transport.MessageIDLen]
}

// checkCanSend refuses a message to a group this account is not in, or is
// muted in (the other members would not show it).
func checkCanSend(h *home.Home, self string, conv chat.Conversation, now time.Time) error {
	rec, l, err := readGroup(h, conv)
	if err != nil {
		return err
	}
	return canSend(rec, l.State(), self, now)
}

// readGroup reads a group's record and parses its log; a group this home
// does not have is an error.
func readGroup(h *home.Home, conv chat.Conversation) (*home.GroupRecord, *e2ee.GroupLog, error) {
	rec, err := h.Group(conv)
	if err != nil {
		return nil, nil, err
	}
	if rec == nil {
		return nil, nil, fmt.Errorf("no group %s in this home", conv.ID())
	}
	l, err := parseLog(rec)
	return rec, l, err
}

// canSend is checkCanSend on a record and its state already read.
func canSend(rec *home.GroupRecord, st e2ee.GroupState, self string, now time.Time) error {
	me, in := st.Member(self)
	switch {
	case !in || rec.Left:
		return fmt.Errorf("you are no longer a member of %q", st.Title)
	case me.MutedUntil > now.UnixMilli():
		return fmt.Errorf("an admin of %q muted you until %s", st.Title, chat.FormatTime(time.UnixMilli(me.MutedUntil)))
	}
	return nil
}

// SendGroupText sends text to a group: to every member's devices and this
// account's other devices, over the pairwise sessions, returning once the
// server has stored it; it goes into the group's history then.
func (c *Client) SendGroupText(ctx context.Context, conv chat.Conversation, text string) (SendResult, error) {
	if text == "" {
		return SendResult{}, errors.New("message is empty")
	}
	if len(text) > MaxTextLen {
		return SendResult{}, fmt.Errorf("message is too long: %d bytes, the limit is %d", len(text), MaxTextLen)
	}
	// Whether this account may write to the group is checked as the
	// message is built (buildGroupSend).
	id := newID(c)
	content := &Content{Kind: chat.KindText, Text: text, SentAt: c.now().UnixMilli(), Group: conv.ID()}
	return c.sendContent(ctx, id, conv, content, c.outgoingRecord(id, content))
}

// The engine's group commands, over its connection (a one-shot engine's,
// for the group command; the terminal client's, for /group).

func (e *Engine) connected() (*Client, error) {
	c := e.client()
	if c == nil {
		return nil, errors.New("not connected")
	}
	return c, nil
}

// Groups lists this home's groups.
func (e *Engine) Groups() ([]GroupInfo, error) { return Groups(e.home) }

// ResolveGroup finds the group a user names (ResolveGroup).
func (e *Engine) ResolveGroup(name string) (GroupInfo, error) { return ResolveGroup(e.home, name) }

// The engine's group commands show the line each keeps in the group's
// history for this account ("you added dave") as a UIMessage event, as
// a message arriving is shown; it is kept even when the change is made
// here but could not reach every member yet (the error says so).

// CreateGroup is Client.CreateGroup over the engine's connection.
func (e *Engine) CreateGroup(ctx context.Context, title string, members []string) (GroupInfo, error) {
	c, err := e.connected()
	if err != nil {
		return GroupInfo{}, err
	}
	info, line, err := c.createGroup(ctx, title, members)
	e.emitLine(line)
	return info, err
}

// AddToGroup is Client.AddToGroup over the engine's connection.
func (e *Engine) AddToGroup(ctx context.Context, conv chat.Conversation, users []string) error {
	c, err := e.connected()
	if err != nil {
		return err
	}
	line, err := c.addToGroup(ctx, conv, users)
	e.emitLine(line)
	return err
}

// RemoveFromGroup is Client.RemoveFromGroup over the engine's connection.
func (e *Engine) RemoveFromGroup(ctx context.Context, conv chat.Conversation, users []string) error {
	c, err := e.connected()
	if err != nil {
		return err
	}
	line, err := c.removeFromGroup(ctx, conv, users)
	e.emitLine(line)
	return err
}

// LeaveGroup is Client.LeaveGroup over the engine's connection.
func (e *Engine) LeaveGroup(ctx context.Context, conv chat.Conversation) error {
	c, err := e.connected()
	if err != nil {
		return err
	}
	line, err := c.changeGroup(ctx, conv, &e2ee.GroupChange{Op: e2ee.OpLeave})
	e.emitLine(line)
	return err
}

// RenameGroup is Client.RenameGroup over the engine's connection.
func (e *Engine) RenameGroup(ctx context.Context, conv chat.Conversation, title string) error {
	c, err := e.connected()
	if err != nil {
		return err
	}
	line, err := c.renameGroup(ctx, conv, title)
	e.emitLine(line)
	return err
}

// MuteInGroup is Client.MuteInGroup over the engine's connection.
func (e *Engine) MuteInGroup(ctx context.Context, conv chat.Conversation, users []string, until time.Time) error {
	c, err := e.connected()
	if err != nil {
		return err
	}
	line, err := c.muteInGroup(ctx, conv, users, until)
	e.emitLine(line)
	return err
}

// SetGroupRole is Client.SetGroupRole over the engine's connection.
func (e *Engine) SetGroupRole(ctx context.Context, conv chat.Conversation, users []string, admin bool) error {
	c, err := e.connected()
	if err != nil {
		return err
	}
	line, err := c.setGroupRole(ctx, conv, users, admin)
	e.emitLine(line)
	return err
}

// emitLine shows a line kept in a history (nil: none).
func (e *Engine) emitLine(line *HistoryEntry) {
	if line != nil {
		e.emit(UIEvent{Type: UIMessage, Conversation: line.Conversation, Entry: line})
	}
}

// SendGroupText is Client.SendGroupText over the engine's connection.
func (e *Engine) SendGroupText(ctx context.Context, conv chat.Conversation, text string) (SendResult, error) {
	c, err := e.connected()
	if err != nil {
		return SendResult{}, err
	}
	return c.SendGroupText(ctx, conv, text)
}
