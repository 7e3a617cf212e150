package appliance

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Store and forward (protocol.md §6), the session's side: Sends in, and
// deliveries out.

// Send (protocol.md §6.1, §6.5): checked, counted against the messages
// limit, then stored and pushed, or for an ephemeral Send forwarded only.

// checkSend canonicalizes the recipients, refuses a group Send that
// names more accounts than group_max_members (protocol.md §6.7) and a
// muted sender; it runs before the rate limit, so a refused Send costs no
// tokens.
func checkSend(ctx context.Context, ss *session, id uint32, req *transport.Send) bool {
	// The mute first: a muted sender's Send costs nothing more, however
	// many addresses it names.
	now := ss.srv.cfg.Now()
	if until, muted := ss.srv.mutes.muted(ss.dev.User, now); muted {
		// The time left goes in retry_after_ms, so that a client shows the
		// end in its own zone (protocol.md §4.1); the message has it in the
		// server's, in the form people see everywhere.
		e := &transport.Error{Code: transport.ErrMuted, Message: "you are muted on this server"}
		if !until.IsZero() {
			e.Message += " until " + chat.FormatTime(until)
			e.RetryAfterMS = uint64(max(until.Sub(now).Milliseconds(), 1))
		}
		ss.fail(id, e)
		return false
	}
	accounts := 0
	if req.Recipients != nil {
		// A remembered list (recipients.go) was canonicalized and counted
		// when it was sent: it is used as it is, not copied or walked.
		var ok bool
		if accounts, ok = ss.recipients.expand(req, ss.dev.User); !ok {
			ss.fail(id, &transport.Error{Code: transport.ErrRecipientsUnknown,
				Message: "this connection has no such list of recipients for the group: send the addresses"})
			return false
		}
	} else {
		for i := range req.Envelopes {
			u, err := transport.CanonicalUser(req.Envelopes[i].User)
			if err != nil {
				ss.fail(id, &transport.Error{Code: transport.ErrInvalidName, Message: err.Error()})
				return false
			}
			req.Envelopes[i].User = u
		}
		if req.Shared != nil {
			accounts = groupAccounts(ss.dev.User, req)
		}
	}
	if req.Shared != nil {
		if n, max := accounts, ss.srv.currentLimits().GroupMaxMembers; n > max {
			ss.fail(id, &transport.Error{Code: transport.ErrTooLarge,
				Message: fmt.Sprintf("a group message may reach at most %d accounts on this server (group_max_members), this one names %d", max, n)})
			return false
		}
	}
	return true
}

// groupAccounts is how many accounts a group Send reaches: its
// recipients' and its sender's (protocol.md §6.7).
func groupAccounts(sender string, req *transport.Send) int {
	users := map[string]bool{sender: true}
	for i := range req.Envelopes {
		users[req.Envelopes[i].User] = true
	}
	return len(users)
}

// Costs of a group Send (protocol.md §6.6): a message token per started
// groupDevicesPerToken recipient devices, and the shared payload once plus
// groupEnvelopeBytes a device in the bytes limit.
const (
	groupDevicesPerToken = 50
	groupEnvelopeBytes   = 64
)

// sendSize is a Send's payload bytes, what the bytes limit counts: for a
// group Send the shared payload once and a small amount per device, for
// the entry and the push each device gets.
func sendSize(req *transport.Send) int {
	if req.Shared != nil {
		return len(req.Shared) + groupEnvelopeBytes*len(req.Envelopes)
	}
	size := 0
	for i := range req.Envelopes {
		size += len(req.Envelopes[i].Payload)
	}
	return size
}

// sendTokens is what a Send counts against the messages limit: 1, or for
// a group Send one per started groupDevicesPerToken devices.
func sendTokens(req *transport.Send) int {
	if req.Shared == nil {
		return 1
	}
	return max(1, (len(req.Envelopes)+groupDevicesPerToken-1)/groupDevicesPerToken)
}

