package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Connection close codes, protocol.md §2.3.
const (
	CloseNormal      quic.ApplicationErrorCode = 0
	CloseProtocol    quic.ApplicationErrorCode = 1 // a malformed or oversized frame
	CloseKicked      quic.ApplicationErrorCode = 2
	CloseReplaced    quic.ApplicationErrorCode = 3 // the device connected again elsewhere
	CloseShutdown    quic.ApplicationErrorCode = 4
	CloseAuthTimeout quic.ApplicationErrorCode = 5
	CloseBanned      quic.ApplicationErrorCode = 6
	CloseIdle        quic.ApplicationErrorCode = 7
	// CloseLimit: a per-connection bound was hit: too many connections from
	// the address, of the account or in total, or a peer that does not read
	// what the server writes within write_timeout.
	CloseLimit quic.ApplicationErrorCode = 8
)

// ErrFrameTimeout is returned by Conn.ReadFrame when a frame whose first
// byte arrived was not complete within the frame timeout. The stream is
// then mid-frame: the caller must close the connection.
var ErrFrameTimeout = errors.New("frame not completed in time")

// ErrIdleTimeout is returned when the connection ended because nothing
// came from the other side for the QUIC idle timeout: it stopped
// answering (its process killed, its machine or network gone).
var ErrIdleTimeout = errors.New("stopped answering (idle timeout)")

// ErrWriteTimeout is returned by Conn.WriteFrames when the peer did not take
// the bytes within the write timeout (it does not read, or too slowly). The
// stream is then mid-frame: the caller must close the connection.
var ErrWriteTimeout = errors.New("peer did not read in time")

// Conn is one QUIC connection with its control stream (protocol.md §3).
// ReadFrame is for one goroutine; WriteFrames may be called concurrently.
type Conn struct {
	qc *quic.Conn
	st *quic.Stream
	r  *bufio.Reader

	// For the reading goroutine: the frame size limit and the time a
	// frame may take once its first byte is here.
	max          int
	frameTimeout time.Duration

	writeTimeout atomic.Int64 // a time.Duration; 0: none

	wmu  sync.Mutex // guards wbuf and writes to st
	wbuf []byte
}

func newConn(qc *quic.Conn, st *quic.Stream, max int) *Conn {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	// The read buffer is small: what a frame needs beyond it is allocated
	// as it arrives (readBody), so an idle connection holds little.
	return &Conn{qc: qc, st: st, r: bufio.NewReaderSize(st, 4<<10), max: max}
}

// SetMaxFrame changes the largest frame ReadFrame accepts; for the reading
// goroutine. A server takes only small frames before authentication.
func (c *Conn) SetMaxFrame(max int) { c.max = max }

// SetFrameTimeout bounds the time from a frame's first byte to its last;
// 0 means no bound. For the reading goroutine. Waiting for a frame to start
// is not bounded by it (idle and AFK timeouts are).
func (c *Conn) SetFrameTimeout(d time.Duration) { c.frameTimeout = d }

// SetWriteTimeout bounds each WriteFrames; 0 means no bound.
func (c *Conn) SetWriteTimeout(d time.Duration) { c.writeTimeout.Store(int64(d)) }

// ClientQUICConfig is the quic-go configuration of clients. A server that
// is gone without a word (killed, unplugged) sends nothing, not even a
// stateless reset: the client notices only when the idle timeout passes.
// Keep-alives every couple of seconds let that timeout be short, so a
// dead server is noticed within ClientIdleTimeout, and several keep-alives
// may be lost in a row before a live connection is given up. (The idle
// timeout in effect is the smaller of the client's and the server's.)
func ClientQUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  ClientHandshakeTimeout,
		MaxIdleTimeout:        ClientIdleTimeout,
		KeepAlivePeriod:       ClientIdleTimeout / 5,
		MaxIncomingStreams:    16,
		MaxIncomingUniStreams: -1,
	}
}

// ClientIdleTimeout is how long a client waits without hearing from its
// server before it takes the connection as lost.
const ClientIdleTimeout = 10 * time.Second

// ClientHandshakeTimeout is how long a client waits for a silent server
// during the handshake, unless DialOptions say otherwise.
const ClientHandshakeTimeout = 10 * time.Second

// QuickHandshakeTimeout is the handshake timeout of one-shot commands.
// A server that is not running on loopback or a LAN answers nothing: no
// QUIC packet, and the ICMP port unreachable that the kernel gets is not
// passed to quic-go's unconnected socket. Only the timeout tells, so it
// is short. It bounds silence (and the whole handshake to twice it): a
// live server answers the first Initial within a round trip, and quic-go
// resends a lost Initial several times within this bound.
const QuickHandshakeTimeout = 2 * time.Second

