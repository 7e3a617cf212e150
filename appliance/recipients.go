package appliance

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"

	"github.com/securechat/securechat/transport"
)

// Remembered address lists (protocol.md §6.7): a group Send's answer
// carries a hash of its address list, and a later group Send to the same
// group on the same connection may name that hash instead of the list,
// so that a member whose group has not changed sends, and encodes, one
// ciphertext and no addresses. The list is the connection's, in memory,
// and bounded: the last maxRememberedGroups groups and at most
// maxRememberedDevices addresses in all; a Send naming a list the
// connection does not have is refused (recipients unknown) and the
// client sends the list again. What is expanded is checked as any Send's
// envelopes are: the devices must still be current, under their keys.
const (
	maxRememberedGroups  = 4
	maxRememberedDevices = transport.MaxGroupEnvelopes
	recipientsContext    = "securechat recipients v1"
)

type recipientList struct {
	group    []byte
	hash     []byte
	envs     []transport.Envelope // without payloads; never changed once kept
	accounts int                  // the accounts it reaches, the sender's included
	used     uint64
}

// recipientLists is one connection's remembered lists.
type recipientLists struct {
	mu    sync.Mutex
	lists []*recipientList
	tick  uint64
}

// recipientsHash names a group Send's address list: the group and every
// envelope's user, device and key, in the order sent.
func recipientsHash(group []byte, envs []transport.Envelope) []byte {
	h := sha256.New()
	h.Write([]byte(recipientsContext))
	h.Write(group)
	var b []byte
	for _, e := range envs {
		b = b[:0]
		b = append(b, byte(len(e.User)))
		b = append(b, e.User...)
		b = binary.BigEndian.AppendUint32(b, e.Device)
		b = append(b, byte(len(e.DeviceKey)))
		b = append(b, e.DeviceKey...)
		h.Write(b)
	}
	return h.Sum(nil)
}

// expand fills in the envelopes of a group Send that names a remembered
// list (req.Recipients) and returns the accounts it reaches; false if the
// connection has no such list. The envelopes are the remembered list
// itself, already canonical, shared and never written (a copy would cost
// every Send, refused or not, in proportion to the list).
func (r *recipientLists) expand(req *transport.Send, sender string) (accounts int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lists {
		if bytes.Equal(l.group, req.Group) && bytes.Equal(l.hash, req.Recipients) {
			r.tick++
			l.used = r.tick
			req.Envelopes = l.envs[:len(l.envs):len(l.envs)]
			return l.accounts, true
		}
	}
	return 0, false
}

// remember keeps the address list of a group Send the server took and
// returns its hash, for the Sent. A Send that named its list keeps it.
func (r *recipientLists) remember(req *transport.Send, sender string) []byte {
	if req.Recipients != nil {
		return req.Recipients
	}
	if len(req.Envelopes) > maxRememberedDevices {
		return nil
	}
	hash := recipientsHash(req.Group, req.Envelopes)
	envs := make([]transport.Envelope, len(req.Envelopes))
	for i, e := range req.Envelopes {
		envs[i] = transport.Envelope{User: e.User, Device: e.Device, DeviceKey: bytes.Clone(e.DeviceKey)}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tick++
	r.lists = slices.DeleteFunc(r.lists, func(l *recipientList) bool { return bytes.Equal(l.group, req.Group) })
	r.lists = append(r.lists, &recipientList{group: bytes.Clone(req.Group), hash: hash, envs: envs, accounts: groupAccounts(sender, req), used: r.tick})
	for {
		total := 0
		for _, l := range r.lists {
			total += len(l.envs)
		}
		if len(r.lists) <= maxRememberedGroups && total <= maxRememberedDevices {
			break
		}
		oldest := 0
		for i, l := range r.lists {
			if l.used < r.lists[oldest].used {
				oldest = i
			}
		}
		r.lists = slices.Delete(r.lists, oldest, oldest+1)
	}
	return hash
}
