package badger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/peerctl/peerctl/store"
)

// prefixQuarantine holds records set aside as damaged: the Badger key is
// prefixQuarantine followed by the user key; the value is formatV1, the
// reason as a uvarint-length-prefixed string, then the raw stored bytes
// (empty if they could not be read). Nothing reads them back into the
// store: they are kept for an operator, never deleted by peerctl.
const prefixQuarantine = 0x02

// maxReasonLen bounds the reason kept with a quarantined record.
const maxReasonLen = 1024

func quarantineKey(key string) []byte {
	k := make([]byte, 0, 1+len(key))
	k = append(k, prefixQuarantine)
	return append(k, key...)
}

// Quarantine moves the record stored under key out of the live keyspace:
// its raw bytes (if readable) and reason go under prefixQuarantine, and
// the live key is deleted, in one transaction. The store then no longer
// holds key, so anti-entropy fetches it from a peer. A missing key is not
// an error. It implements store.Quarantiner; store.Open and Load call it
// before any write, and it is not meant to race with Put on the same key.
func (b *Backend) Quarantine(key string, reason error) error {
	if err := b.canWrite(store.MaxValueLen); err != nil {
		return fmt.Errorf("badger: quarantine %q: %w", key, err)
	}
	why := "unknown"
	if reason != nil {
		why = reason.Error()
	}
	var added bool
	err := b.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(entryKey(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		raw, verr := item.ValueCopy(nil)
		if verr != nil {
			raw = nil
			why += "; raw bytes unreadable: " + badgerMsg(verr)
		}
		if _, err := txn.Get(quarantineKey(key)); errors.Is(err, badger.ErrKeyNotFound) {
			added = true
		}
		if err := txn.Set(quarantineKey(key), encodeQuarantine(why, raw)); err != nil {
			return err
		}
		return txn.Delete(entryKey(key))
	})
	if err != nil {
		return fmt.Errorf("badger: quarantine %q: %w", key, b.mapErr(err))
	}
	if added {
		b.quarantined.Add(1)
	}
	return nil
}

// QuarantinedCount returns how many records are in quarantine (kept
// across restarts). It is safe for concurrent use.
func (b *Backend) QuarantinedCount() int { return int(b.quarantined.Load()) }

// IsQuarantined reports whether a damaged record of key was set aside
// (at any time: quarantined records are kept after the key is restored).
func (b *Backend) IsQuarantined(key string) (bool, error) {
	err := b.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(quarantineKey(key))
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("badger: quarantine of %q: %w", key, b.mapErr(err))
	}
	return true, nil
}

// Quarantined calls fn for every quarantined record, in key order, with
// the reason and the raw bytes (valid only during the call).
func (b *Backend) Quarantined(fn func(key, reason string, raw []byte) error) error {
	return b.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixQuarantine}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := string(it.Item().Key()[1:])
			err := it.Item().Value(func(v []byte) error {
				reason, raw, err := decodeQuarantine(v)
				if err != nil {
					return fmt.Errorf("quarantined %q: %w", key, err)
				}
				return fn(key, reason, raw)
			})
			if err != nil {
				return b.mapErr(err)
			}
		}
		return nil
	})
}

func encodeQuarantine(reason string, raw []byte) []byte {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	v := make([]byte, 0, 1+binary.MaxVarintLen64+len(reason)+len(raw))
	v = append(v, formatV1)
	v = binary.AppendUvarint(v, uint64(len(reason)))
	v = append(v, reason...)
	return append(v, raw...)
}

func decodeQuarantine(v []byte) (reason string, raw []byte, err error) {
	if len(v) == 0 || v[0] != formatV1 {
		return "", nil, fmt.Errorf("%w: unknown quarantine format", store.ErrCorrupt)
	}
	n, k := binary.Uvarint(v[1:])
	if k <= 0 || n > uint64(len(v)-1-k) {
		return "", nil, fmt.Errorf("%w: bad quarantine reason length", store.ErrCorrupt)
	}
	v = v[1+k:]
	return string(v[:n]), v[n:], nil
}

// isDamage reports whether a Badger error means the bytes on disk are
// damaged. Badger flattens its errors into strings (y.Wrap uses %+v), so
// errors.Is(err, y.ErrChecksumMismatch) does not work; these are the
// messages of badger v4.9.6 for checksum failures and undecodable data.
func isDamage(err error) bool {
	msg := err.Error()
	for _, s := range []string{
		"checksum mismatch",                // y.ErrChecksumMismatch: values and blocks
		"CHECKSUM_MISMATCH",                // older spelling
		"failed to decode compressed data", // table.go block
		"invalid checksum length",          // table.go block
		"Invalid read:",                    // value.go Read: entry shorter than its header says
		"Invalid value pointer offset",     // value.go: pointer past the log's end
		"failed to read from file",         // table.go block: offset outside the table
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