func handleSend(ctx context.Context, ss *session, id uint32, req *transport.Send) {
	if req.Ephemeral {
		ss.handleSignal(ctx, id, req)
		return
	}
	srv := ss.srv
	m := store.Message{From: ss.authedDevice(), ID: req.MessageID, Time: srv.cfg.Now(), Envelopes: make([]store.Envelope, len(req.Envelopes)),
		Group: req.Group, Shared: req.Shared}
	if req.Shared != nil {
		m.MaxGroups = srv.currentLimits().GroupMaxPerAccount
	}
	for i, env := range req.Envelopes {
		m.Envelopes[i] = store.Envelope{To: chat.DeviceOf(env.User, env.Device), Key: env.DeviceKey, Payload: env.Payload}
	}
	res, err := srv.store.Append(ctx, m)
	if err != nil {
		if ctx.Err() == nil {
			ss.log.Debug("send refused", "err", err)
		}
		ss.fail(id, ss.wireError(err))
		return
	}
	if !res.Duplicate {
		srv.stats.MessagesIn.Add(1)
		if req.Shared != nil {
			srv.stats.GroupMessages.Add(1)
			srv.stats.BytesIn.Add(int64(len(req.Shared)))
		} else {
			srv.stats.BytesIn.Add(int64(sendSize(req)))
		}
		srv.router.Push(res.Entries)
	}
	sent := &transport.Sent{ServerTime: res.Time.UnixMilli(), Duplicate: res.Duplicate}
	if req.Shared != nil {
		sent.Recipients = ss.recipients.remember(req, ss.dev.User)
	}
	ss.reply(id, transport.CodeSent, sent)
}

// handleSignal forwards an ephemeral Send to the recipients' connected
// devices and stores nothing (protocol.md §6.5). A group Send's Signal is
// the same for every device: it is encoded once.
func (ss *session) handleSignal(ctx context.Context, id uint32, req *transport.Send) {
	srv := ss.srv
	to := make([]store.DeviceKey, len(req.Envelopes))
	for i, env := range req.Envelopes {
		to[i] = store.DeviceKey{Device: chat.DeviceOf(env.User, env.Device), Key: env.DeviceKey}
	}
	if err := srv.store.CheckRecipients(ss.authedDevice(), to); err != nil {
		ss.fail(id, ss.wireError(err))
		return
	}
	now := srv.cfg.Now().UnixMilli()
	var online uint32
	var shared []byte
	if req.Shared != nil {
		shared = transport.Marshal(&transport.Signal{From: ss.dev.User, FromDevice: ss.dev.ID, MessageID: req.MessageID, ServerTime: now, Group: req.Group, Shared: req.Shared})
	}
	for i, d := range to {
		body := shared
		if body == nil {
			body = transport.Marshal(&transport.Signal{From: ss.dev.User, FromDevice: ss.dev.ID, MessageID: req.MessageID, ServerTime: now, Payload: req.Envelopes[i].Payload})
		}
		if srv.router.Signal(d.Device, body) {
			online++
		}
	}
	sent := &transport.Sent{ServerTime: now, Online: online}
	if req.Shared != nil {
		sent.Recipients = ss.recipients.remember(req, ss.dev.User)
	}
	ss.reply(id, transport.CodeSent, sent)
}

// Delivery to a receiving session (protocol.md §6.2): the backlog from the
// store, then entries the router offers as senders commit them.

// maxInbox bounds the entries a session holds in memory, and push_budget
// their bytes; past either the offer is dropped and the deliver loop reads
// the store instead, which has every entry (docs/security.md §4.4).
const maxInbox = 1024

