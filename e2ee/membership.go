package e2ee

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Group membership authenticated by the members (docs/protocol.md §9.7).
//
// A group's membership is not the server's to state: every change —
// create, add, remove, leave, role, title, mute — is a GroupChange signed
// by the acting member's account identity key and naming, by hash, the
// changes its author had seen (its parents). The changes form a DAG that
// starts at the creation, signed by the owner, which makes the group's id
// (GroupID): nobody else can make a creation for that id, and a log that
// folded nothing is checked back to it; a folded log's base state is the
// word of the member who sent it (docs/security.md §5). Every member's client
// admits a change only if it is well formed, for this group, its parents
// are known, and it is signed by a member whose role allows it in the
// state its author saw; the state is then the replay of all admitted
// changes in one deterministic order — by depth, then by hash — in which
// a change that is no longer allowed (a concurrent change before it in
// the order removed its author, say) is skipped. Two members that hold
// the same changes hold the same state, whatever order the changes
// arrived in: that is the rule that makes concurrent admins converge.
//
// The server can withhold a change (members then disagree on the heads,
// which group messages carry, and resynchronise), but it cannot make one:
// a member, a device (devices are bound to the identity by their
// certificates, protocol.md §9.1), a role or a title that no member signed, a change
// replayed, reordered or moved from another group, are all refused.

const (
	// GroupIDSize is the length of a group id, which its creation makes
	// (GroupID).
	GroupIDSize = 16
	// GroupSaltSize is the length of a creation's random salt.
	GroupSaltSize = 16
	// MaxGroupTitle bounds a group's title, in bytes of UTF-8.
	MaxGroupTitle = 256
	// MaxGroupMembers is the codec's bound on a group's size; a server
	// setting (group_max_members) caps it lower.
	MaxGroupMembers = 10_000
	// MaxChangeParents bounds the parents of one change.
	MaxChangeParents = 16
	// GroupWindow is how many depth levels of changes a GroupLog keeps to
	// order concurrent changes; older ones are folded into its base
	// state, and a change citing one of those is refused as stale.
	GroupWindow = 64
	// maxPendingChanges bounds the changes held until their parents arrive.
	maxPendingChanges = 64

	groupChangeVersion   = 1 // every change but a creation
	groupCreateVersion   = 2 // a creation: it carries the salt that, with it, makes the id
	groupChangeContext   = "securechat group change v1"
	groupIDContext       = "securechat group id v1"
	groupHeadsContext    = "securechat group heads v1"
	groupLogVersion      = 2 // the log carries its creation
	groupLogUnbound      = 1 // a log from before: base state and frontier only
	maxGroupUserLen      = 32
	maxGroupChangeTarget = MaxGroupMembers
)

// Errors of group membership. A refused change wraps one of them.
var (
	// ErrGroupChangeInvalid: a change that is malformed, signed by no
	// member, not allowed to its author, or of the wrong depth.
	ErrGroupChangeInvalid = errors.New("e2ee: group change refused")
	// ErrGroupOther: a change of another group.
	ErrGroupOther = errors.New("e2ee: group change of another group")
	// ErrGroupDuplicate: a change already admitted (a replay).
	ErrGroupDuplicate = errors.New("e2ee: group change already applied")
	// ErrGroupStale: a change citing changes older than the log keeps (a
	// replay of an old change, or one held back too long).
	ErrGroupStale = errors.New("e2ee: group change too old")
	// ErrGroupMissingParent: a change whose parents have not arrived; it
	// is held (up to maxPendingChanges) and admitted when they do.
	ErrGroupMissingParent = errors.New("e2ee: group change waits for earlier changes")
	// ErrGroupUnbound: a log of version 1, written before a group's id was
	// bound to its creation: it does not carry the creation, so its base
	// state is nobody's signed word (ParseGroupLog refuses it; only a
	// home's own, ParseStoredGroupLog, is read).
	ErrGroupUnbound = errors.New("e2ee: group log without its creation (made before group ids were bound to their creation)")
)

// GroupRole is a member's role in a group.
type GroupRole uint8

const (
	RoleMember GroupRole = 1
	RoleAdmin  GroupRole = 2
	RoleOwner  GroupRole = 3
)

func (r GroupRole) String() string {
	switch r {
	case RoleMember:
		return "member"
	case RoleAdmin:
		return "admin"
	case RoleOwner:
		return "owner"
	}
	return fmt.Sprintf("role%d", uint8(r))
}

