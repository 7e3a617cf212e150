package transport

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Field encoding, docs/protocol.md §3.2.
//
// A message body is a sequence of fields. Each field is
//
//	uvarint key    = number<<1 | critical
//	uvarint length
//	length bytes   value
//
// Every value is length-delimited, so a decoder can skip a field it does not
// know; it may skip it only when the critical bit is clear. Integers are
// uvarints inside the value. Field numbers ascend; a repeated field repeats
// its number. The decoder checks every length against the bytes that remain
// before it slices, and never allocates from a length it has not checked.

// Encoder appends fields to a buffer. The zero value is ready to use.
type Encoder struct {
	buf []byte
}

// Bytes returns the encoded fields.
func (e *Encoder) Bytes() []byte { return e.buf }

func (e *Encoder) key(num int) {
	e.buf = binary.AppendUvarint(e.buf, uint64(num)<<1|1)
}

// NonCritical writes a bytes field that an older decoder may skip
// (protocol.md §3.2): for extensions that change no meaning of the message.
func (e *Encoder) NonCritical(num int, v []byte) {
	if len(v) == 0 {
		return
	}
	e.buf = binary.AppendUvarint(e.buf, uint64(num)<<1)
	e.buf = binary.AppendUvarint(e.buf, uint64(len(v)))
	e.buf = append(e.buf, v...)
}

// Bytes field; nil and empty values are omitted.
func (e *Encoder) BytesField(num int, v []byte) {
	if len(v) == 0 {
		return
	}
	e.key(num)
	e.buf = binary.AppendUvarint(e.buf, uint64(len(v)))
	e.buf = append(e.buf, v...)
}

// String field; the empty string is omitted.
func (e *Encoder) String(num int, v string) {
	if v == "" {
		return
	}
	e.key(num)
	e.buf = binary.AppendUvarint(e.buf, uint64(len(v)))
	e.buf = append(e.buf, v...)
}

// Uint field; zero is omitted.
func (e *Encoder) Uint(num int, v uint64) {
	if v == 0 {
		return
	}
	e.key(num)
	var tmp [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(tmp[:], v)
	e.buf = append(e.buf, byte(n))
	e.buf = append(e.buf, tmp[:n]...)
}

// Int field, zig-zag encoded; zero is omitted.
func (e *Encoder) Int(num int, v int64) {
	e.Uint(num, uint64(v<<1)^uint64(v>>63))
}

// Bool field; false is omitted.
func (e *Encoder) Bool(num int, v bool) {
	if v {
		e.Uint(num, 1)
	}
}

// Message writes m as a nested field. An empty nested message is still
// written, so a repeated field keeps its count.
func (e *Encoder) Message(num int, m Marshaler) {
	var inner Encoder
	m.MarshalFields(&inner)
	e.key(num)
	e.buf = binary.AppendUvarint(e.buf, uint64(len(inner.buf)))
	e.buf = append(e.buf, inner.buf...)
}

// Marshaler is implemented by every wire message.
type Marshaler interface {
	MarshalFields(e *Encoder)
}

// Unmarshaler is implemented by every wire message.
type Unmarshaler interface {
	UnmarshalFields(d *Decoder) error
}

// Decoder reads fields from a buffer. Values returned by Next alias the
// buffer; messages copy what they keep only when the buffer is reused.
type Decoder struct {
	buf  []byte
	last int // last field number seen, for the ascending-order rule
}

// NewDecoder returns a Decoder over b.
func NewDecoder(b []byte) *Decoder { return &Decoder{buf: b} }

// Field is one decoded field.
type Field struct {
	Num      int
	Critical bool
	Value    []byte
}

// Next returns the next field, or io.EOF at the end of the buffer.
func (d *Decoder) Next() (Field, error) {
	if len(d.buf) == 0 {
		return Field{}, io.EOF
	}
	key, n := binary.Uvarint(d.buf)
	if n <= 0 || key>>1 > math.MaxInt32 {
		return Field{}, errorf("bad field key")
	}
	d.buf = d.buf[n:]
	num := int(key >> 1)
	if num == 0 {
		return Field{}, errorf("field number 0")
	}
	if num < d.last {
		return Field{}, errorf("field %d out of order", num)
	}
	d.last = num
	l, n := binary.Uvarint(d.buf)
	if n <= 0 {
		return Field{}, errorf("bad length of field %d", num)
	}
	d.buf = d.buf[n:]
	if l > uint64(len(d.buf)) {
		return Field{}, errorf("field %d claims %d bytes, %d remain", num, l, len(d.buf))
	}
	v := d.buf[:l:l]
	d.buf = d.buf[l:]
	return Field{Num: num, Critical: key&1 == 1, Value: v}, nil
}

// Unknown handles a field the message does not define (protocol.md §3.2):
// skipped if non-critical, an error if critical.
func (f Field) Unknown() error {
	if f.Critical {
		return errorf("unknown critical field %d", f.Num)
	}
	return nil
}

// Uint decodes the field as a minimal uvarint that fills the value exactly,
// so that every integer has one encoding (protocol.md §3.2).
func (f Field) Uint() (uint64, error) {
	v, n := binary.Uvarint(f.Value)
	if n <= 0 || n != len(f.Value) || n != uvarintLen(v) {
		return 0, errorf("field %d: bad integer", f.Num)
	}
	return v, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// Int decodes a zig-zag integer.
func (f Field) Int() (int64, error) {
	u, err := f.Uint()
	return int64(u>>1) ^ -int64(u&1), err
}

// Uint32 decodes an integer that must fit in 32 bits.
func (f Field) Uint32() (uint32, error) {
	v, err := f.Uint()
	if err == nil && v > math.MaxUint32 {
		err = errorf("field %d: integer out of range", f.Num)
	}
	return uint32(v), err
}

// Bool decodes a boolean (the value 1).
func (f Field) Bool() (bool, error) {
	v, err := f.Uint()
	if err == nil && v != 1 {
		err = errorf("field %d: bad boolean", f.Num)
	}
	return v == 1, err
}

// String returns the value as a string of at most max bytes.
func (f Field) String(max int) (string, error) {
	if len(f.Value) > max {
		return "", errorf("field %d: %d bytes, max %d", f.Num, len(f.Value), max)
	}
	return string(f.Value), nil
}

// Bytes returns a copy of the value, which must hold at most max bytes.
func (f Field) Bytes(max int) ([]byte, error) {
	if len(f.Value) > max {
		return nil, errorf("field %d: %d bytes, max %d", f.Num, len(f.Value), max)
	}
	return append([]byte(nil), f.Value...), nil
}

// Fixed returns a copy of the value, which must hold exactly size bytes.
func (f Field) Fixed(size int) ([]byte, error) {
	if len(f.Value) != size {
		return nil, errorf("field %d: %d bytes, want %d", f.Num, len(f.Value), size)
	}
	return append([]byte(nil), f.Value...), nil
}

// Message decodes the value into m.
func (f Field) Message(m Unmarshaler) error {
	return m.UnmarshalFields(NewDecoder(f.Value))
}

// Marshal encodes m's fields.
func Marshal(m Marshaler) []byte {
	var e Encoder
	m.MarshalFields(&e)
	return e.buf
}

// Unmarshal decodes b into m.
func Unmarshal(b []byte, m Unmarshaler) error {
	return m.UnmarshalFields(NewDecoder(b))
}

// DecodeError is returned for any malformed input.
type DecodeError struct {
	Msg string
}

func (e *DecodeError) Error() string { return "malformed message: " + e.Msg }

func errorf(format string, args ...any) error {
	return &DecodeError{Msg: fmt.Sprintf(format, args...)}
}
