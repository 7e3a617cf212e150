package admin

import (
	"container/list"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"golang.org/x/time/rate"

	"github.com/securechat/securechat/appliance"
)

// loginLimits holds the failed-login buckets of the web login by source,
// at most max of them: the least recently used source is forgotten first,
// so a flood of addresses evicts only the oldest buckets, never the
// bucket of the address being limited (it was wiped whole at 10,000 keys).
type loginLimits struct {
	max   int
	mu    sync.Mutex // guards order and byKey
	order *list.List // of *loginEntry, most recent first
	byKey map[string]*list.Element
}

type loginEntry struct {
	key string
	lim *rate.Limiter
}

func newLoginLimits(max int) *loginLimits {
	return &loginLimits{max: max, order: list.New(), byKey: make(map[string]*list.Element)}
}

// get returns key's bucket, making it (and forgetting the least recently
// used one when full).
func (l *loginLimits) get(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.byKey[key]; ok {
		l.order.MoveToFront(el)
		return el.Value.(*loginEntry).lim
	}
	if l.order.Len() >= l.max {
		oldest := l.order.Back()
		l.order.Remove(oldest)
		delete(l.byKey, oldest.Value.(*loginEntry).key)
	}
	e := &loginEntry{key: key, lim: rate.NewLimiter(rate.Every(loginEvery), loginBurst)}
	l.byKey[key] = l.order.PushFront(e)
	return e.lim
}

func (l *loginLimits) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}

// source is the login limit's key of the request's peer: its address, an
// IPv6 one cut to the server's ipv6_prefix.
func (h *handler) source(r *http.Request) string {
	ip, err := netip.ParseAddr(remoteIP(r))
	if err != nil {
		return remoteIP(r)
	}
	if h.srcKey != nil {
		return h.srcKey(ip)
	}
	return appliance.SourceKeyOf(ip, 64)
}

// viaHTTPS reports whether the browser reached the admin over HTTPS: the
// listener's own TLS, or a TLS proxy in front saying so with
// X-Forwarded-Proto (docs/operations.md §10). The header is believed from
// any peer because it can only add protection (a Secure cookie, HSTS,
// which browsers ignore on plain HTTP): a client forging it harms only
// its own login.
func viaHTTPS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
}

// secureCookie reports whether the session cookie is Secure: always,
// except for plain HTTP from a loopback peer (a browser on the server
// itself or an SSH tunnel to the default 127.0.0.1 listener). A plain
// HTTP request from another host is either a TLS proxy's (admin_insecure)
// or an admin listener exposed without TLS; either way the cookie must
// not be sent back in the clear.
func secureCookie(r *http.Request) bool {
	if viaHTTPS(r) {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !ip.Unmap().IsLoopback()
}
