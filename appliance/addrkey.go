package appliance

import (
	"net"
	"net/netip"
)

// Address keys (issue 17 point 4). Everything that counts or bans by
// source address — the connection limit, the registration limit, the
// failed-login limit and its auto-ban, the flood ban, the events — keys on
// sourceKey's prefix, not on the full address: an IPv4 address is its own
// key, but one IPv6 host usually holds a whole /64 (ipv6_prefix), and a key
// per IPv6 address would give it 2^64 fresh buckets.

// sourcePrefix is the prefix an address is counted under: the full address
// for IPv4 (and v4-mapped IPv6), the first v6bits bits for IPv6.
func sourcePrefix(ip netip.Addr, v6bits int) netip.Prefix {
	ip = ip.Unmap()
	bits := ip.BitLen()
	if ip.Is6() && v6bits > 0 && v6bits < bits {
		bits = v6bits
	}
	p, err := ip.Prefix(bits)
	if err != nil { // an invalid address
		return netip.Prefix{}
	}
	return p
}

// sourceKey is the limiter and ban key of ip: "192.0.2.7" for IPv4,
// "2001:db8:1:2::/64" for IPv6 (with the default ipv6_prefix).
func sourceKey(ip netip.Addr, v6bits int) string {
	p := sourcePrefix(ip, v6bits)
	if !p.IsValid() {
		return ip.String()
	}
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// sourceKey is the key of an address as the server counts it.
func (s *Server) sourceKey(ip netip.Addr) string { return sourceKey(ip, s.cfg.IPv6Prefix) }

// sourceOf is the key of a peer address; its text when not a UDP peer.
func (s *Server) sourceOf(a net.Addr) string {
	if ua, ok := a.(*net.UDPAddr); ok {
		return s.sourceKey(ua.AddrPort().Addr())
	}
	return a.String()
}

// source is the session's address key; its address text when that does
// not parse (never, for a UDP peer).
func (ss *session) source() string {
	ip, err := netip.ParseAddr(ss.ip)
	if err != nil {
		return ss.ip
	}
	return ss.srv.sourceKey(ip)
}

// SourceKey is sourceKey for other packages (the web admin's login limit):
// ip keyed by the server's ipv6_prefix.
func (s *Server) SourceKey(ip netip.Addr) string { return s.sourceKey(ip) }

// SourceKeyOf keys ip with IPv6 addresses cut to v6bits.
func SourceKeyOf(ip netip.Addr, v6bits int) string { return sourceKey(ip, v6bits) }
