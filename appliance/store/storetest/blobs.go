package storetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
)

// Encrypted files (protocol.md §6.8): chunks confirmed in order and kept
// across a reopen and a crash, quotas reserved before any chunk, deletion
// once every recipient fetched, expiry.

const testChunk = 64 << 10

func blobID(n byte) store.BlobID {
	var id store.BlobID
	id[0], id[15] = 'b', n
	return id
}

func blobChunk(id store.BlobID, i, n int) []byte {
	return fill(n, fmt.Sprintf("%x chunk %d", id[:2], i))
}

func (h *harness) newBlob(id store.BlobID, size int64, quota int64, to ...chat.Device) error {
	return h.s.CreateBlob(h.ctx, store.NewBlob{ID: id, Owner: alice1, Size: size, ChunkSize: testChunk,
		Recipients: to, Now: t0, Expires: t0.Add(time.Hour), Quota: quota})
}

// upload puts every chunk of a blob, n at a time.
func (h *harness) upload(id store.BlobID, from, n int) {
	h.t.Helper()
	b, err := h.s.Blob(id)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := from; i < b.NumChunks(); i += n {
		var cs [][]byte
		for j := i; j < min(i+n, b.NumChunks()); j++ {
			cs = append(cs, blobChunk(id, j, b.ChunkLen(j)))
		}
		got, err := h.s.PutChunks(h.ctx, id, i, cs)
		if err != nil || got != i+len(cs) {
			h.t.Fatalf("chunks %d…: %d confirmed, %v", i, got, err)
		}
	}
}

