package e2ee

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// Tests of docs/protocol.md §9.7: membership only members can change.

type groupUser struct {
	name string
	key  IdentityPrivateKey
}

func newGroupUser(t testing.TB, name string) groupUser {
	t.Helper()
	k, err := GenerateIdentityKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return groupUser{name, k}
}

// fixedGroupUser is newGroupUser with a key derived from the name: fuzz
// targets use it, so that an input found by one process (signed with its
// keys) fails again in the next.
func fixedGroupUser(t testing.TB, name string) groupUser {
	t.Helper()
	seed := sha256.Sum256([]byte("fuzz identity " + name))
	k, err := GenerateIdentityKey(bytes.NewReader(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return groupUser{name, k}
}

func (u groupUser) member(role GroupRole) GroupMember {
	return GroupMember{User: u.name, Identity: u.key.Public(), Role: role}
}

func signed(t testing.TB, c *GroupChange, by groupUser) *GroupChange {
	t.Helper()
	if err := SignGroupChange(c, by.key); err != nil {
		t.Fatal(err)
	}
	return c
}

// create makes a group owned by owner with the others as members; salt
// tells groups of the same people apart.
func create(t testing.TB, salt byte, owner groupUser, others ...groupUser) *GroupChange {
	t.Helper()
	c := &GroupChange{Actor: owner.name, Op: OpCreate, Title: "family", Time: 1,
		Members: []GroupMember{owner.member(RoleOwner)}, Salt: [GroupSaltSize]byte{salt}}
	for _, o := range others {
		c.Members = append(c.Members, o.member(RoleMember))
	}
	c.Group = GroupID(c)
	return signed(t, c, owner)
}

// change prepares c on l, signs it by u and returns it (not yet added).
func change(t testing.TB, l *GroupLog, u groupUser, c *GroupChange) *GroupChange {
	t.Helper()
	c.Actor = u.name
	l.Prepare(c)
	return signed(t, c, u)
}

func mustAdd(t testing.TB, l *GroupLog, c *GroupChange) {
	t.Helper()
	if _, err := l.Add(c); err != nil {
		t.Fatalf("%s by %s: %v", c.Op, c.Actor, err)
	}
}

func members(s GroupState) string {
	var out []string
	for _, m := range s.Members {
		r := m.Role.String()
		if m.MutedUntil != 0 {
			r += ",muted"
		}
		out = append(out, m.User+":"+r)
	}
	return fmt.Sprint(out)
}

func TestGroupRoles(t *testing.T) {
	alice, bob, carol, dave := newGroupUser(t, "alice"), newGroupUser(t, "bob"), newGroupUser(t, "carol"), newGroupUser(t, "dave")
	l, err := NewGroupLog(create(t, 1, alice, bob, carol), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := members(l.State()); got != "[alice:owner bob:member carol:member]" {
		t.Fatalf("after create: %s", got)
	}
	// A plain member cannot add.
	if _, err := l.Add(change(t, l, bob, &GroupChange{Op: OpAdd, Members: []GroupMember{dave.member(RoleMember)}})); !errors.Is(err, ErrGroupChangeInvalid) {
		t.Fatalf("a member adding: %v", err)
	}
	// The owner promotes bob; bob, now an admin, adds dave.
	mustAdd(t, l, change(t, l, alice, &GroupChange{Op: OpRole, Targets: []string{"bob"}, Role: RoleAdmin}))
	mustAdd(t, l, change(t, l, bob, &GroupChange{Op: OpAdd, Members: []GroupMember{dave.member(RoleMember)}}))
	// bob mutes carol, retitles, removes dave; an admin cannot remove or demote the owner.
	mustAdd(t, l, change(t, l, bob, &GroupChange{Op: OpMute, Targets: []string{"carol"}, Until: 99}))
	mustAdd(t, l, change(t, l, bob, &GroupChange{Op: OpTitle, Title: "the family"}))
	mustAdd(t, l, change(t, l, bob, &GroupChange{Op: OpRemove, Targets: []string{"dave"}}))
	for _, c := range []*GroupChange{
		{Op: OpRemove, Targets: []string{"alice"}},
		{Op: OpRole, Targets: []string{"alice"}, Role: RoleMember},
		{Op: OpRole, Targets: []string{"bob"}, Role: RoleMember}, // not their own
		{Op: OpRemove, Targets: []string{"dave"}},                // not a member any more
		{Op: OpAdd, Members: []GroupMember{carol.member(RoleMember)}},
	} {
		if _, err := l.Add(change(t, l, bob, c)); !errors.Is(err, ErrGroupChangeInvalid) {
			t.Errorf("%s %v by an admin: %v", c.Op, c.Targets, err)
		}
	}
	// dave, removed, can do nothing.
	if _, err := l.Add(change(t, l, dave, &GroupChange{Op: OpLeave})); !errors.Is(err, ErrGroupChangeInvalid) {
		t.Errorf("a removed member leaving: %v", err)
	}
	if got, st := members(l.State()), l.State(); got != "[alice:owner bob:admin carol:member,muted]" || st.Title != "the family" {
		t.Fatalf("state: %s %q", got, st.Title)
	}
	// The owner leaves: the longest-standing admin owns the group.
	mustAdd(t, l, change(t, l, alice, &GroupChange{Op: OpLeave}))
	if got := members(l.State()); got != "[bob:owner carol:member,muted]" {
		t.Fatalf("after the owner left: %s", got)
	}
}

// TestGroupServerForgeries: what a server could try, each refused.
func TestGroupServerForgeries(t *testing.T) {
	alice, bob, mallory := newGroupUser(t, "alice"), newGroupUser(t, "bob"), newGroupUser(t, "mallory")
	cr := create(t, 1, alice, bob)
	l, err := NewGroupLog(cr, 1000)
	if err != nil {
		t.Fatal(err)
	}
	addBob2 := change(t, l, alice, &GroupChange{Op: OpTitle, Title: "t2"})

	// A member injected: an add in alice's name, signed by another key.
	inject := change(t, l, mallory, &GroupChange{Op: OpAdd, Members: []GroupMember{mallory.member(RoleMember)}})
	inject.Actor = "alice"
	if _, err := l.Add(inject); !errors.Is(err, ErrGroupChangeInvalid) {
		t.Errorf("an add in alice's name by another key: %v", err)
	}
	// A non-member's own change.
	if _, err := l.Add(change(t, l, mallory, &GroupChange{Op: OpAdd, Members: []GroupMember{mallory.member(RoleMember)}})); !errors.Is(err, ErrGroupChangeInvalid) {
		t.Errorf("a non-member adding: %v", err)
	}
	// A genuine change altered after signing (the role raised).
	forged := change(t, l, alice, &GroupChange{Op: OpAdd, Members: []GroupMember{mallory.member(RoleMember)}})
	forged.Members[0].Role = RoleAdmin
	if _, err := l.Add(forged); !errors.Is(err, ErrGroupChangeInvalid) {
		t.Errorf("an altered change: %v", err)
	}
	// The identity vouched for, swapped for another.
	swapped := change(t, l, alice, &GroupChange{Op: OpAdd, Members: []GroupMember{mallory.member(RoleMember)}})
	swapped.Members[0].Identity = bob.key.Public()
	if _, err := l.Add(swapped); !errors.Is(err, ErrGroupChangeInvalid) {
		t.Errorf("a swapped identity: %v", err)
	}
	// Another group's change.
	other, err := NewGroupLog(create(t, 2, alice, bob), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Add(change(t, other, alice, &GroupChange{Op: OpTitle, Title: "x"})); !errors.Is(err, ErrGroupOther) {
		t.Errorf("another group's change: %v", err)
	}
	// A second creation.
	if _, err := l.Add(create(t, 1, mallory)); err == nil {
		t.Error("a second creation was admitted")
	}
	// A replay.
	mustAdd(t, l, addBob2)
	if _, err := l.Add(addBob2); !errors.Is(err, ErrGroupDuplicate) {
		t.Errorf("a replay: %v", err)
	}
	// A creation not signed by its owner.
	bad := create(t, 3, alice, bob)
	bad.Signature = slices.Clone(create(t, 3, mallory).Signature)
	if _, err := NewGroupLog(bad, 1000); !errors.Is(err, ErrGroupChangeInvalid) {
		t.Errorf("a creation signed by another: %v", err)
	}
	// A wrong depth.
	deep := &GroupChange{Op: OpTitle, Title: "deep", Actor: "alice"}
	l.Prepare(deep)
	deep.Depth += 5
	if _, err := l.Add(signed(t, deep, alice)); !errors.Is(err, ErrGroupChangeInvalid) {
		t.Errorf("a wrong depth: %v", err)
	}
	if got := members(l.State()); got != "[alice:owner bob:member]" {
		t.Errorf("after the forgeries: %s", got)
	}
}

// TestGroupHeldUntilParents: a change that arrives before its parent waits
// and is admitted with it.
func TestGroupHeldUntilParents(t *testing.T) {
	alice, bob, carol := newGroupUser(t, "alice"), newGroupUser(t, "bob"), newGroupUser(t, "carol")
	cr := create(t, 1, alice, bob)
	writer, _ := NewGroupLog(cr, 1000)
	c1 := change(t, writer, alice, &GroupChange{Op: OpAdd, Members: []GroupMember{carol.member(RoleAdmin)}})
	mustAdd(t, writer, c1)
	c2 := change(t, writer, carol, &GroupChange{Op: OpTitle, Title: "carol's"})
	mustAdd(t, writer, c2)

	reader, _ := NewGroupLog(cr, 1000)
	if _, err := reader.Add(c2); !errors.Is(err, ErrGroupMissingParent) {
		t.Fatalf("a change before its parent: %v", err)
	}
	added, err := reader.Add(c1)
	if err != nil || len(added) != 2 {
		t.Fatalf("the parent: %d admitted, %v", len(added), err)
	}
	if reader.HeadsHash() != writer.HeadsHash() || reader.State().Title != "carol's" {
		t.Fatalf("reader and writer differ: %s %q", members(reader.State()), reader.State().Title)
	}
}

// TestGroupConcurrentAdminsConverge: admins acting at once from the same
// heads; every member, receiving the changes in any order, ends in the
// same state, and a change the order made void is void for everyone.
func TestGroupConcurrentAdminsConverge(t *testing.T) {
	users := make([]groupUser, 6)
	for i := range users {
		users[i] = newGroupUser(t, fmt.Sprintf("u%d", i))
	}
	extra := newGroupUser(t, "late")
	voided, concurrent := 0, 0
	defer func() {
		// The seeds must exercise what the test is about.
		if voided == 0 || concurrent == 0 {
			t.Errorf("%d runs had a change made void, %d had concurrent changes", voided, concurrent)
		}
	}()
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		cr := create(t, 1, users[0], users[1:]...)
		base, _ := NewGroupLog(cr, 1000)
		promote := change(t, base, users[0], &GroupChange{Op: OpRole, Targets: []string{"u1", "u2"}, Role: RoleAdmin})
		mustAdd(t, base, promote)
		// Three rounds; in each, up to three admins act from the same heads.
		var all []*GroupChange
		all = append(all, promote)
		view := base
		for range 3 {
			var round []*GroupChange
			for _, a := range []int{0, 1, 2} {
				if rng.IntN(3) == 0 {
					continue
				}
				var c *GroupChange
				switch rng.IntN(5) {
				case 0:
					c = &GroupChange{Op: OpRemove, Targets: []string{fmt.Sprintf("u%d", 1+rng.IntN(5))}}
				case 1:
					c = &GroupChange{Op: OpAdd, Members: []GroupMember{extra.member(RoleMember)}}
				case 2:
					c = &GroupChange{Op: OpRole, Targets: []string{fmt.Sprintf("u%d", 3+rng.IntN(3))}, Role: GroupRole(1 + rng.IntN(2))}
				case 3:
					c = &GroupChange{Op: OpTitle, Title: fmt.Sprintf("t%d", rng.IntN(100))}
				default:
					c = &GroupChange{Op: OpLeave}
				}
				ch := change(t, view, users[a], c)
				// Only changes valid where their author stands are made.
				probe, _ := ParseGroupLog(mustMarshal(t, view), 1000)
				if _, err := probe.Add(ch); err == nil {
					round = append(round, ch)
				}
			}
			if len(round) > 1 {
				concurrent++
			}
			all = append(all, round...)
			for _, ch := range round {
				view.Add(ch)
			}
		}
		// Four members receive everything in random orders.
		var want string
		var wantHeads [32]byte
		for m := range 4 {
			l, _ := NewGroupLog(cr, 1000)
			order := slices.Clone(all)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, c := range order {
				if _, err := l.Add(c); err != nil && !errors.Is(err, ErrGroupMissingParent) {
					t.Fatalf("seed %d member %d: %s by %s refused: %v", seed, m, c.Op, c.Actor, err)
				}
			}
			got := members(l.State()) + " " + l.State().Title + fmt.Sprint(len(l.Skipped()))
			if m == 0 {
				want, wantHeads = got, l.HeadsHash()
				if len(l.Skipped()) > 0 {
					voided++
				}
				continue
			}
			if got != want || l.HeadsHash() != wantHeads {
				t.Fatalf("seed %d: member %d holds %s, member 0 %s", seed, m, got, want)
			}
		}
	}
}

func mustMarshal(t testing.TB, l *GroupLog) []byte {
	t.Helper()
	b, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGroupLogFoldAndPersist: past GroupWindow levels old changes fold
// into the base; the log round-trips at every step; a replay of a folded
// change is refused as stale.
func TestGroupLogFoldAndPersist(t *testing.T) {
	alice, bob := newGroupUser(t, "alice"), newGroupUser(t, "bob")
	l, _ := NewGroupLog(create(t, 1, alice, bob), 1000)
	var first *GroupChange
	for i := range 3 * GroupWindow {
		c := change(t, l, alice, &GroupChange{Op: OpTitle, Title: fmt.Sprint("title ", i)})
		mustAdd(t, l, c)
		if first == nil {
			first = c
		}
		if i%17 == 0 || i == 3*GroupWindow-1 {
			b := mustMarshal(t, l)
			again, err := ParseGroupLog(b, 1000)
			if err != nil {
				t.Fatalf("after %d changes: %v", i+1, err)
			}
			if again.HeadsHash() != l.HeadsHash() || again.State().Title != l.State().Title || !bytes.Equal(mustMarshal(t, again), b) {
				t.Fatalf("after %d changes the log does not round-trip", i+1)
			}
		}
	}
	if len(l.window) > GroupWindow {
		t.Errorf("the window holds %d changes", len(l.window))
	}
	if _, err := l.Add(first); !errors.Is(err, ErrGroupStale) {
		t.Errorf("a replayed folded change: %v", err)
	}
	if l.State().Title != fmt.Sprint("title ", 3*GroupWindow-1) {
		t.Errorf("title %q", l.State().Title)
	}
}

func TestGroupChangeEncoding(t *testing.T) {
	alice, bob := newGroupUser(t, "alice"), newGroupUser(t, "bob")
	l, _ := NewGroupLog(create(t, 1, alice, bob), 1000)
	for _, c := range []*GroupChange{
		{Op: OpAdd, Members: []GroupMember{newGroupUser(t, "carol").member(RoleAdmin)}},
		{Op: OpRemove, Targets: []string{"bob"}},
		{Op: OpLeave},
		{Op: OpRole, Targets: []string{"bob"}, Role: RoleAdmin},
		{Op: OpTitle, Title: "ünïcode"},
		{Op: OpMute, Targets: []string{"bob"}, Until: 1 << 40},
	} {
		c := change(t, l, alice, c)
		b, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParseGroupChange(b)
		if err != nil {
			t.Fatalf("%s: %v", c.Op, err)
		}
		if p.Hash() != c.Hash() || !bytes.Equal(p.Signature, c.Signature) {
			t.Errorf("%s does not round-trip", c.Op)
		}
		for i := range b {
			if _, err := ParseGroupChange(b[:i]); err == nil {
				t.Errorf("%s truncated to %d bytes parses", c.Op, i)
				break
			}
		}
		if _, err := ParseGroupChange(append(b, 0)); err == nil {
			t.Errorf("%s with a trailing byte parses", c.Op)
		}
	}
	for _, bad := range []*GroupChange{
		{Op: OpTitle, Title: string(bytes.Repeat([]byte{'x'}, MaxGroupTitle+1))},
		{Op: OpRole, Targets: []string{"bob"}, Role: RoleOwner},
		{Op: OpRemove},
		{Op: OpAdd, Members: []GroupMember{bob.member(RoleMember), bob.member(RoleMember)}},
		{Op: OpLeave, Title: "x"},
		{Op: 99},
	} {
		bad.Actor = "alice"
		l.Prepare(bad)
		if err := SignGroupChange(bad, alice.key); !errors.Is(err, ErrGroupChangeInvalid) {
			t.Errorf("%s %+v signed: %v", bad.Op, bad, err)
		}
	}
}

func FuzzParseGroupChange(f *testing.F) {
	alice, bob := fixedGroupUser(f, "alice"), fixedGroupUser(f, "bob")
	cr := create(f, 1, alice, bob)
	l, _ := NewGroupLog(cr, 1000)
	b, _ := cr.MarshalBinary()
	f.Add(b) // a creation (version 2, with its salt)
	old := cr.body()
	old[0] = groupChangeVersion
	f.Add(append(old[:len(old)-GroupSaltSize], cr.Signature...)) // a creation as version 1 wrote it
	b, _ = change(f, l, alice, &GroupChange{Op: OpMute, Targets: []string{"bob"}, Until: 5}).MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseGroupChange(b)
		if err != nil {
			return
		}
		again, err := c.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("a parsed change does not encode back: %v", err)
		}
		if c.Op == OpCreate && c.Group != GroupID(c) {
			t.Fatal("a creation parsed under an id it does not make")
		}
		l.Add(c) // must not panic
	})
}

func FuzzParseGroupLog(f *testing.F) {
	alice, bob := fixedGroupUser(f, "alice"), fixedGroupUser(f, "bob")
	l, _ := NewGroupLog(create(f, 1, alice, bob), 1000)
	f.Add(mustMarshal(f, l))
	mustAdd(f, l, change(f, l, alice, &GroupChange{Op: OpRole, Targets: []string{"bob"}, Role: RoleAdmin}))
	mustAdd(f, l, change(f, l, bob, &GroupChange{Op: OpTitle, Title: "b"}))
	f.Add(mustMarshal(f, l))
	for i := range GroupWindow + 2 { // folded
		mustAdd(f, l, change(f, l, alice, &GroupChange{Op: OpTitle, Title: fmt.Sprint(i)}))
	}
	f.Add(mustMarshal(f, l))
	l.create = nil // version 1
	f.Add(mustMarshal(f, l))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseGroupLog(b, 1000)
		if err == nil {
			if _, err := ParseGroupLog(mustMarshal(t, p), 1000); err != nil {
				t.Fatalf("a parsed log does not parse again: %v", err)
			}
			if p.Creation() == nil || p.Creation().Group != p.State().ID {
				t.Fatal("a log parsed without its group's creation")
			}
		}
		p, err = ParseStoredGroupLog(b, 1000)
		if err != nil {
			return
		}
		if _, err := ParseStoredGroupLog(mustMarshal(t, p), 1000); err != nil {
			t.Fatalf("a parsed stored log does not parse again: %v", err)
		}
	})
}
