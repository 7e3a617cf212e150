package e2ee

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
)

// GroupLog is one client's record of a group's changes (docs/protocol.md
// §9.7): the signed creation, which makes the group's id, a base state
// into which old changes are folded, the last GroupWindow depth levels of
// changes kept to order concurrent ones, and the changes still waiting
// for their parents. State is the replay of the window over the base in
// the order (depth, hash).
type GroupLog struct {
	maxMembers int

	create    *GroupChange // nil only in a version-1 log a home kept (ParseStoredGroupLog)
	base      GroupState
	baseDepth uint64              // the deepest folded change's depth
	frontier  map[[32]byte]uint64 // folded changes no folded change names, with their depths
	window    map[[32]byte]*logged
	pending   map[[32]byte]*GroupChange

	// work counts the member records the checks copied or walked; past
	// budget (when not 0) a change is refused, so that a log anyone can
	// send costs its reader work bounded by its size's order, not its
	// square (parseGroupLog).
	work, budget int
	// deferReplay: parseGroupLog replays once, after every change is in.
	deferReplay bool

	// Derived by replay.
	state   GroupState
	heads   [][32]byte
	skipped []SkippedChange
}

// SkippedChange is an admitted change that the order made void: a
// concurrent change before it removed its author, say. Every member skips
// the same ones.
type SkippedChange struct {
	Change *GroupChange
	Err    error
}

const maxFrontier = 256

// logged is an admitted change with its hash and the key its signature
// was verified under, so a replay compares keys rather than verifying
// signatures again.
type logged struct {
	c      *GroupChange
	h      [32]byte
	signer IdentityKey
}

// NewGroupLog starts a log at a group's creation, which it verifies:
// its id the one it makes (GroupID), signed by the owner it names, within
// maxMembers.
func NewGroupLog(create *GroupChange, maxMembers int) (*GroupLog, error) {
	if err := create.checkShape(); err != nil {
		return nil, err
	}
	st, err := stateFromCreate(create, maxMembers)
	if err != nil {
		return nil, err
	}
	l := &GroupLog{maxMembers: maxMembers, create: create, base: st,
		frontier: map[[32]byte]uint64{create.Hash(): 0},
		window:   make(map[[32]byte]*logged), pending: make(map[[32]byte]*GroupChange)}
	l.replay()
	return l, nil
}

// Creation is the group's signed creation, which makes its id; nil for a
// log a home kept from before logs carried it (ParseStoredGroupLog): such
// a group's id is not bound to anything, and its log is not one a new
// member takes.
func (l *GroupLog) Creation() *GroupChange { return l.create }

// State is the group as the admitted changes make it.
func (l *GroupLog) State() GroupState { return l.state.clone() }

// Skipped are the admitted changes the order made void.
func (l *GroupLog) Skipped() []SkippedChange { return slices.Clone(l.skipped) }

// Heads are the changes no admitted change names: what the next change
// names as its parents.
func (l *GroupLog) Heads() [][32]byte { return slices.Clone(l.heads) }

// HeadsHash sums up the admitted changes: members whose hashes differ hold
// different changes (one was withheld from someone). Group messages carry
// it.
func (l *GroupLog) HeadsHash() [32]byte {
	h := sha256.New()
	h.Write([]byte(groupHeadsContext))
	h.Write(l.base.ID[:])
	for _, p := range l.heads {
		h.Write(p[:])
	}
	return [32]byte(h.Sum(nil))
}

