package e2ee

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// Tests of docs/protocol.md §9.7: a group's id is made by its signed
// creation, which the log carries.

// rawChange encodes c with a signature by u over its body as it is, with
// none of the checks SignGroupChange and MarshalBinary make: what a forger
// can send.
func rawChange(t *testing.T, c *GroupChange, u groupUser) []byte {
	t.Helper()
	sig, err := u.key.sign(append([]byte(groupChangeContext), c.body()...))
	if err != nil {
		t.Fatal(err)
	}
	c.Signature = sig
	return append(c.body(), sig...)
}

// TestGroupIDBoundToCreation: a creation whose id is not the one it
// makes, one signed by another key than its owner's, and one a stranger
// remade under a known id for herself are each refused, alone and as a
// log's creation.
func TestGroupIDBoundToCreation(t *testing.T) {
	alice, bob, mallory := newGroupUser(t, "alice"), newGroupUser(t, "bob"), newGroupUser(t, "mallory")
	cr := create(t, 1, alice, bob)
	if cr.Group != GroupID(cr) || cr.Group == GroupID(create(t, 2, alice, bob)) {
		t.Fatal("ids are not made by their creation and salt")
	}
	logOf := func(c *GroupChange, raw []byte) []byte {
		// A log whose creation is raw, as a forger would encode it.
		l := &GroupLog{maxMembers: 1000, create: cr, base: GroupState{ID: c.Group, Title: c.Title, Members: c.Members},
			frontier: map[[32]byte]uint64{c.Hash(): 0}}
		b := mustMarshal(t, l)
		good, _ := cr.MarshalBinary()
		return append(append([]byte{groupLogVersion, 0, 0, byte(len(raw) >> 8), byte(len(raw))}, raw...), b[5+len(good):]...)
	}
	for _, tc := range []struct {
		name string
		make func() (*GroupChange, []byte)
		want string
	}{
		{"a wrong id", func() (*GroupChange, []byte) {
			c := create(t, 1, alice, bob)
			c.Group[0] ^= 1
			return c, rawChange(t, c, alice)
		}, "not the one its creation makes"},
		{"another salt under the same id", func() (*GroupChange, []byte) {
			c := create(t, 1, alice, bob)
			c.Salt[1] = 9
			return c, rawChange(t, c, alice)
		}, "not the one its creation makes"},
		{"signed by another key", func() (*GroupChange, []byte) {
			c := create(t, 1, alice, bob)
			return c, rawChange(t, c, mallory)
		}, "not its owner's"},
		{"a stranger's creation under a known id", func() (*GroupChange, []byte) {
			c := create(t, 1, alice, bob)
			c.Actor, c.Members[0] = "mallory", mallory.member(RoleOwner)
			return c, rawChange(t, c, mallory)
		}, "not the one its creation makes"},
	} {
		c, raw := tc.make()
		if _, err := NewGroupLog(c, 1000); !errors.Is(err, ErrGroupChangeInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewGroupLog: %v", tc.name, err)
		}
		if p, err := ParseGroupChange(raw); err == nil {
			if _, err := NewGroupLog(p, 1000); err == nil {
				t.Errorf("%s: parsed and started a log", tc.name)
			}
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseGroupChange: %v", tc.name, err)
		}
		if _, err := ParseGroupLog(logOf(c, raw), 1000); !errors.Is(err, ErrGroupChangeInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseGroupLog: %v", tc.name, err)
		}
	}
	// The log encoding above is the real one: with the real creation it parses.
	good, _ := cr.MarshalBinary()
	if _, err := ParseGroupLog(logOf(cr, good), 1000); err != nil {
		t.Fatalf("the genuine log: %v", err)
	}
	// SignGroupChange refuses to sign a creation whose id is not its own.
	c := create(t, 1, alice, bob)
	c.Group[0] ^= 1
	if err := SignGroupChange(c, alice.key); !errors.Is(err, ErrGroupChangeInvalid) {
		t.Errorf("a wrong id signed: %v", err)
	}
	// A creation as written before ids were bound: version 1, no salt.
	old := cr.body()
	old[0] = groupChangeVersion
	old = append(old[:len(old)-GroupSaltSize], cr.Signature...)
	if _, err := ParseGroupChange(old); !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), "made before group ids were bound") {
		t.Errorf("a version-1 creation: %v", err)
	}
	// Any other change of version 2.
	l, _ := NewGroupLog(cr, 1000)
	ti := change(t, l, alice, &GroupChange{Op: OpTitle, Title: "t"})
	b, _ := ti.MarshalBinary()
	b[0] = groupCreateVersion
	if _, err := ParseGroupChange(b); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("a title change of version 2: %v", err)
	}
}