func testBlobs(t *testing.T, h *harness) {
	id := blobID(1)
	size := int64(3*testChunk + 100)
	if err := h.newBlob(id, size, 0, bob1, bob2); err != nil {
		t.Fatal(err)
	}
	if err := h.newBlob(id, 10, 0, bob1); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("same id again: %v", err)
	}
	b, err := h.s.Blob(id)
	if err != nil || b.NumChunks() != 4 || b.ChunkLen(3) != 100 || b.Chunks != 0 || b.Owner != alice1 || !b.Recipient(bob2) || b.Recipient(alice1) {
		t.Fatalf("new blob %+v, %v", b, err)
	}
	if _, err := h.s.PutChunks(h.ctx, id, 1, [][]byte{blobChunk(id, 1, testChunk)}); !isChunkError(err) {
		t.Errorf("chunk 1 before chunk 0: %v", err)
	}
	if _, err := h.s.PutChunks(h.ctx, id, 0, [][]byte{blobChunk(id, 0, testChunk-1)}); !isChunkError(err) {
		t.Errorf("a short chunk 0: %v", err)
	}
	if n, err := h.s.PutChunks(h.ctx, id, 0, [][]byte{blobChunk(id, 0, testChunk), blobChunk(id, 1, testChunk)}); err != nil || n != 2 {
		t.Fatalf("chunks 0 and 1: %d, %v", n, err)
	}
	if _, err := h.s.PutChunks(h.ctx, id, 0, [][]byte{blobChunk(id, 0, testChunk)}); !isChunkError(err) {
		t.Errorf("chunk 0 again: %v", err)
	}
	// A chunk past the size, in the same put as a good one: nothing stored.
	if _, err := h.s.PutChunks(h.ctx, id, 2, [][]byte{blobChunk(id, 2, testChunk), blobChunk(id, 3, 100), {1}}); !isChunkError(err) {
		t.Errorf("a chunk past the size: %v", err)
	}
	if _, err := h.s.BlobFetched(h.ctx, id, bob1); !errors.Is(err, store.ErrBlobIncomplete) {
		t.Errorf("fetched before complete: %v", err)
	}
	h.reopen() // confirmed chunks are durable
	b, err = h.s.Blob(id)
	if err != nil || b.Chunks != 2 || b.Confirmed() != 2*testChunk || b.Complete() {
		t.Fatalf("after reopen: %+v, %v", b, err)
	}
	h.upload(id, 2, 2)
	b, _ = h.s.Blob(id)
	if !b.Complete() || b.Confirmed() != size {
		t.Errorf("complete blob %+v", b)
	}
	for i := range b.NumChunks() {
		if c, err := h.s.ReadChunk(id, i); err != nil || !bytes.Equal(c, blobChunk(id, i, b.ChunkLen(i))) {
			t.Errorf("chunk %d: %d bytes, %v", i, len(c), err)
		}
	}
	if _, err := h.s.ReadChunk(id, 4); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("chunk past the end: %v", err)
	}
	if _, err := h.s.Blob(blobID(9)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown blob: %v", err)
	}
	if err := h.s.DeleteBlob(h.ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.ReadChunk(id, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted blob's chunk: %v", err)
	}
	if err := h.s.DeleteBlob(h.ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if u, _ := h.s.BlobUsage("alice"); u != 0 || h.s.Stats().BlobBytes != 0 || h.s.Stats().Blobs != 0 {
		t.Errorf("after delete: usage %d, stats %+v", u, h.s.Stats())
	}
}

func isChunkError(err error) bool {
	var ce *store.ChunkError
	return errors.As(err, &ce)
}

func testBlobQuota(t *testing.T, h *harness) {
	const quota = 1 << 20
	if err := h.newBlob(blobID(1), quota-testChunk, quota, bob1); err != nil {
		t.Fatal(err)
	}
	var qe *store.BlobQuotaError
	if err := h.newBlob(blobID(2), testChunk+1, quota, bob1); !errors.As(err, &qe) || qe.Used != quota-testChunk || qe.Quota != quota {
		t.Errorf("past the quota: %v", err)
	}
	if _, err := h.s.Blob(blobID(2)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused blob is stored: %v", err)
	}
	// A blob smaller than a chunk is charged a chunk (store.Charge): its
	// record counts too.
	if err := h.newBlob(blobID(3), 10, quota, bob1); err != nil {
		t.Errorf("up to the quota: %v", err)
	}
	if u, _ := h.s.BlobUsage("alice"); u != quota {
		t.Errorf("alice uses %d after a blob of 10 bytes, want the %d of a chunk charged", u, testChunk)
	}
	h.reopen() // the quota holds across a restart
	if err := h.newBlob(blobID(2), 1, quota, bob1); !errors.As(err, &qe) {
		t.Errorf("past the quota after reopen: %v", err)
	}
	// The store's bound for all blobs: other accounts (no quota) fill it.
	err := h.s.CreateBlob(h.ctx, store.NewBlob{ID: blobID(4), Owner: bob1, Size: BlobBound - quota, ChunkSize: testChunk,
		Recipients: []chat.Device{alice1}, Now: t0, Expires: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	err = h.s.CreateBlob(h.ctx, store.NewBlob{ID: blobID(5), Owner: bob1, Size: 1, ChunkSize: testChunk,
		Recipients: []chat.Device{alice1}, Now: t0, Expires: t0.Add(time.Hour)})
	if !errors.Is(err, store.ErrFull) {
		t.Errorf("past the store's bound: %v", err)
	}
	if u, _ := h.s.BlobUsage("alice"); u != quota {
		t.Errorf("alice uses %d", u)
	}
	if err := h.s.DeleteBlob(h.ctx, blobID(1)); err != nil {
		t.Fatal(err)
	}
	if err := h.newBlob(blobID(2), quota-testChunk, quota, bob1); err != nil {
		t.Errorf("after a delete: %v", err)
	}
	if err := h.s.DeleteBlob(h.ctx, blobID(3)); err != nil {
		t.Fatal(err)
	}
	if u, _ := h.s.BlobUsage("alice"); u != quota-testChunk {
		t.Errorf("alice uses %d after the small blob's delete, want %d", u, quota-testChunk)
	}
}

func testBlobFetched(t *testing.T, h *harness) {
	id := blobID(1)
	if err := h.newBlob(id, 2*testChunk, 0, bob1, bob2); err != nil {
		t.Fatal(err)
	}
	h.upload(id, 0, 1)
	if _, err := h.s.BlobFetched(h.ctx, id, alice1); !errors.Is(err, store.ErrNotRecipient) {
		t.Errorf("fetched by its sender: %v", err)
	}
	for range 2 { // the same device twice counts once
		if deleted, err := h.s.BlobFetched(h.ctx, id, bob1); err != nil || deleted {
			t.Fatalf("bob/1 fetched: deleted %v, %v", deleted, err)
		}
	}
	b, _ := h.s.Blob(id)
	if !b.Recipients[0].Fetched || b.Recipients[1].Fetched {
		t.Errorf("recipients %+v", b.Recipients)
	}
	if deleted, err := h.s.BlobFetched(h.ctx, id, bob2); err != nil || !deleted {
		t.Fatalf("bob/2 fetched: deleted %v, %v", deleted, err)
	}
	if _, err := h.s.Blob(id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("blob after every fetch: %v", err)
	}
	if _, err := h.s.ReadChunk(id, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("chunk after every fetch: %v", err)
	}
	if u, _ := h.s.BlobUsage("alice"); u != 0 {
		t.Errorf("alice still uses %d", u)
	}
}

func testBlobExpiry(t *testing.T, h *harness) {
	for i := range 5 {
		err := h.s.CreateBlob(h.ctx, store.NewBlob{ID: blobID(byte(i)), Owner: alice1, Size: testChunk + 1, ChunkSize: testChunk,
			Recipients: []chat.Device{bob1}, Now: t0, Expires: t0.Add(time.Duration(i) * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
	}
	h.upload(blobID(1), 0, 2)
	n, more, err := h.s.ExpireBlobs(h.ctx, t0.Add(2*time.Hour), 2)
	if err != nil || n != 2 || !more {
		t.Fatalf("first batch: %d, more %v, %v", n, more, err)
	}
	n, more, err = h.s.ExpireBlobs(h.ctx, t0.Add(2*time.Hour), 2)
	if err != nil || n != 1 || more {
		t.Fatalf("second batch: %d, more %v, %v", n, more, err)
	}
	for i := range 5 {
		_, err := h.s.Blob(blobID(byte(i)))
		if gone := errors.Is(err, store.ErrNotFound); gone != (i <= 2) {
			t.Errorf("blob %d: %v", i, err)
		}
	}
	if _, err := h.s.ReadChunk(blobID(1), 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired blob's chunk: %v", err)
	}
	if u, _ := h.s.BlobUsage("alice"); u != 2*(testChunk+1) {
		t.Errorf("alice uses %d after expiry", u)
	}
}

// The blob crash test: a child uploads chunks one per commit and prints
// each confirmed count; the parent kills it and finds every confirmed
// chunk whole after reopening, and the upload resumes from there.

const envBlobCrashDir = "SECURECHAT_STORETEST_BLOB_CRASH_DIR"

func testBlobCrash(t *testing.T, h *harness) {
	id := blobID(7)
	const chunks = BlobBound / testChunk
	if dir := os.Getenv(envBlobCrashDir); dir != "" {
		s := h.open(t, dir, h.bounds)
		for i := range chunks {
			n, err := s.PutChunks(h.ctx, id, i, [][]byte{blobChunk(id, i, testChunk)})
			if err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
			if _, err := fmt.Fprintf(os.Stdout, "confirmed %d\n", n); err != nil {
				return
			}
		}
		time.Sleep(time.Minute) // all stored before the kill came: wait for it
		t.Errorf("not killed after %d chunks", chunks)
		return
	}
	if err := h.newBlob(id, chunks*testChunk, 0, bob1); err != nil {
		t.Fatal(err)
	}
	h.close()
	cmd := exec.Command(os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1")
	cmd.Env = append(os.Environ(), envBlobCrashDir+"="+h.dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	confirmed, killed := 0, false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "confirmed ")
		if !ok {
			continue
		}
		confirmed, _ = strconv.Atoi(v)
		if confirmed >= 20 && !killed {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("the child ended by itself after %d chunks", confirmed)
	}
	h.s = h.open(t, h.dir, h.bounds)
	b, err := h.s.Blob(id)
	if err != nil || b.Chunks < confirmed {
		t.Fatalf("after the crash: %d chunks kept, %d were confirmed (%v)", b.Chunks, confirmed, err)
	}
	t.Logf("killed with %d chunks confirmed; %d kept", confirmed, b.Chunks)
	for i := range b.Chunks {
		if c, err := h.s.ReadChunk(id, i); err != nil || !bytes.Equal(c, blobChunk(id, i, testChunk)) {
			t.Fatalf("chunk %d after the crash: %d bytes, %v", i, len(c), err)
		}
	}
	if _, err := h.s.PutChunks(h.ctx, id, b.Chunks, [][]byte{blobChunk(id, b.Chunks, testChunk)}); err != nil {
		t.Errorf("resuming at chunk %d: %v", b.Chunks, err)
	}
}