// manages reports whether the role may add, remove and change others.
func (r GroupRole) manages() bool { return r == RoleAdmin || r == RoleOwner }

// GroupOp is what a change does.
type GroupOp uint8

const (
	OpCreate GroupOp = 1 // Title, Members: the creator first, as owner; Salt
	OpAdd    GroupOp = 2 // Members, each as member or admin
	OpRemove GroupOp = 3 // Targets
	OpLeave  GroupOp = 4 // the actor leaves
	OpRole   GroupOp = 5 // Targets become Role (admin or member)
	OpTitle  GroupOp = 6 // Title
	OpMute   GroupOp = 7 // Targets may not send until Until (unix ms; 0 lifts it)
)

func (o GroupOp) String() string {
	switch o {
	case OpCreate:
		return "create"
	case OpAdd:
		return "add"
	case OpRemove:
		return "remove"
	case OpLeave:
		return "leave"
	case OpRole:
		return "role"
	case OpTitle:
		return "title"
	case OpMute:
		return "mute"
	}
	return fmt.Sprintf("op%d", uint8(o))
}

// GroupMember is one member of a group as the changes made it.
type GroupMember struct {
	User       string
	Identity   IdentityKey // the account identity key the adder vouched for
	Role       GroupRole
	MutedUntil int64 // unix ms; 0: not muted
}

// GroupChange is one signed membership change.
type GroupChange struct {
	Group   [GroupIDSize]byte
	Parents [][32]byte // the heads the author held, ascending; none for create
	Depth   uint64     // 0 for create, else 1 + the deepest parent's
	Actor   string
	Time    int64 // unix ms, as the author's clock said: shown, not trusted
	Op      GroupOp
	Title   string        // create, title
	Members []GroupMember // create, add (MutedUntil unused)
	Targets []string      // remove, role, mute
	Role    GroupRole     // role
	Until   int64         // mute
	// Salt is a creation's random salt: the group's id is made from the
	// creation (GroupID), so nobody but its owner can make a creation for
	// an id, and the salt keeps ids of alike creations apart and the
	// title and members out of reach of a guess from the id.
	Salt [GroupSaltSize]byte
	// Signature is the actor's identity key's Ed25519 signature over
	// groupChangeContext ‖ the change's body (everything above).
	Signature []byte
}

// body is the change's encoding without its signature: what is signed
// and hashed.
func (c *GroupChange) body() []byte {
	e := &keyEncoder{}
	if c.Op == OpCreate {
		e.u8(groupCreateVersion)
	} else {
		e.u8(groupChangeVersion)
	}
	e.raw(c.Group[:])
	e.u8(byte(len(c.Parents)))
	for _, p := range c.Parents {
		e.raw(p[:])
	}
	e.i64(int64(c.Depth))
	e.str8(c.Actor)
	e.i64(c.Time)
	e.u8(byte(c.Op))
	switch c.Op {
	case OpCreate:
		encodeTitle(e, c.Title)
		encodeMembers(e, c.Members)
		e.raw(c.Salt[:])
	case OpAdd:
		encodeMembers(e, c.Members)
	case OpRemove:
		encodeTargets(e, c.Targets)
	case OpRole:
		encodeTargets(e, c.Targets)
		e.u8(byte(c.Role))
	case OpTitle:
		encodeTitle(e, c.Title)
	case OpMute:
		encodeTargets(e, c.Targets)
		e.i64(c.Until)
	}
	return e.b
}

func encodeTitle(e *keyEncoder, t string) {
	e.u16(uint16(len(t)))
	e.raw([]byte(t))
}

func encodeMembers(e *keyEncoder, ms []GroupMember) {
	e.u16(uint16(len(ms)))
	for _, m := range ms {
		e.str8(m.User)
		e.raw(m.Identity.k[:])
		e.u8(byte(m.Role))
	}
}

func encodeTargets(e *keyEncoder, ts []string) {
	e.u16(uint16(len(ts)))
	for _, t := range ts {
		e.str8(t)
	}
}

// GroupID is the id a creation makes (docs/protocol.md §9.7):
// SHA-256("securechat group id v1" ‖ the creation's body with the id
// zeroed)[:16]. The body holds the owner's identity key, the title, the
// first members and the salt, so the id commits to the whole signed
// creation: nobody but the owner can make a creation for an id (the
// creation must be signed by the key it names first), and not even the
// owner can make two different ones.
func GroupID(c *GroupChange) [GroupIDSize]byte {
	unbound := *c
	unbound.Group = [GroupIDSize]byte{}
	h := sha256.Sum256(append([]byte(groupIDContext), unbound.body()...))
	return [GroupIDSize]byte(h[:GroupIDSize])
}

