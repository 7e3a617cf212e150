package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/securechat/securechat/transport"
)

// The bulk baseline: what moving a file costs over raw quic-go, in the same
// run as the file phase (file.go). The bench re-executed with bulkServerArg
// is the bulk server, with the echo server's certificate, ALPN and quic-go
// limits (echoQUICConfig: the securechat server's flow-control windows).
// The client connects as a securechat client does (transport.Dial: the
// client's quic-go configuration and a control stream), says hello on the
// control stream, then opens one stream per transfer, as a bulk stream
// (protocol.md §2.2): a first frame naming the direction and the size, then
// raw bytes. Up: the client writes SIZE bytes and closes its side; the
// server reads them all, in chunks of the blob chunk size as the real
// server does, and answers with one frame. Down: the server writes SIZE
// bytes in such chunks and ends the stream. No authentication, no store,
// no fsync, no cryptography beyond QUIC's own.

// bulkServerArg is the hidden first argument that makes this program the
// bulk server.
const bulkServerArg = "bulk-server"

// bulkChunk is the size of the server's reads and writes, and of the
// client's writes: the server's blob chunk (appliance.BlobChunkSize).
const bulkChunk = 256 << 10

// bulkStreamTimeout bounds each read and write of a bulk stream, as
// frame_timeout does on the real server.
const bulkStreamTimeout = 30 * time.Second

// runBulkServer is the bulk server process, started and stopped like the
// echo server.
func runBulkServer(stdin io.Reader, stdout io.Writer) error {
	return runBaselineServer(stdin, stdout, bulkConn)
}

// bulkConn serves one connection of the bulk server: the hello on its
// control stream, then each stream it opens.
func bulkConn(ctx context.Context, qc *quic.Conn) {
	defer qc.CloseWithError(transport.CloseNormal, "")
	c, err := transport.Accept(ctx, qc, transport.DefaultMaxFrame)
	if err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { c.Close(transport.CloseShutdown, "") })
	defer stop()
	hello, err := c.ReadFrame()
	if err != nil {
		return
	}
	if err := c.WriteFrames(transport.Frame{Code: transport.CodeWelcome, ID: hello.ID}); err != nil {
		return
	}
	var streams sync.WaitGroup
	defer streams.Wait()
	for {
		st, err := c.AcceptStream(ctx, bulkStreamTimeout)
		if err != nil {
			return
		}
		streams.Go(func() { serveBulk(st) })
	}
}

// serveBulk serves one transfer.
func serveBulk(st *transport.Stream) {
	defer st.Cancel()
	f, err := st.ReadFrame()
	if err != nil || len(f.Body) != 8 {
		return
	}
	size := int64(binary.BigEndian.Uint64(f.Body))
	buf := make([]byte, bulkChunk)
	switch f.Code {
	case transport.CodeBlobUpload:
		for done := int64(0); done < size; {
			n := min(int64(len(buf)), size-done)
			if st.ReadFull(buf[:n]) != nil {
				return
			}
			done += n
		}
		st.Write(transport.AppendFrame(nil, transport.Frame{Code: transport.CodeOK}))
		st.CloseWrite()
	case transport.CodeBlobDownload:
		rand.Read(buf)
		for done := int64(0); done < size; {
			n := min(int64(len(buf)), size-done)
			if _, err := st.Write(buf[:n]); err != nil {
				return
			}
			done += n
		}
		st.CloseWrite()
	}
}

// bulkClient is a connection to the bulk server.
type bulkClient struct {
	c *transport.Conn
}

func dialBulk(ctx context.Context, addr, fingerprint string) (*bulkClient, error) {
	fp, err := transport.ParseFingerprint(fingerprint)
	if err != nil {
		return nil, fmt.Errorf("bulk server fingerprint: %w", err)
	}
	c, err := transport.Dial(ctx, addr, &transport.Pinner{Pin: fp})
	if err != nil {
		return nil, err
	}
	if err := c.WriteFrames(transport.Frame{Code: transport.CodePing, ID: 1}); err != nil {
		c.Close(transport.CloseNormal, "")
		return nil, err
	}
	if f, err := c.ReadFrame(); err != nil || f.Code != transport.CodeWelcome {
		c.Close(transport.CloseNormal, "")
		return nil, fmt.Errorf("bulk server: no welcome: %v", err)
	}
	return &bulkClient{c: c}, nil
}

func (b *bulkClient) close() { b.c.Close(transport.CloseNormal, "") }

// open starts a transfer of size bytes, up or down.
func (b *bulkClient) open(ctx context.Context, code transport.Code, size int64) (*transport.Stream, error) {
	st, err := b.c.OpenStream(ctx, bulkStreamTimeout)
	if err != nil {
		return nil, err
	}
	if _, err := st.Write(transport.AppendFrame(nil, transport.Frame{Code: code, Body: binary.BigEndian.AppendUint64(nil, uint64(size))})); err != nil {
		st.Cancel()
		return nil, err
	}
	return st, nil
}

// upload writes size bytes on a new stream and waits for the server's
// answer, which comes once it has read them all.
func (b *bulkClient) upload(ctx context.Context, size int64) error {
	st, err := b.open(ctx, transport.CodeBlobUpload, size)
	if err != nil {
		return err
	}
	defer st.Cancel()
	buf := make([]byte, bulkChunk)
	rand.Read(buf)
	for done := int64(0); done < size; {
		n := min(int64(len(buf)), size-done)
		if _, err := st.Write(buf[:n]); err != nil {
			return fmt.Errorf("raw upload: %w", err)
		}
		done += n
	}
	st.CloseWrite()
	f, err := st.ReadFrame()
	if err != nil {
		return fmt.Errorf("raw upload: no answer: %w", err)
	}
	if f.Code != transport.CodeOK {
		return fmt.Errorf("raw upload answered with %s", f.Code)
	}
	return nil
}

// download reads a new stream of size bytes to its end, 64 KiB at a time
// as client.Download does.
func (b *bulkClient) download(ctx context.Context, size int64) error {
	st, err := b.open(ctx, transport.CodeBlobDownload, size)
	if err != nil {
		return err
	}
	defer st.Cancel()
	st.CloseWrite()
	buf := make([]byte, 64<<10)
	var got int64
	for {
		n, err := st.Read(buf)
		got += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("raw download cut after %d bytes: %w", got, err)
		}
	}
	if got != size {
		return fmt.Errorf("raw download: %d bytes, want %d", got, size)
	}
	return nil
}
