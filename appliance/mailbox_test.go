package appliance

import (
	"fmt"
	"testing"

	"github.com/securechat/securechat/transport"
)

func TestTakeInbox(t *testing.T) {
	ss := &session{srv: &Server{cfg: Config{}.WithDefaults()}, wake: make(chan struct{}, 1)}
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
	// Overflow drops offers and sends the loop to the store, even when
	// what was kept is contiguous: the dropped tail is only in the store.
	for i := range uint64(maxInbox + 10) {
		ss.Offer(d(10 + i))
	}
	if got, ok = ss.takeInbox(9); ok {
		t.Fatalf("after overflow: %d entries taken from memory, want the store", len(got))
	}
	if got, ok := ss.takeInbox(9); !ok || len(got) != 0 {
		t.Fatalf("after the overflow was taken: %v %v", got, ok)
	}
}