// TestGroupLogBaseIsCreation: a log that folded nothing must have the
// creation's state as its base, so it is checked back to the owner's
// signature; one that folded keeps its sender's base, but not another
// group's creation.
func TestGroupLogBaseIsCreation(t *testing.T) {
	alice, bob, mallory := newGroupUser(t, "alice"), newGroupUser(t, "bob"), newGroupUser(t, "mallory")
	cr := create(t, 1, alice, bob)
	for _, tc := range []struct {
		name   string
		tamper func(l *GroupLog)
	}{
		{"a member slipped in", func(l *GroupLog) { l.base.Members = append(l.base.Members, mallory.member(RoleAdmin)) }},
		{"a role raised", func(l *GroupLog) { l.base.Members[1].Role = RoleAdmin }},
		{"a key swapped", func(l *GroupLog) { l.base.Members[1].Identity = mallory.key.Public() }},
		{"a muted member", func(l *GroupLog) { l.base.Members[1].MutedUntil = 5 }},
		{"another title", func(l *GroupLog) { l.base.Title = "not family" }},
		{"another frontier", func(l *GroupLog) { l.frontier = map[[32]byte]uint64{{7}: 0} }},
		{"a second frontier change", func(l *GroupLog) { l.frontier[[32]byte{7}] = 0 }},
	} {
		l, _ := NewGroupLog(cr, 1000)
		mustAdd(t, l, change(t, l, alice, &GroupChange{Op: OpTitle, Title: "fam"}))
		tc.tamper(l)
		_, err := ParseGroupLog(mustMarshal(t, l), 1000)
		if !errors.Is(err, ErrGroupChangeInvalid) || !strings.Contains(err.Error(), "nothing is folded") {
			t.Errorf("%s at depth 0: %v", tc.name, err)
		}
	}

	// Folded: the base is the sender's word (docs/security.md §5), the
	// creation still the group's.
	l, _ := NewGroupLog(cr, 1000)
	for i := range GroupWindow + 3 {
		mustAdd(t, l, change(t, l, alice, &GroupChange{Op: OpTitle, Title: fmt.Sprint("title ", i)}))
	}
	if l.baseDepth == 0 {
		t.Fatal("nothing folded")
	}
	b := mustMarshal(t, l)
	p, err := ParseGroupLog(b, 1000)
	if err != nil || !bytes.Equal(mustMarshal(t, p), b) || p.Creation().Hash() != cr.Hash() {
		t.Fatalf("a folded log: %v", err)
	}
	other := create(t, 2, alice, bob)
	l.create = other
	if _, err := ParseGroupLog(mustMarshal(t, l), 1000); !errors.Is(err, ErrGroupChangeInvalid) || !strings.Contains(err.Error(), "another group") {
		t.Errorf("a folded log with another group's creation: %v", err)
	}
	l.create = cr
	l.frontier[[32]byte{7}] = l.baseDepth + 1
	if _, err := ParseGroupLog(mustMarshal(t, l), 1000); !errors.Is(err, ErrGroupChangeInvalid) {
		t.Errorf("a frontier change deeper than the base: %v", err)
	}
}