// DialOptions configure a Dial. Zero values are defaults.
type DialOptions struct {
	// Local is the local UDP address to connect from ("" for any).
	Local string
	// HandshakeTimeout is how long the handshake may go without a packet
	// from the server (quic.Config.HandshakeIdleTimeout); 0 means
	// ClientHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// quicConfig is ClientQUICConfig with o applied.
func (o DialOptions) quicConfig() *quic.Config {
	c := ClientQUICConfig()
	if o.HandshakeTimeout > 0 {
		c.HandshakeIdleTimeout = o.HandshakeTimeout
	}
	return c
}

// Dial connects to addr, verifying the server with p, and opens the control stream.
func Dial(ctx context.Context, addr string, p *Pinner) (*Conn, error) {
	return DialWith(ctx, addr, p, DialOptions{})
}

// DialFrom is Dial from the local UDP address local ("" for any).
func DialFrom(ctx context.Context, local, addr string, p *Pinner) (*Conn, error) {
	return DialWith(ctx, addr, p, DialOptions{Local: local})
}

// DialWith is Dial with options.
func DialWith(ctx context.Context, addr string, p *Pinner, o DialOptions) (*Conn, error) {
	var qc *quic.Conn
	var err error
	if o.Local == "" {
		qc, err = quic.DialAddr(ctx, addr, ClientTLSConfig(p), o.quicConfig())
	} else {
		qc, err = dialFrom(ctx, o.Local, addr, p, o.quicConfig())
	}
	if err != nil {
		if m := p.Mismatch(); m != nil {
			return nil, m
		}
		return nil, dialError(addr, err)
	}
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		qc.CloseWithError(CloseNormal, "")
		return nil, fmt.Errorf("open control stream: %w", err)
	}
	return newConn(qc, st, 0), nil
}

func dialFrom(ctx context.Context, local, addr string, p *Pinner, qconf *quic.Config) (*quic.Conn, error) {
	la, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		return nil, err
	}
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, err
	}
	qc, err := quic.Dial(ctx, udp, ra, ClientTLSConfig(p), qconf)
	if err != nil {
		udp.Close()
		return nil, err
	}
	go func() { <-qc.Context().Done(); udp.Close() }() // quic.Dial does not own the socket
	return qc, nil
}

func dialError(addr string, err error) error {
	var idle *quic.IdleTimeoutError
	var hs *quic.HandshakeTimeoutError
	switch {
	case errors.As(err, &idle), errors.As(err, &hs), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("cannot reach server %s: no answer (is it running?)", addr)
	}
	var te *quic.TransportError
	if errors.As(err, &te) && te.ErrorCode == quic.ConnectionRefused {
		return fmt.Errorf("server %s refused the connection", addr)
	}
	return fmt.Errorf("cannot connect to %s: %w", addr, err)
}

// Accept waits for the client's control stream on a new server connection.
func Accept(ctx context.Context, qc *quic.Conn, maxFrame int) (*Conn, error) {
	st, err := qc.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return newConn(qc, st, maxFrame), nil
}

// ReadFrame reads the next frame from the control stream.
func (c *Conn) ReadFrame() (Frame, error) {
	if c.frameTimeout > 0 {
		if _, err := c.r.Peek(1); err != nil {
			return Frame{}, c.wrapErr(err)
		}
		c.st.SetReadDeadline(time.Now().Add(c.frameTimeout))
		defer c.st.SetReadDeadline(time.Time{})
	}
	f, err := ReadFrame(c.r, c.max)
	if err != nil {
		var idle *quic.IdleTimeoutError
		if isTimeout(err) && c.frameTimeout > 0 && !errors.As(err, &idle) {
			return f, fmt.Errorf("%w: %v", ErrFrameTimeout, c.frameTimeout)
		}
		return f, c.wrapErr(err)
	}
	return f, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// WriteFrame writes one frame.
func (c *Conn) WriteFrame(code Code, id uint32, body Marshaler) error {
	return c.WriteFrames(Frame{Code: code, ID: id, Body: Marshal(body)})
}

// WriteFrames writes frames with one stream write, so that a burst of
// pushes shares packets.
func (c *Conn) WriteFrames(fs ...Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = c.wbuf[:0]
	for _, f := range fs {
		c.wbuf = AppendFrame(c.wbuf, f)
	}
	if d := time.Duration(c.writeTimeout.Load()); d > 0 {
		c.st.SetWriteDeadline(time.Now().Add(d))
	}
	_, err := c.st.Write(c.wbuf)
	if cap(c.wbuf) > 1<<20 {
		c.wbuf = nil // don't pin a large buffer after one big message
	}
	if err != nil && isTimeout(err) {
		return fmt.Errorf("%w: %v", ErrWriteTimeout, time.Duration(c.writeTimeout.Load()))
	}
	return c.wrapErr(err)
}

// WriteRaw writes bytes to the control stream as they are; for tests of
// the server's handling of malformed input.
func (c *Conn) WriteRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.st.Write(b)
	return c.wrapErr(err)
}

// Exporter returns the TLS exporter value that device signatures bind to
// (protocol.md §5).
func (c *Conn) Exporter() ([]byte, error) {
	cs := c.qc.ConnectionState().TLS
	return cs.ExportKeyingMaterial(ExporterLabel, nil, ExporterLen)
}

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }

// Context is done when the connection is closed.
func (c *Conn) Context() context.Context { return c.qc.Context() }

// Close closes the connection with an application code and a reason the
// peer can show.
func (c *Conn) Close(code quic.ApplicationErrorCode, reason string) error {
	return c.qc.CloseWithError(code, reason)
}

// QUIC returns the underlying QUIC connection (for bulk streams).
func (c *Conn) QUIC() *quic.Conn { return c.qc }

// ClosedError reports that the peer closed the connection, with its reason.
type ClosedError struct {
	Code   quic.ApplicationErrorCode
	Reason string
}

func (e *ClosedError) Error() string {
	if e.Reason == "" {
		return "connection closed by peer"
	}
	return "connection closed by peer: " + e.Reason
}

func (c *Conn) wrapErr(err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		return &ClosedError{Code: ae.ErrorCode, Reason: ae.ErrorMessage}
	}
	var idle *quic.IdleTimeoutError
	if errors.As(err, &idle) {
		return ErrIdleTimeout
	}
	return err
}
