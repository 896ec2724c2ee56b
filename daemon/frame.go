package daemon

// Stream frames. A peer's one-way messages travel as frames in the chunked
// body of one long POST /v1/internal/stream (transport.go):
//
//	frame = kind:u8 len:uvarint body
//
// kind indexes kinds; kindKeepalive (0xff, len 0) is sent on an idle stream
// so the receiver can tell a quiet peer from a dead or malicious one.
// A frame's length is checked against maxFrame before any byte of the body
// is read, and the body grows only as its bytes arrive: a header announcing
// a large frame costs nothing until the bytes are actually sent.
//
// Mixed versions: a daemon from before keepalives closes a stream that
// carries one (unknown kind), and one that sends none has its idle streams
// closed after Limits.StreamIdle. Either way the sender opens a new stream
// at its next push; a push lost with the old one is repaired by
// anti-entropy.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// maxFrame bounds a frame's body. A push is at most pushChunk of entries
// plus the one that crosses it (sendBatch), at most store.MaxValueLen and
// its key, so 4 × pushChunk leaves room for encoding overhead and for peers
// with a larger chunk.
const maxFrame = 4 * pushChunk

// kindKeepalive marks an empty frame an idle sender writes every keepalive.
const kindKeepalive = 0xff

// frameStep is how much of a frame's body is allocated before its first
// bytes arrive; the buffer then doubles as bytes come in.
const frameStep = 64 << 10

// Frame errors, each a reason a frame is dropped (counted in
// malformed_dropped by reason).
var (
	errFrameKind      = errors.New("unknown frame kind")
	errFrameLength    = errors.New("bad frame length")
	errFrameOversize  = errors.New("frame too large")
	errFrameTruncated = errors.New("stream ended inside a frame")
)

// appendFrame appends a frame of the kind with body to b.
func appendFrame(b []byte, kind byte, body []byte) []byte {
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(len(body)))
	return append(b, body...)
}

// readFrame reads one frame from r. It returns r's error as is if r fails
// before a frame (io.EOF: the stream ended cleanly), errFrameTruncated
// wrapping r's error if r fails inside one (a deadline included), and
// errFrameKind, errFrameLength or errFrameOversize (wrapped, with detail)
// for a frame it refuses; after an error the stream is unusable. A body
// longer than max is refused from its header; otherwise at most frameStep
// bytes are allocated beyond about twice what has arrived. A keepalive
// frame returns kindKeepalive and a nil body.
func readFrame(r *bufio.Reader, max int) (kind byte, body []byte, err error) {
	kind, err = r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	if int(kind) >= len(kinds) && kind != kindKeepalive {
		return 0, nil, fmt.Errorf("%w %d", errFrameKind, kind)
	}
	n, err := readUvarint(r)
	switch {
	case errors.Is(err, errFrameLength):
		return 0, nil, err
	case err != nil:
		return 0, nil, fmt.Errorf("%w: %w", errFrameTruncated, err)
	case n > uint64(max):
		return 0, nil, fmt.Errorf("%w: %d bytes announced, the limit is %d", errFrameOversize, n, max)
	case kind == kindKeepalive && n != 0:
		return 0, nil, fmt.Errorf("%w: keepalive frame with %d bytes", errFrameLength, n)
	case kind == kindKeepalive:
		return kind, nil, nil
	}
	body = make([]byte, 0, min(int(n), frameStep))
	for len(body) < int(n) {
		if len(body) == cap(body) {
			body = slices.Grow(body, min(int(n)-len(body), len(body)))
		}
		m, err := r.Read(body[len(body):min(cap(body), int(n))])
		body = body[:len(body)+m]
		if err != nil && len(body) < int(n) {
			return 0, nil, fmt.Errorf("%w after %d of %d bytes: %w", errFrameTruncated, len(body), n, err)
		}
	}
	return kind, body, nil
}

// readUvarint reads a uvarint as binary.ReadUvarint does, but tells an
// encoding that overflows 64 bits (errFrameLength) from r's own error.
func readUvarint(r io.ByteReader) (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				break
			}
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return 0, fmt.Errorf("%w: length overflows 64 bits", errFrameLength)
}
