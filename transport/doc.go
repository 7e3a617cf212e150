// Package transport implements the securechat wire protocol of
// docs/protocol.md: QUIC connections (quic-go, TLS 1.3, ALPN securechat/1)
// with a pinned server key, one control stream per connection carrying
// length-prefixed frames (§3.1) whose bodies are a versioned field encoding
// (§3.2), and the messages of §4–6.
//
// It imports nothing else from the project.
package transport