// Hash is the change's id: SHA-256 of its body. Other changes name it as
// a parent.
func (c *GroupChange) Hash() [32]byte { return sha256.Sum256(c.body()) }

// MarshalBinary is the change as it travels: body ‖ signature[64].
func (c *GroupChange) MarshalBinary() ([]byte, error) {
	if err := c.checkShape(); err != nil {
		return nil, err
	}
	if len(c.Signature) != signatureSize {
		return nil, fmt.Errorf("%w: unsigned", ErrGroupChangeInvalid)
	}
	return append(c.body(), c.Signature...), nil
}

// ParseGroupChange decodes a change strictly; it checks the shape, not the
// signature (GroupLog.Add does, against the author's key).
func ParseGroupChange(b []byte) (*GroupChange, error) {
	d := &keyDecoder{b: b, what: "group change"}
	version := d.u8()
	if d.err == nil && version != groupChangeVersion && version != groupCreateVersion {
		return nil, fmt.Errorf("%w: group change: version %d", ErrUnsupportedVersion, version)
	}
	c := &GroupChange{}
	copy(c.Group[:], d.take(GroupIDSize))
	n := int(d.u8())
	if n > MaxChangeParents {
		d.fail("%d parents", n)
	}
	for range n {
		if d.err != nil {
			break
		}
		c.Parents = append(c.Parents, [32]byte(d.take(32)))
	}
	c.Depth = uint64(d.i64())
	c.Actor = d.str8()
	c.Time = d.i64()
	c.Op = GroupOp(d.u8())
	switch c.Op {
	case OpCreate:
		c.Title = d.str16()
		c.Members = decodeMembers(d)
		c.Salt = [GroupSaltSize]byte(d.take(GroupSaltSize))
	case OpAdd:
		c.Members = decodeMembers(d)
	case OpRemove:
		c.Targets = decodeTargets(d)
	case OpLeave:
	case OpRole:
		c.Targets = decodeTargets(d)
		c.Role = GroupRole(d.u8())
	case OpTitle:
		c.Title = d.str16()
	case OpMute:
		c.Targets = decodeTargets(d)
		c.Until = d.i64()
	default:
		d.fail("unknown operation %d", c.Op)
	}
	if d.err == nil && (c.Op == OpCreate) != (version == groupCreateVersion) {
		if c.Op == OpCreate {
			return nil, fmt.Errorf("%w: group change: a creation of version %d, made before group ids were bound to their creation", ErrUnsupportedVersion, version)
		}
		return nil, fmt.Errorf("%w: group change: %s of version %d", ErrUnsupportedVersion, c.Op, version)
	}
	c.Signature = bytes.Clone(d.take(signatureSize))
	if err := d.finish(); err != nil {
		return nil, err
	}
	if err := c.checkShape(); err != nil {
		return nil, err
	}
	return c, nil
}

func (d *keyDecoder) str8() string {
	return string(d.take(int(d.u8())))
}

func (d *keyDecoder) str16() string {
	return string(d.take(int(d.u16())))
}

func decodeMembers(d *keyDecoder) []GroupMember {
	n := int(d.u16())
	var out []GroupMember
	for range n {
		if d.err != nil {
			return nil
		}
		m := GroupMember{User: d.str8()}
		m.Identity = d.identityKey()
		m.Role = GroupRole(d.u8())
		out = append(out, m)
	}
	return out
}

func decodeTargets(d *keyDecoder) []string {
	n := int(d.u16())
	var out []string
	for range n {
		if d.err != nil {
			return nil
		}
		out = append(out, d.str8())
	}
	return out
}