// Prepare fills in c's group, parents and depth so that it follows every
// head (the deepest MaxChangeParents of them, if there are more); the
// caller then signs it (SignGroupChange) and offers it to Add.
func (l *GroupLog) Prepare(c *GroupChange) {
	heads := slices.Clone(l.heads)
	slices.SortFunc(heads, func(a, b [32]byte) int {
		return cmp.Or(cmp.Compare(l.depthOf(b), l.depthOf(a)), bytes.Compare(a[:], b[:]))
	})
	if len(heads) > MaxChangeParents {
		heads = heads[:MaxChangeParents]
	}
	slices.SortFunc(heads, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	c.Group = l.base.ID
	c.Parents = heads
	c.Depth = 0
	for _, p := range heads {
		c.Depth = max(c.Depth, l.depthOf(p)+1)
	}
}

// depthOf is the depth of an admitted or folded change the log knows.
func (l *GroupLog) depthOf(h [32]byte) uint64 {
	if e, ok := l.window[h]; ok {
		return e.c.Depth
	}
	return l.frontier[h]
}

func (l *GroupLog) known(h [32]byte) bool {
	_, inWindow := l.window[h]
	_, folded := l.frontier[h]
	return inWindow || folded
}

// Add admits a change: well formed, of this group, not seen before, its
// parents known, its depth right, and allowed to its author in the state
// the author saw (its ancestors replayed) — which checks the signature
// against the author's key as the group records it. It returns the
// changes admitted, c and any held ones it let in, in order. A change
// whose parents have not arrived is held and ErrGroupMissingParent
// returned; a refused change changes nothing.
func (l *GroupLog) Add(c *GroupChange) ([]*GroupChange, error) {
	if err := l.admit(c); err != nil {
		if err == errHeld {
			return nil, fmt.Errorf("%w: %s by %s", ErrGroupMissingParent, c.Op, c.Actor)
		}
		return nil, err
	}
	added := []*GroupChange{c}
	for progress := true; progress; {
		progress = false
		for _, p := range l.sortedPending() {
			if !l.parentsKnown(p) {
				continue
			}
			delete(l.pending, p.Hash())
			if l.admit(p) == nil {
				added = append(added, p)
			}
			progress = true
		}
	}
	return added, nil
}

var errHeld = fmt.Errorf("held")

func (l *GroupLog) admit(c *GroupChange) error {
	if err := c.checkShape(); err != nil {
		return err
	}
	if c.Group != l.base.ID {
		return ErrGroupOther
	}
	h := c.Hash()
	if _, held := l.pending[h]; held || l.known(h) {
		return fmt.Errorf("%w: %s by %s", ErrGroupDuplicate, c.Op, c.Actor)
	}
	if c.Op == OpCreate {
		return fmt.Errorf("%w: a second creation", ErrGroupChangeInvalid)
	}
	if c.Depth <= l.baseDepth {
		return fmt.Errorf("%w: %s by %s at depth %d, the log keeps from %d", ErrGroupStale, c.Op, c.Actor, c.Depth, l.baseDepth+1)
	}
	if !l.parentsKnown(c) {
		if len(l.pending) >= maxPendingChanges {
			return fmt.Errorf("%w: %d changes wait for earlier ones already", ErrGroupStale, len(l.pending))
		}
		l.pending[h] = c
		return errHeld
	}
	var depth uint64
	for _, p := range c.Parents {
		depth = max(depth, l.depthOf(p)+1)
	}
	if c.Depth != depth {
		return fmt.Errorf("%w: depth %d, its parents make %d", ErrGroupChangeInvalid, c.Depth, depth)
	}
	if len(l.window) >= maxWindowChanges {
		return fmt.Errorf("%w: %d recent changes are kept already", ErrGroupStale, len(l.window))
	}
	anc := sortLogged(l.ancestors(c))
	if err := l.spend((len(anc) + 2) * len(l.base.Members)); err != nil {
		return err
	}
	seen := l.base.clone()
	for _, a := range anc {
		seen.applySigned(a.c, &a.signer, l.maxMembers) // a void ancestor is void for its author too
	}
	author, _ := seen.Member(c.Actor) // before apply: a leave removes its author
	if err := seen.apply(c, l.maxMembers); err != nil {
		return err
	}
	l.window[h] = &logged{c: c, h: h, signer: author.Identity}
	if !l.deferReplay {
		l.replay()
	}
	l.fold()
	return nil
}

// maxWindowChanges bounds the changes a log keeps in its window: a group's
// members change far less often than this in 64 depth levels.
const maxWindowChanges = 512

// maxParseWork bounds the member records checking a received log may copy
// or walk (a few hundred milliseconds): a real group's log is far below
// it; one made to cost its reader more is refused.
const maxParseWork = 32 << 20

// spend counts n units of work against the budget.
func (l *GroupLog) spend(n int) error {
	l.work += n
	if l.budget > 0 && l.work > l.budget {
		return fmt.Errorf("%w: the log takes too much work to check", ErrGroupChangeInvalid)
	}
	return nil
}

func (l *GroupLog) parentsKnown(c *GroupChange) bool {
	for _, p := range c.Parents {
		if !l.known(p) {
			return false
		}
	}
	return true
}

// ancestors are the window's changes c descends from.
func (l *GroupLog) ancestors(c *GroupChange) []*logged {
	var out []*logged
	seen := make(map[[32]byte]bool)
	queue := slices.Clone(c.Parents)
	for len(queue) > 0 {
		h := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		a, ok := l.window[h]
		if !ok || seen[h] {
			continue
		}
		seen[h] = true
		out = append(out, a)
		queue = append(queue, a.c.Parents...)
	}
	return out
}

// ordered sorts changes in the replay order: depth, then hash.
func (l *GroupLog) ordered(cs []*GroupChange) []*GroupChange {
	type keyed struct {
		c *GroupChange
		h [32]byte
	}
	ks := make([]keyed, len(cs))
	for i, c := range cs {
		ks[i] = keyed{c, c.Hash()}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		return cmp.Or(cmp.Compare(a.c.Depth, b.c.Depth), bytes.Compare(a.h[:], b.h[:]))
	})
	out := make([]*GroupChange, len(ks))
	for i, k := range ks {
		out[i] = k.c
	}
	return out
}

