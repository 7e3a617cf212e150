package appliance

import (
	"cmp"
	"context"
	"encoding/hex"
	"slices"
	"time"
)

// GroupInfo is a group as the operator sees it (protocol.md §6.7): its id
// and traffic. The server never has a group's title or its member list,
// only how many accounts the last group message reached.
type GroupInfo struct {
	ID          string    `json:"id"` // hex
	Members     int       `json:"members"`
	Creator     string    `json:"creator"` // the account that first sent under the id
	Created     time.Time `json:"created"`
	LastMessage time.Time `json:"last_message"`
	Messages    uint64    `json:"messages"`
}

// Groups lists the groups the store keeps records of, the most recently
// active first.
func (s *Server) Groups(ctx context.Context) ([]GroupInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	list, err := s.store.ListGroups()
	if err != nil {
		return nil, err
	}
	out := make([]GroupInfo, len(list))
	for i, g := range list {
		out[i] = GroupInfo{ID: hex.EncodeToString(g.ID), Members: g.Members, Creator: g.Creator, Created: g.Created, LastMessage: g.LastMessage, Messages: g.Messages}
	}
	slices.SortStableFunc(out, func(a, b GroupInfo) int { return cmp.Or(b.LastMessage.Compare(a.LastMessage), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}