// checkShape checks what a change must be regardless of any state:
// names, counts, sorted unique parents, the fields its operation uses.
func (c *GroupChange) checkShape() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrGroupChangeInvalid, fmt.Sprintf(format, args...))
	}
	if !validGroupUser(c.Actor) {
		return bad("actor %q is not a user name", c.Actor)
	}
	if (c.Op == OpCreate) != (len(c.Parents) == 0) {
		return bad("a creation has no parents and every other change has some")
	}
	if c.Op == OpCreate && c.Depth != 0 || c.Op != OpCreate && c.Depth == 0 {
		return bad("depth %d for %s", c.Depth, c.Op)
	}
	if len(c.Parents) > MaxChangeParents {
		return bad("%d parents", len(c.Parents))
	}
	for i := 1; i < len(c.Parents); i++ {
		if bytes.Compare(c.Parents[i-1][:], c.Parents[i][:]) >= 0 {
			return bad("parents not in ascending order")
		}
	}
	needs := map[GroupOp][3]bool{ // title, members, targets
		OpCreate: {true, true, false}, OpAdd: {false, true, false}, OpRemove: {false, false, true},
		OpLeave: {}, OpRole: {false, false, true}, OpTitle: {true, false, false}, OpMute: {false, false, true},
	}
	need, ok := needs[c.Op]
	if !ok {
		return bad("unknown operation %d", c.Op)
	}
	if need[0] {
		if c.Title == "" || len(c.Title) > MaxGroupTitle || !utf8.ValidString(c.Title) {
			return bad("a title must be 1 to %d bytes of UTF-8", MaxGroupTitle)
		}
	} else if c.Title != "" {
		return bad("%s carries a title", c.Op)
	}
	if need[1] != (len(c.Members) > 0) {
		return bad("%s with %d members", c.Op, len(c.Members))
	}
	if need[2] != (len(c.Targets) > 0) {
		return bad("%s with %d targets", c.Op, len(c.Targets))
	}
	if len(c.Members) > MaxGroupMembers || len(c.Targets) > maxGroupChangeTarget {
		return bad("too many members")
	}
	seen := make(map[string]bool)
	for i, m := range c.Members {
		if !validGroupUser(m.User) || seen[m.User] || m.Identity.IsZero() {
			return bad("member %q named twice, not a user name, or without a key", m.User)
		}
		seen[m.User] = true
		switch {
		case c.Op == OpCreate && i == 0:
			if m.User != c.Actor || m.Role != RoleOwner {
				return bad("a creation lists its creator first, as owner")
			}
		case m.Role != RoleMember && m.Role != RoleAdmin:
			return bad("member %q as %s", m.User, m.Role)
		}
		if m.MutedUntil != 0 {
			return bad("a new member cannot be muted")
		}
	}
	for _, t := range c.Targets {
		if !validGroupUser(t) || seen[t] {
			return bad("target %q named twice or not a user name", t)
		}
		seen[t] = true
	}
	if c.Op == OpRole && c.Role != RoleMember && c.Role != RoleAdmin {
		return bad("role %s cannot be given", c.Role)
	}
	if c.Op != OpRole && c.Role != 0 || c.Op != OpMute && c.Until != 0 || c.Until < 0 {
		return bad("%s carries a role or a time it does not use", c.Op)
	}
	if c.Op != OpCreate && c.Salt != [GroupSaltSize]byte{} {
		return bad("%s carries a salt", c.Op)
	}
	if c.Op == OpCreate && c.Group != GroupID(c) {
		// docs/protocol.md §9.7: an id is its creation's.
		return bad("the group id is not the one its creation makes")
	}
	return nil
}

func validGroupUser(u string) bool {
	return u != "" && len(u) <= maxGroupUserLen && utf8.ValidString(u)
}

// SignGroupChange fills in c's signature with the actor's identity key.
func SignGroupChange(c *GroupChange, key IdentityPrivateKey) error {
	if err := c.checkShape(); err != nil {
		return err
	}
	sig, err := key.sign(append([]byte(groupChangeContext), c.body()...))
	if err != nil {
		return err
	}
	c.Signature = sig
	return nil
}

func (c *GroupChange) verify(key IdentityKey) bool {
	return key.verify(append([]byte(groupChangeContext), c.body()...), c.Signature)
}

// GroupState is a group's membership at one point: its id, title and
// members in the order they joined.
type GroupState struct {
	ID      [GroupIDSize]byte
	Title   string
	Members []GroupMember
}

// Member returns user's membership, if user is a member.
func (s GroupState) Member(user string) (GroupMember, bool) {
	i := s.index(user)
	if i < 0 {
		return GroupMember{}, false
	}
	return s.Members[i], true
}

func (s GroupState) index(user string) int {
	return slices.IndexFunc(s.Members, func(m GroupMember) bool { return m.User == user })
}

func (s *GroupState) clone() GroupState {
	return GroupState{ID: s.ID, Title: s.Title, Members: slices.Clone(s.Members)}
}

