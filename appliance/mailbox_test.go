package appliance

import (
	"fmt"
	"testing"

	"github.com/securechat/securechat/transport"
)

func TestTakeInbox(t *testing.T) {
	ss := &session{wake: make(chan struct{}, 1)}
	d := func(seq uint64) *transport.Deliver { return &transport.Deliver{Seq: seq} }
	seqs := func(ds []*transport.Deliver) (out []uint64) {
		for _, x := range ds {
			out = append(out, x.Seq)
		}
		return out
	}
	// Out of order but contiguous after last: sorted and taken.
	for _, s := range []uint64{7, 5, 6, 4} {
		ss.Offer(d(s))
	}
	got, ok := ss.takeInbox(4)
	if !ok || fmt.Sprint(seqs(got)) != "[5 6 7]" {
		t.Fatalf("got %v %v", seqs(got), ok)
	}
	// A gap (8 missing) sends the loop to the store.
	ss.Offer(d(9))
	if _, ok := ss.takeInbox(7); ok {
		t.Fatal("gap not detected")
	}
	// Nothing offered: ok with nothing.
	if got, ok := ss.takeInbox(9); !ok || len(got) != 0 {
		t.Fatalf("empty inbox: %v %v", got, ok)
	}
	// Overflow drops offers; the gap then shows.
	for i := range uint64(maxInbox + 10) {
		ss.Offer(d(10 + i))
	}
	got, ok = ss.takeInbox(9)
	if !ok || len(got) != maxInbox {
		t.Fatalf("after overflow: %d entries, %v", len(got), ok)
	}
}