// TestGroupLogVersion1: a log written before logs carried their creation
// is refused from anyone else, and read, and kept as it is, from the
// home's own store.
func TestGroupLogVersion1(t *testing.T) {
	alice, bob := newGroupUser(t, "alice"), newGroupUser(t, "bob")
	l, _ := NewGroupLog(create(t, 1, alice, bob), 1000)
	mustAdd(t, l, change(t, l, alice, &GroupChange{Op: OpRole, Targets: []string{"bob"}, Role: RoleAdmin}))
	l.create = nil // as version 1 had it
	b := mustMarshal(t, l)
	if b[0] != groupLogUnbound {
		t.Fatalf("written as version %d", b[0])
	}
	if _, err := ParseGroupLog(b, 1000); !errors.Is(err, ErrGroupUnbound) {
		t.Errorf("a version-1 log from someone else: %v", err)
	}
	p, err := ParseStoredGroupLog(b, 1000)
	if err != nil {
		t.Fatalf("a home's own version-1 log: %v", err)
	}
	if p.Creation() != nil || p.HeadsHash() != l.HeadsHash() || members(p.State()) != "[alice:owner bob:admin]" || !bytes.Equal(mustMarshal(t, p), b) {
		t.Errorf("the version-1 log does not round-trip: %s", members(p.State()))
	}
	mustAdd(t, p, change(t, p, bob, &GroupChange{Op: OpTitle, Title: "still works"}))
	if again, err := ParseStoredGroupLog(mustMarshal(t, p), 1000); err != nil || again.State().Title != "still works" {
		t.Errorf("after a change: %v", err)
	}
	b[0] = 3
	if _, err := ParseStoredGroupLog(b, 1000); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version 3: %v", err)
	}
}

// TestGroupLogCreationSize: a log that claims a creation of gigabytes is
// refused before anything of that size is allocated (found by
// FuzzParseGroupLog).
func TestGroupLogCreationSize(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, parse := range []func([]byte, int) (*GroupLog, error){ParseGroupLog, ParseStoredGroupLog} {
		if _, err := parse([]byte{groupLogVersion, 0xff, 0xff, 0xff, 0xff, 1, 2, 3}, 1000); !errors.Is(err, ErrMalformedKeyData) {
			t.Errorf("a creation of 4 GiB: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("refusing it allocated %d bytes", n)
	}
}

// TestGroupLogParseWorkBounded: a log anyone can send (a welcome is parsed
// before its sender's membership is checked: plausibleWelcome,
// receiveGroup) costs the parser work in proportion to its size. Here a
// stranger's own creation, a folded base of many members and many
// concurrent changes at one depth: each admitted change replays the whole
// window, and each replayed change clones the whole state, so today ~95
// KB of log allocates gigabytes (a 254 KB one took minutes of CPU).
func TestGroupLogParseWorkBounded(t *testing.T) {
	mallory := newGroupUser(t, "mallory")
	cr := create(t, 1, mallory)
	const members, changes = 1750, 150
	l := &GroupLog{maxMembers: MaxGroupMembers, create: cr,
		base:      GroupState{ID: cr.Group, Title: "x", Members: []GroupMember{mallory.member(RoleOwner)}},
		baseDepth: 1, frontier: map[[32]byte]uint64{{9}: 1}, window: map[[32]byte]*logged{}, pending: map[[32]byte]*GroupChange{}}
	for i := range members {
		l.base.Members = append(l.base.Members, GroupMember{User: fmt.Sprintf("u%05d", i), Identity: mallory.key.Public(), Role: RoleMember})
	}
	for i := range changes {
		c := signed(t, &GroupChange{Group: cr.Group, Parents: [][32]byte{{9}}, Depth: 2, Actor: "mallory", Time: int64(i + 1), Op: OpTitle, Title: "t"}, mallory)
		l.window[c.Hash()] = &logged{c: c, h: c.Hash(), signer: mallory.key.Public()}
	}
	b := mustMarshal(t, l)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ParseGroupLog(b, MaxGroupMembers)
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 256<<20 {
		t.Errorf("parsing a log of %d bytes allocated %d MiB (err %v)", len(b), n>>20, err)
	}
}