// Offer gives the session a committed entry of its mailbox (Conn).
func (ss *session) Offer(d *transport.Deliver) {
	ss.inboxMu.Lock()
	if size := len(d.Payload) + len(d.Shared); len(ss.inbox) < maxInbox && ss.inboxBytes+size <= ss.srv.cfg.PushBudget {
		ss.inbox = append(ss.inbox, d)
		ss.inboxBytes += size
	} else {
		ss.overflow = true
	}
	ss.inboxMu.Unlock()
	select {
	case ss.wake <- struct{}{}:
	default: // already pending
	}
}

// takeInbox returns the offered entries that continue the mailbox right
// after seq last, in order; ok is false when they do not (a gap, an
// overflow): then the store is read instead, which is always correct.
func (ss *session) takeInbox(last uint64) (_ []*transport.Deliver, ok bool) {
	ss.inboxMu.Lock()
	in, overflow := ss.inbox, ss.overflow
	ss.inbox, ss.inboxBytes, ss.overflow = nil, 0, false
	ss.inboxMu.Unlock()
	if overflow {
		return nil, false
	}
	slices.SortFunc(in, func(a, b *transport.Deliver) int { return cmp.Compare(a.Seq, b.Seq) })
	in = slices.DeleteFunc(in, func(d *transport.Deliver) bool { return d.Seq <= last })
	for i, d := range in {
		if d.Seq != last+uint64(i)+1 {
			return nil, false
		}
	}
	return in, true
}

// deliverBatch is how many entries one read of the store takes: as many
// as fit push_budget at the largest payload, so that a batch of big
// entries stays within it too; at least one, at most pushBatch.
func deliverBatch(budget int) int {
	return min(pushBatch, max(1, budget/(transport.MaxPayload+1<<10)))
}

// deliver pushes the device's mailbox: first the backlog, then QueueEmpty,
// then new entries as they are stored (protocol.md §6.2), and the queued
// signals. Entries stay in the mailbox until acked, so a connection lost
// mid-push loses nothing. New entries come from memory when senders
// offered them in sequence; otherwise from the store. What it holds is
// bounded by push_budget; a write the device does not take within
// write_timeout closes the connection (session.writeFailed).
func (ss *session) deliver(ctx context.Context) {
	var last uint64
	sentEmpty := false
	batch := deliverBatch(ss.srv.cfg.PushBudget)
	var frames []transport.Frame
	fromStore := true
	for {
		frames = append(frames[:0], ss.takeSignals()...)
		var entries []*transport.Deliver
		if !fromStore {
			var ok bool
			entries, ok = ss.takeInbox(last)
			fromStore = !ok
		}
		if fromStore {
			ss.takeInbox(last) // what is offered now is in the store too
			pending, err := ss.srv.store.Pending(ss.authedDevice(), last, batch)
			if err != nil {
				ss.log.Error("reading mailbox", "err", err)
				ss.stop()
				return
			}
			for i := range pending {
				entries = append(entries, deliverOf(&pending[i]))
			}
		}
		bytesOut := 0
		for _, d := range entries {
			frames = append(frames, transport.Frame{Code: transport.CodeDeliver, Body: transport.Marshal(d)})
			last = d.Seq
			bytesOut += len(d.Payload) + len(d.Shared)
		}
		if fromStore && len(entries) < batch && !sentEmpty {
			frames = append(frames, transport.Frame{Code: transport.CodeQueueEmpty})
			sentEmpty = true
		}
		if len(frames) > 0 {
			err := ss.c.WriteFrames(frames...)
			clear(frames) // hold no bodies while waiting
			if err != nil {
				ss.writeFailed(err)
				return
			}
			ss.srv.stats.Deliveries.Add(int64(len(entries)))
			ss.srv.stats.BytesOut.Add(int64(bytesOut))
		}
		if fromStore && len(entries) == batch {
			continue // more backlog
		}
		if fromStore {
			fromStore = false
		} else if len(entries) > 0 {
			continue // more may have been offered meanwhile
		}
		select {
		case <-ss.wake:
		case <-ctx.Done():
			return
		}
	}
}
