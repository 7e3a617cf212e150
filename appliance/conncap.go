package appliance

import (
	"fmt"
	"sync"
)

// connCounts counts the open connections in total, per source address and
// per account, for max_conns, max_conns_per_address and
// max_conns_per_account (docs/security.md §4.4): with every frame and push
// bounded per connection, these bound what one address or one account can
// hold in all.
type connCounts struct {
	mu     sync.Mutex // guards the fields below
	total  int
	byAddr map[string]int
	byUser map[string]int
}

// addConn counts a new connection from addr, or says why it is refused.
func (c *connCounts) addConn(addr string, l Limits) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.total >= l.MaxConns:
		return fmt.Errorf("server full: %d connections open", c.total)
	case c.byAddr[addr] >= l.MaxConnsPerAddress:
		return fmt.Errorf("too many connections from your address (%d)", c.byAddr[addr])
	}
	if c.byAddr == nil {
		c.byAddr = make(map[string]int)
	}
	c.total++
	c.byAddr[addr]++
	return nil
}

func (c *connCounts) dropConn(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.byAddr[addr]--; c.byAddr[addr] <= 0 {
		delete(c.byAddr, addr)
	}
}

// addUser counts an authenticated connection of user, or says why it is
// refused.
func (c *connCounts) addUser(user string, l Limits) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.byUser[user]; n >= l.MaxConnsPerAccount {
		return fmt.Errorf("too many connections of this account (%d)", n)
	}
	if c.byUser == nil {
		c.byUser = make(map[string]int)
	}
	c.byUser[user]++
	return nil
}

func (c *connCounts) dropUser(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byUser[user]--; c.byUser[user] <= 0 {
		delete(c.byUser, user)
	}
}