// sortLogged sorts admitted changes in the replay order.
func sortLogged(es []*logged) []*logged {
	slices.SortFunc(es, func(a, b *logged) int {
		return cmp.Or(cmp.Compare(a.c.Depth, b.c.Depth), bytes.Compare(a.h[:], b.h[:]))
	})
	return es
}

func (l *GroupLog) sortedPending() []*GroupChange {
	return l.ordered(slices.Collect(maps.Values(l.pending)))
}

// replay derives the state, heads and skipped changes from base and window.
func (l *GroupLog) replay() {
	l.state = l.base.clone()
	l.skipped = nil
	named := make(map[[32]byte]bool)
	for _, e := range sortLogged(slices.Collect(maps.Values(l.window))) {
		if err := l.state.applySigned(e.c, &e.signer, l.maxMembers); err != nil {
			l.skipped = append(l.skipped, SkippedChange{Change: e.c, Err: err})
		}
		for _, p := range e.c.Parents {
			named[p] = true
		}
	}
	l.heads = l.heads[:0]
	for h := range l.window {
		if !named[h] {
			l.heads = append(l.heads, h)
		}
	}
	for h := range l.frontier {
		if !named[h] {
			l.heads = append(l.heads, h)
		}
	}
	slices.SortFunc(l.heads, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
}

// fold moves the window's oldest depth levels into the base while it
// spans more than GroupWindow levels. Folding applies the same changes in
// the same order as replay, so the state does not change.
func (l *GroupLog) fold() {
	folded := false
	for {
		var lo, hi uint64 = ^uint64(0), 0
		for _, e := range l.window {
			lo, hi = min(lo, e.c.Depth), max(hi, e.c.Depth)
		}
		if len(l.window) == 0 || hi-lo < GroupWindow {
			break
		}
		var level []*logged
		for _, e := range l.window {
			if e.c.Depth == lo {
				level = append(level, e)
			}
		}
		for _, e := range sortLogged(level) {
			l.base.applySigned(e.c, &e.signer, l.maxMembers)
			delete(l.window, e.h)
			for _, p := range e.c.Parents {
				delete(l.frontier, p)
			}
			l.frontier[e.h] = e.c.Depth
		}
		l.baseDepth = lo
		folded = true
	}
	for len(l.frontier) > maxFrontier {
		var oldest [32]byte
		first := true
		for h, d := range l.frontier {
			if first || d < l.frontier[oldest] || d == l.frontier[oldest] && bytes.Compare(h[:], oldest[:]) < 0 {
				oldest, first = h, false
			}
		}
		delete(l.frontier, oldest)
	}
	for h, c := range l.pending {
		if c.Depth <= l.baseDepth {
			delete(l.pending, h)
		}
	}
	if folded && !l.deferReplay {
		l.replay()
	}
}

// MarshalBinary encodes the log, as a member's home keeps it and as the
// adder hands it to a new member (docs/protocol.md §9.7):
//
//	u8 version = 2 ‖ u32 len ‖ creation ‖ base state ‖ u64 base depth
//	‖ u16 n ‖ n × (hash[32] ‖ u64 depth)          the frontier
//	‖ u16 n ‖ n × (u32 len ‖ change)               the window, in order
//	‖ u16 n ‖ n × (u32 len ‖ change)               the held changes
//	state = group id[16] ‖ u16 len ‖ title ‖ u16 n ‖ n × (u8 len ‖ user ‖ identity[32] ‖ u8 role ‖ i64 muted until)
//
// A log read from version 1 (no creation) is written as version 1 again.
func (l *GroupLog) MarshalBinary() ([]byte, error) {
	e := &keyEncoder{}
	if l.create == nil {
		e.u8(groupLogUnbound)
	} else {
		b, err := l.create.MarshalBinary()
		if err != nil {
			return nil, err
		}
		e.u8(groupLogVersion)
		e.u32(uint32(len(b)))
		e.raw(b)
	}
	e.raw(l.base.ID[:])
	encodeTitle(e, l.base.Title)
	e.u16(uint16(len(l.base.Members)))
	for _, m := range l.base.Members {
		e.str8(m.User)
		e.raw(m.Identity.k[:])
		e.u8(byte(m.Role))
		e.i64(m.MutedUntil)
	}
	e.i64(int64(l.baseDepth))
	front := slices.Collect(maps.Keys(l.frontier))
	slices.SortFunc(front, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	e.u16(uint16(len(front)))
	for _, h := range front {
		e.raw(h[:])
		e.i64(int64(l.frontier[h]))
	}
	var window []*GroupChange
	for _, w := range sortLogged(slices.Collect(maps.Values(l.window))) {
		window = append(window, w.c)
	}
	for _, cs := range [][]*GroupChange{window, l.ordered(slices.Collect(maps.Values(l.pending)))} {
		e.u16(uint16(len(cs)))
		for _, c := range cs {
			b, err := c.MarshalBinary()
			if err != nil {
				return nil, err
			}
			e.u32(uint32(len(b)))
			e.raw(b)
		}
	}
	return e.b, nil
}

// maxGroupChangeSize bounds one encoded change: a creation or addition of
// MaxGroupMembers members.
const maxGroupChangeSize = 1 << 20

// ParseGroupLog decodes a log that came from someone else: a new
// member's welcome, another member's version of a group (docs/protocol.md
// §9.7). The creation is verified — the id its own (GroupID), signed by
// the owner it names — and binds the log's id. When nothing was folded
// (base depth 0) the base state must be exactly the creation's, so the
// whole log is checked back to the owner's signature; when changes were
// folded, the base state and frontier are taken from the member who sent
// the log. Every window change is admitted again, so each is checked as
// Add checks it. A version-1 log, which has no creation, is refused
// (ErrGroupUnbound).
func ParseGroupLog(b []byte, maxMembers int) (*GroupLog, error) {
	return parseGroupLog(b, maxMembers, false)
}

// ParseStoredGroupLog is ParseGroupLog for a log this home kept itself: a
// version-1 log, written before logs carried their creation, is read too
// (its base state and frontier as given, as they were then), so that an
// upgrade keeps a home's groups.
func ParseStoredGroupLog(b []byte, maxMembers int) (*GroupLog, error) {
	return parseGroupLog(b, maxMembers, true)
}

func parseGroupLog(b []byte, maxMembers int, stored bool) (*GroupLog, error) {
	d := &keyDecoder{b: b, what: "group log"}
	version := d.u8()
	switch {
	case d.err != nil:
		return nil, d.err
	case version == groupLogUnbound && !stored:
		return nil, ErrGroupUnbound
	case version != groupLogVersion && version != groupLogUnbound:
		return nil, fmt.Errorf("%w: group log: version %d", ErrUnsupportedVersion, version)
	}
	var create *GroupChange
	var created GroupState
	if version == groupLogVersion {
		size := int(d.u32())
		if size > maxGroupChangeSize {
			d.fail("a creation of %d bytes", size)
		}
		if d.err != nil { // before take, which would allocate size bytes
			return nil, d.err
		}
		raw := d.take(size)
		if d.err != nil {
			return nil, d.err
		}
		var err error
		if create, err = ParseGroupChange(raw); err != nil {
			return nil, fmt.Errorf("group log: %w", err)
		}
		if created, err = stateFromCreate(create, maxMembers); err != nil {
			return nil, fmt.Errorf("group log: %w", err)
		}
	}
	l := &GroupLog{maxMembers: maxMembers, create: create, frontier: make(map[[32]byte]uint64),
		window: make(map[[32]byte]*logged), pending: make(map[[32]byte]*GroupChange)}
	copy(l.base.ID[:], d.take(GroupIDSize))
	l.base.Title = d.str16()
	n := int(d.u16())
	if n > MaxGroupMembers {
		d.fail("%d members", n)
	}
	seen := make(map[string]bool)
	for i := 0; i < n && d.err == nil; i++ {
		m := GroupMember{User: d.str8(), Identity: d.identityKey(), Role: GroupRole(d.u8()), MutedUntil: d.i64()}
		if !validGroupUser(m.User) || seen[m.User] || m.Role < RoleMember || m.Role > RoleOwner {
			d.fail("member %q", m.User)
		}
		seen[m.User] = true
		l.base.Members = append(l.base.Members, m)
	}
	l.baseDepth = uint64(d.i64())
	n = int(d.u16())
	if n > maxFrontier {
		d.fail("%d frontier changes", n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		h := [32]byte(d.take(32))
		l.frontier[h] = uint64(d.i64())
	}
	var lists [2][]*GroupChange
	for k := range lists {
		n := int(d.u16())
		for i := 0; i < n && d.err == nil; i++ {
			size := int(d.u32())
			if size > maxGroupChangeSize {
				d.fail("a change of %d bytes", size)
				break
			}
			c, err := ParseGroupChange(d.take(size))
			if err != nil && d.err == nil {
				d.err = err
			}
			lists[k] = append(lists[k], c)
		}
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	if len(l.frontier) == 0 {
		return nil, fmt.Errorf("%w: group log: no frontier", ErrMalformedKeyData)
	}
	if len(lists[1]) > maxPendingChanges {
		return nil, fmt.Errorf("%w: group log: %d held changes", ErrMalformedKeyData, len(lists[1]))
	}
	if create != nil {
		if err := l.checkBase(created); err != nil {
			return nil, err
		}
	}
	if len(lists[0]) > maxWindowChanges {
		return nil, fmt.Errorf("%w: group log: %d changes in its window", ErrMalformedKeyData, len(lists[0]))
	}
	l.replay()
	// The state is replayed once, after every change is in, and the
	// checks are bounded in work (spend).
	l.deferReplay, l.budget = true, maxParseWork
	for _, c := range l.ordered(lists[0]) {
		if err := l.admit(c); err != nil {
			return nil, fmt.Errorf("group log: %w", err)
		}
	}
	l.deferReplay, l.budget, l.work = false, 0, 0
	l.replay()
	for _, c := range lists[1] {
		l.pending[c.Hash()] = c
	}
	return l, nil
}

// checkBase checks the base state and frontier against the creation,
// whose state is created (docs/protocol.md §9.7): the same group; and,
// when nothing was folded, exactly the creation's state with the
// creation as the one frontier change. Folded, the base is the sender's
// word, its frontier within the folded depths.
func (l *GroupLog) checkBase(created GroupState) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: group log: %s", ErrGroupChangeInvalid, fmt.Sprintf(format, args...))
	}
	if l.base.ID != created.ID {
		return bad("the base state is of another group than the creation")
	}
	if l.baseDepth == 0 {
		if !sameState(l.base, created) {
			return bad("nothing is folded, but the base state is not the creation's")
		}
		if d, ok := l.frontier[l.create.Hash()]; len(l.frontier) != 1 || !ok || d != 0 {
			return bad("nothing is folded, but the frontier is not the creation")
		}
		return nil
	}
	for _, d := range l.frontier {
		if d == 0 || d > l.baseDepth {
			return bad("a folded change at depth %d, the base is at %d", d, l.baseDepth)
		}
	}
	return nil
}

func sameState(a, b GroupState) bool {
	return a.ID == b.ID && a.Title == b.Title && slices.EqualFunc(a.Members, b.Members, func(x, y GroupMember) bool {
		return x.User == y.User && x.Identity.Equal(y.Identity) && x.Role == y.Role && x.MutedUntil == y.MutedUntil
	})
}

// Recent returns up to n admitted changes still in the window, the most
// recent (in the replay order) first: what a member sends along with a
// new change so that one who missed an earlier change catches up.
func (l *GroupLog) Recent(n int) []*GroupChange {
	es := sortLogged(slices.Collect(maps.Values(l.window)))
	var out []*GroupChange
	for i := len(es) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, es[i].c)
	}
	return out
}
