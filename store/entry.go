package store

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Limits on what a client may store. They keep every entry small enough to
// replicate in one message and to hold many of them in memory.
const (
	MaxKeyLen   = 512      // bytes of UTF-8
	MaxValueLen = 64 << 10 // bytes
	MaxNodeLen  = 128      // bytes of a node name carried in a version
)

// MaxTimestamp is the greatest timestamp Validate accepts (wall time in
// the year 6429). The bound keeps a Clock that witnesses a peer's
// timestamp from ever counting past 2^64 and wrapping to zero.
const MaxTimestamp = Timestamp(1<<63 - 1)

// Sentinel errors. Callers test for them with errors.Is.
var (
	ErrNotFound      = errors.New("key not found")
	ErrInvalidKey    = errors.New("invalid key")
	ErrValueTooLarge = errors.New("value too large")
	ErrCorrupt       = errors.New("malformed data")
	ErrClosed        = errors.New("store closed")
	// ErrClockSkew marks entries refused because their version is further
	// ahead of this node's wall clock than Config.MaxClockSkew.
	ErrClockSkew = errors.New("version too far ahead of the wall clock")
	// ErrClockExhausted means the clock cannot issue a valid timestamp.
	ErrClockExhausted = errors.New("clock reached the greatest valid timestamp")
)

// Refused reports whether err means that input from outside (a message
// that does not decode, or entries Merge would not take: invalid key, value
// too large, version too far ahead) was refused, as opposed to this store
// failing. It is the one rule for "the sender's fault": such input is
// counted and answered as a bad request, and changes nothing it was refused
// for. An error from reading the store's own records that wraps ErrCorrupt
// (damaged records) matches too; callers that read their own records check
// that first.
func Refused(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrInvalidKey) ||
		errors.Is(err, ErrValueTooLarge) || errors.Is(err, ErrClockSkew)
}

// Version orders writes to one key: the greater timestamp wins, and the
// writing node's name breaks a tie. Every node compares versions the same
// way, so concurrent writes resolve identically everywhere.
type Version struct {
	TS   Timestamp
	Node string
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	switch {
	case v.TS < w.TS:
		return -1
	case v.TS > w.TS:
		return 1
	case v.Node < w.Node:
		return -1
	case v.Node > w.Node:
		return 1
	}
	return 0
}

// IsZero reports whether v is the zero version, older than every write.
func (v Version) IsZero() bool { return v.TS == 0 && v.Node == "" }

func (v Version) String() string { return fmt.Sprintf("%s@%s", v.TS, v.Node) }

// Entry is one key's state: its value, or a tombstone if Deleted, and the
// version of the write that produced it.
type Entry struct {
	Key     string
	Value   []byte // nil for a tombstone
	Version Version
	Deleted bool
}

// Newer reports whether e should replace cur under last-writer-wins. The
// greater version wins. Two entries with the same version should not exist
// (a node never issues a timestamp twice), but if corrupt input makes them
// differ, a tombstone wins and then the greater value, so the choice is still
// identical on every node.
func (e Entry) Newer(cur Entry) bool {
	if c := e.Version.Compare(cur.Version); c != 0 {
		return c > 0
	}
	if e.Deleted != cur.Deleted {
		return e.Deleted
	}
	return bytes.Compare(e.Value, cur.Value) > 0
}

// Merge returns whichever of a and b wins under last-writer-wins. It is
// commutative, associative and idempotent.
func Merge(a, b Entry) Entry {
	if b.Newer(a) {
		return b
	}
	return a
}

// ValidateKey reports whether k may be used as a key: 1 to MaxKeyLen bytes of
// valid UTF-8 with no control characters.
func ValidateKey(k string) error {
	if len(k) == 0 {
		return fmt.Errorf("%w: key is empty", ErrInvalidKey)
	}
	if len(k) > MaxKeyLen {
		return fmt.Errorf("%w: key is %d bytes, the limit is %d", ErrInvalidKey, len(k), MaxKeyLen)
	}
	if !utf8.ValidString(k) {
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalidKey)
	}
	for i, r := range k {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: key has control character %U at byte %d", ErrInvalidKey, r, i)
		}
	}
	return nil
}

// ValidateValue reports whether v may be stored as a value.
func ValidateValue(v []byte) error {
	if len(v) > MaxValueLen {
		return fmt.Errorf("%w: value is %d bytes, the limit is %d", ErrValueTooLarge, len(v), MaxValueLen)
	}
	return nil
}

// Validate checks an entry received from another node.
func (e Entry) Validate() error {
	if err := ValidateKey(e.Key); err != nil {
		return err
	}
	if err := ValidateValue(e.Value); err != nil {
		return err
	}
	if e.Version.TS == 0 || e.Version.TS > MaxTimestamp || e.Version.Node == "" || len(e.Version.Node) > MaxNodeLen {
		return fmt.Errorf("%w: entry %q has invalid version %v", ErrCorrupt, e.Key, e.Version)
	}
	if e.Deleted && len(e.Value) > 0 {
		return fmt.Errorf("%w: tombstone %q carries a value", ErrCorrupt, e.Key)
	}
	return nil
}