// apply checks that c is allowed in s — signed by a member whose role
// allows it, on members that exist — and applies it. s is unchanged on
// an error. maxMembers bounds the size.
func (s *GroupState) apply(c *GroupChange, maxMembers int) error {
	return s.applySigned(c, nil, maxMembers)
}

// applySigned is apply for a change whose signature was verified under
// signer: the author's key must still be signer, and no signature is
// checked again.
func (s *GroupState) applySigned(c *GroupChange, signer *IdentityKey, maxMembers int) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s by %s: %s", ErrGroupChangeInvalid, c.Op, c.Actor, fmt.Sprintf(format, args...))
	}
	if c.Group != s.ID {
		return fmt.Errorf("%w", ErrGroupOther)
	}
	actor, ok := s.Member(c.Actor)
	if !ok {
		return bad("not a member")
	}
	if signer != nil && !signer.Equal(actor.Identity) || signer == nil && !c.verify(actor.Identity) {
		return bad("the signature is not the member's")
	}
	next := s.clone()
	switch c.Op {
	case OpCreate:
		return bad("the group exists")
	case OpAdd:
		if !actor.Role.manages() {
			return bad("only admins add members")
		}
		for _, m := range c.Members {
			if next.index(m.User) >= 0 {
				return bad("%s is a member already", m.User)
			}
			next.Members = append(next.Members, m)
		}
		if len(next.Members) > maxMembers {
			return bad("the group would have %d members, more than %d", len(next.Members), maxMembers)
		}
	case OpRemove:
		if !actor.Role.manages() {
			return bad("only admins remove members")
		}
		for _, t := range c.Targets {
			i := next.index(t)
			switch {
			case i < 0:
				return bad("%s is not a member", t)
			case t == c.Actor:
				return bad("a member leaves rather than removing themself")
			case next.Members[i].Role == RoleOwner:
				return bad("the owner cannot be removed")
			}
			next.Members = slices.Delete(next.Members, i, i+1)
		}
	case OpLeave:
		i := next.index(c.Actor)
		wasOwner := next.Members[i].Role == RoleOwner
		next.Members = slices.Delete(next.Members, i, i+1)
		if wasOwner && len(next.Members) > 0 {
			// The longest-standing admin, else the longest-standing
			// member, becomes the owner.
			j := slices.IndexFunc(next.Members, func(m GroupMember) bool { return m.Role == RoleAdmin })
			if j < 0 {
				j = 0
			}
			next.Members[j].Role = RoleOwner
			next.Members[j].MutedUntil = 0
		}
	case OpRole:
		if !actor.Role.manages() {
			return bad("only admins change roles")
		}
		for _, t := range c.Targets {
			i := next.index(t)
			switch {
			case i < 0:
				return bad("%s is not a member", t)
			case t == c.Actor:
				return bad("a member cannot change their own role")
			case next.Members[i].Role == RoleOwner:
				return bad("the owner's role cannot be changed")
			}
			next.Members[i].Role = c.Role
			if c.Role == RoleAdmin {
				next.Members[i].MutedUntil = 0
			}
		}
	case OpTitle:
		if !actor.Role.manages() {
			return bad("only admins change the title")
		}
		next.Title = c.Title
	case OpMute:
		if !actor.Role.manages() {
			return bad("only admins mute members")
		}
		for _, t := range c.Targets {
			i := next.index(t)
			switch {
			case i < 0:
				return bad("%s is not a member", t)
			case next.Members[i].Role != RoleMember:
				return bad("%s is an admin and cannot be muted", t)
			}
			next.Members[i].MutedUntil = c.Until
		}
	}
	*s = next
	return nil
}

// stateFromCreate is the state a creation makes.
func stateFromCreate(c *GroupChange, maxMembers int) (GroupState, error) {
	if c.Op != OpCreate {
		return GroupState{}, fmt.Errorf("%w: the first change is not a creation", ErrGroupChangeInvalid)
	}
	if !c.verify(c.Members[0].Identity) {
		return GroupState{}, fmt.Errorf("%w: the creation's signature is not its owner's", ErrGroupChangeInvalid)
	}
	if len(c.Members) > maxMembers {
		return GroupState{}, fmt.Errorf("%w: %d members, more than %d", ErrGroupChangeInvalid, len(c.Members), maxMembers)
	}
	return GroupState{ID: c.Group, Title: c.Title, Members: slices.Clone(c.Members)}, nil
}
