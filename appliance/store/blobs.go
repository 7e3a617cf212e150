package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/securechat/securechat/chat"
)

// Blobs are encrypted files (protocol.md §6.8): opaque ciphertext an
// account's device uploads in fixed-size chunks for a set of recipient
// devices, kept until every recipient fetched it or until it expires.

// BlobIDLen is the length of a blob's random id.
const BlobIDLen = 16

// MaxBlobChunk bounds a blob's chunk size (one stored value).
const MaxBlobChunk = 1 << 20

// MaxBlobRecipients bounds the devices one blob is for.
const MaxBlobRecipients = 1024

// BlobID is a blob's random id, chosen by the server.
type BlobID [BlobIDLen]byte

func (id BlobID) String() string { return fmt.Sprintf("%x", id[:]) }

// Charge is what a blob of size bytes in chunks of chunkSize counts
// against the quotas: its size, and at least one chunk. A chunk covers its
// record (up to MaxBlobRecipients recipients, some 48 KiB at most), so
// that a quota bounds what an account's blobs hold, records included:
// files of a byte each cannot be created by the million
// (docs/security.md §4.16).
func Charge(size int64, chunkSize int) int64 { return max(size, int64(chunkSize)) }

// NewBlob is a blob to create: its Charge is reserved against the bounds
// before any byte of it is stored.
type NewBlob struct {
	ID         BlobID
	Owner      chat.Device // the uploading device
	Size       int64       // exact total bytes, at least 1
	ChunkSize  int         // every chunk but the last has this length
	Recipients []chat.Device
	Now        time.Time
	Expires    time.Time
	// Quota bounds the owner account's blobs together (their Charge);
	// 0 is no bound.
	Quota int64
}

// Blob is a stored blob's record.
type Blob struct {
	ID         BlobID
	Owner      chat.Device
	Size       int64
	ChunkSize  int
	Created    time.Time
	Expires    time.Time
	Chunks     int // chunks confirmed: durably stored, from chunk 0 on
	Recipients []BlobRecipient
}

// BlobRecipient is a device a blob is for, and whether it fetched it to
// the end.
type BlobRecipient struct {
	Device  chat.Device
	Fetched bool
}

// NumChunks is how many chunks the whole blob has.
func (b Blob) NumChunks() int { return int((b.Size + int64(b.ChunkSize) - 1) / int64(b.ChunkSize)) }

// ChunkLen is the length chunk i must have.
func (b Blob) ChunkLen(i int) int {
	return int(min(int64(b.ChunkSize), b.Size-int64(i)*int64(b.ChunkSize)))
}

// Confirmed is how many bytes are durably stored.
func (b Blob) Confirmed() int64 { return min(int64(b.Chunks)*int64(b.ChunkSize), b.Size) }

// Complete says whether every chunk is stored.
func (b Blob) Complete() bool { return b.Chunks == b.NumChunks() }

// Recipient says whether d is one of the blob's recipients.
func (b Blob) Recipient(d chat.Device) bool {
	for _, r := range b.Recipients {
		if r.Device == d {
			return true
		}
	}
	return false
}

// Blobs stores encrypted files in chunks.
type Blobs interface {
	// CreateBlob reserves a new blob's Charge and stores its record, no
	// chunk yet. ErrDuplicate; *BlobQuotaError when the owner account's
	// blobs and this one would pass nb.Quota; ErrFull when all blobs
	// would pass the store's bound for them.
	CreateBlob(ctx context.Context, nb NewBlob) error
	// PutChunks stores chunks first, first+1, … in one commit and
	// returns the chunks confirmed after it. first must be the count
	// already confirmed and each chunk of its exact length, else
	// *ChunkError and nothing is stored. ErrNotFound.
	PutChunks(ctx context.Context, id BlobID, first int, chunks [][]byte) (int, error)
	// Blob reads a blob's record. ErrNotFound.
	Blob(id BlobID) (Blob, error)
	// ReadChunk reads one confirmed chunk. ErrNotFound.
	ReadChunk(id BlobID, i int) ([]byte, error)
	// BlobFetched records that a recipient device fetched the whole
	// blob; the last recipient's fetch deletes it (deleted is then
	// true). ErrNotFound; ErrNotRecipient; ErrBlobIncomplete.
	BlobFetched(ctx context.Context, id BlobID, d chat.Device) (deleted bool, err error)
	// DeleteBlob removes a blob with its chunks and gives its Charge
	// back to the quotas. ErrNotFound.
	DeleteBlob(ctx context.Context, id BlobID) error
	// ExpireBlobs deletes at most limit blobs whose expiry is not after
	// now, in one commit; more says whether others are due.
	ExpireBlobs(ctx context.Context, now time.Time, limit int) (n int, more bool, err error)
	// BlobUsage is the bytes reserved by an account's blobs (their
	// Charge).
	BlobUsage(account string) (int64, error)
}

// Errors of blobs.
var (
	// ErrNotRecipient: the device is not one the blob is for.
	ErrNotRecipient = errors.New("this device is not a recipient of that file")
	// ErrBlobIncomplete: the blob's upload has not finished.
	ErrBlobIncomplete = errors.New("that file's upload has not finished")
)

// BlobQuotaError refuses a blob that would pass its account's quota.
type BlobQuotaError struct {
	Used, Size, Quota int64
}

func (e *BlobQuotaError) Error() string {
	return fmt.Sprintf("this file needs %s but your account has %s of its %s for files left on this server",
		chat.FormatBytes(e.Size), chat.FormatBytes(max(e.Quota-e.Used, 0)), chat.FormatBytes(e.Quota))
}

// ChunkError refuses chunks that are out of order or of the wrong length.
type ChunkError struct {
	Want, Got int // the chunk expected and the one given
	Len       int // when nonzero: the length given, not the chunk's
}

func (e *ChunkError) Error() string {
	if e.Len != 0 {
		return fmt.Sprintf("chunk %d has %d bytes, not its length", e.Got, e.Len)
	}
	return fmt.Sprintf("chunk %d out of order: the server expects chunk %d", e.Got, e.Want)
}
