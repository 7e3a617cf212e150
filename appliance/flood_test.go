package appliance

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"

	"github.com/quic-go/quic-go"
)

// TestManySourcesBounded sends 50,000 distinct source addresses
// (127.x.y.z) through the server's admission path, the code every new
// connection's first packet runs, and checks that the limiter table stays
// at its cap and memory does not grow with the sources.
func TestManySourcesBounded(t *testing.T) {
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: t.TempDir(), LimiterTable: 1000,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 50000; i++ {
		addr := &net.UDPAddr{IP: net.IPv4(127, byte(i>>16), byte(i>>8), byte(i)), Port: 40000}
		if _, err := srv.admit(context.Background(), &quic.ClientInfo{RemoteAddr: addr}); err != nil {
			t.Fatalf("source %d refused: %v", i, err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := srv.connLimit.size(); n != 1000 {
		t.Errorf("connection limiter holds %d sources, cap 1000", n)
	}
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d KiB for 50,000 sources", grew>>10)
	if grew > 2<<20 {
		t.Errorf("heap grew by %d KiB: the limiter table is not bounded", grew>>10)
	}
}
