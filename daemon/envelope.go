package daemon

// The replication envelope: with a gossip keyring (--encrypt), every
// message the replication transport carries (transport.go: call bodies,
// their replies, each stream frame, and the stream's opening) is sealed
// with AES-256-GCM under a key derived from the keyring, so a process
// without the key can neither read nor forge nor replay one.
//
// Keys. For each gossip key G in the keyring:
//
//	K  = HKDF-SHA256(secret G, no salt, info "peerctl replication v1"), 32 bytes
//	id = HKDF-SHA256(secret G, no salt, info "peerctl replication v1 key id"), first 4 bytes
//
// The sender seals with the keyring's primary key; the receiver picks the
// key by id among all keyring keys, so a rotation (install, use, remove:
// keyring.go) never interrupts replication.
//
// Wire format (all integers big-endian):
//
//	envelope = ver:u8(=1) | id:[4] | ts:u64 (unix ns) | nonce:[24] | ciphertext | tag:[16]
//	subkey   = HMAC-SHA256(K, "peerctl subkey" | nonce[0:12])
//	ct, tag  = AES-256-GCM(subkey).Seal(nonce[12:24], plaintext, aad)
//	aad      = "peerctl replication v1\x00" | ver | id | ts | nonce | binding
//
// The nonce is random; deriving a subkey from its first half lets the
// key be used for any number of messages (random 96-bit GCM nonces alone
// are safe for 2^32 messages per key). The binding ties the message to
// its place, so it cannot be moved to another:
//
//	call request   "call\x00" KIND "\x00" FROM
//	call reply     "reply\x00" KIND "\x00" request-nonce
//	stream opening "stream\x00" FROM                (empty plaintext, in the header X-Peerctl-Auth, base64)
//	stream frame   "frame\x00" KIND-BYTE opening-nonce SEQ:u64   (SEQ counts frames from 0)
//
// Replay: a timestamp more than replayWindow away from the receiver's
// clock is refused; call requests and stream openings are refused when
// their nonce was seen within the window (replayCache); a frame is
// refused unless its SEQ is the next one on its stream. Failures are one
// error (the AEAD's tag check is constant-time), counted by reason in
// Info.Auth and /metrics.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

const (
	envVersion   = 1
	envIDLen     = 4
	envNonceLen  = 24
	envHeaderLen = 1 + envIDLen + 8 + envNonceLen
	envTagLen    = 16
	// envOverhead is what sealing adds to a message.
	envOverhead = envHeaderLen + envTagLen

	envInfo   = "peerctl replication v1"
	envIDInfo = "peerctl replication v1 key id"
	envAAD    = "peerctl replication v1\x00"
	envSubkey = "peerctl subkey"

	// replayWindow bounds how far a message's timestamp may be from the
	// receiver's clock; members' clocks must agree within it.
	replayWindow = 2 * time.Minute
	// replayCacheMax bounds the nonces remembered per generation.
	replayCacheMax = 1 << 17
)

// Reasons a sealed message is refused (Info.Auth.Refused counts them).
var (
	errEnvShort   = errors.New("envelope truncated")
	errEnvVersion = errors.New("envelope version unknown")
	errEnvKey     = errors.New("envelope sealed with a key not in this node's keyring")
	errEnvStale   = errors.New("envelope timestamp outside the replay window")
	errEnvAuth    = errors.New("envelope failed authentication")
	errEnvReplay  = errors.New("envelope replayed")
	errEnvMissing = errors.New("message not sealed: this node needs the cluster key (--encrypt)")
)

// envReasons names each refusal for counting.
var envReasons = map[error]string{
	errEnvShort: "truncated", errEnvVersion: "version", errEnvKey: "unknown_key",
	errEnvStale: "stale", errEnvAuth: "bad_mac", errEnvReplay: "replay", errEnvMissing: "unsealed",
}

// envKey is one derived replication key.
type envKey struct {
	id [envIDLen]byte
	k  []byte // 32 bytes
}

func deriveEnvKey(gossip []byte) envKey {
	k, err := hkdf.Key(sha256.New, gossip, nil, envInfo, 32)
	if err != nil {
		panic(err) // only for lengths HKDF cannot produce
	}
	id, err := hkdf.Key(sha256.New, gossip, nil, envIDInfo, envIDLen)
	if err != nil {
		panic(err)
	}
	var ek envKey
	copy(ek.id[:], id)
	ek.k = k
	return ek
}

// sealer seals and opens envelopes with the keys of a memberlist keyring,
// following it as keys are installed, made primary and removed. It is
// safe for concurrent use.
type sealer struct {
	kr  *memberlist.Keyring
	now func() time.Time

	mu   sync.Mutex // guards raw, keys
	raw  [][]byte   // the keyring's keys when keys was derived
	keys []envKey   // derived from raw, primary first

	seen *replayCache

	refused map[string]*atomic.Uint64 // by reason; fixed at creation
}

func newSealer(kr *memberlist.Keyring) *sealer {
	s := &sealer{kr: kr, now: time.Now, seen: newReplayCache(), refused: map[string]*atomic.Uint64{}}
	for _, r := range envReasons {
		s.refused[r] = &atomic.Uint64{}
	}
	return s
}

// current returns the derived keys, primary first, re-deriving them when
// the keyring changed.
func (s *sealer) current() []envKey {
	raw := s.kr.GetKeys()
	s.mu.Lock()
	defer s.mu.Unlock()
	same := len(raw) == len(s.raw)
	for i := 0; same && i < len(raw); i++ {
		same = string(raw[i]) == string(s.raw[i])
	}
	if !same {
		keys := make([]envKey, len(raw))
		for i, g := range raw {
			keys[i] = deriveEnvKey(g)
		}
		s.raw, s.keys = raw, keys
	}
	return s.keys
}

// aead returns the GCM of the subkey for nonce under k.
func (k *envKey) aead(nonce []byte) (cipher.AEAD, error) {
	m := hmac.New(sha256.New, k.k)
	m.Write([]byte(envSubkey))
	m.Write(nonce[:12])
	b, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal returns plaintext sealed under the primary key, bound to binding,
// appended to dst; and the envelope's nonce.
func (s *sealer) seal(dst, binding, plaintext []byte) ([]byte, []byte, error) {
	keys := s.current()
	if len(keys) == 0 {
		return nil, nil, errEnvKey
	}
	k := &keys[0]
	start := len(dst)
	dst = append(dst, envVersion)
	dst = append(dst, k.id[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.now().UnixNano()))
	var nonce [envNonceLen]byte
	rand.Read(nonce[:])
	dst = append(dst, nonce[:]...)
	g, err := k.aead(nonce[:])
	if err != nil {
		return nil, nil, err
	}
	aad := make([]byte, 0, len(envAAD)+envHeaderLen+len(binding))
	aad = append(append(append(aad, envAAD...), dst[start:]...), binding...)
	dst = g.Seal(dst, nonce[12:], plaintext, aad)
	return dst, nonce[:], nil
}

// open checks and decrypts an envelope bound to binding. It returns the
// plaintext (in a new slice) and the envelope's nonce, or one of the
// errEnv errors. It does not check for replay: callers that must
// (requests, stream openings) call fresh.
func (s *sealer) open(binding, env []byte) (plain, nonce []byte, err error) {
	if len(env) < envOverhead {
		return nil, nil, errEnvShort
	}
	if env[0] != envVersion {
		return nil, nil, errEnvVersion
	}
	ts := int64(binary.BigEndian.Uint64(env[1+envIDLen:]))
	if d := s.now().Sub(time.Unix(0, ts)); d > replayWindow || d < -replayWindow {
		return nil, nil, errEnvStale
	}
	hdr := env[:envHeaderLen]
	nonce = env[1+envIDLen+8 : envHeaderLen]
	aad := make([]byte, 0, len(envAAD)+envHeaderLen+len(binding))
	aad = append(append(append(aad, envAAD...), hdr...), binding...)
	found := false
	for _, k := range s.current() {
		if string(k.id[:]) != string(env[1:1+envIDLen]) {
			continue
		}
		found = true
		g, err := k.aead(nonce)
		if err != nil {
			return nil, nil, err
		}
		if p, err := g.Open(nil, nonce[12:], env[envHeaderLen:], aad); err == nil {
			return p, nonce, nil
		}
	}
	if !found {
		return nil, nil, errEnvKey
	}
	return nil, nil, errEnvAuth
}

// fresh records nonce as seen and reports whether it was new.
func (s *sealer) fresh(nonce []byte) error {
	if !s.seen.add(nonce, s.now()) {
		return errEnvReplay
	}
	return nil
}

// count counts a refusal by reason and returns err.
func (s *sealer) count(err error) error {
	reason, ok := envReasons[err]
	if !ok {
		reason = "bad_mac"
	}
	s.refused[reason].Add(1)
	return err
}

// refusals returns the refusals so far by reason.
func (s *sealer) refusals() map[string]uint64 {
	out := make(map[string]uint64, len(s.refused))
	for r, c := range s.refused {
		out[r] = c.Load()
	}
	return out
}

// replayCache remembers the nonces of accepted requests for at least
// 2 × replayWindow: two generations, the older dropped when the newer is
// that old. A generation that reaches replayCacheMax is retired early,
// which shortens how long nonces are remembered under a flood of valid
// messages (only holders of the key can add one). Safe for concurrent use.
type replayCache struct {
	mu        sync.Mutex
	cur, prev map[[envNonceLen]byte]struct{}
	since     time.Time // when cur was started
}

func newReplayCache() *replayCache {
	return &replayCache{cur: map[[envNonceLen]byte]struct{}{}, prev: map[[envNonceLen]byte]struct{}{}}
}

// add records nonce at now and reports whether it was not there yet.
func (c *replayCache) add(nonce []byte, now time.Time) bool {
	var k [envNonceLen]byte
	copy(k[:], nonce)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.since.IsZero() {
		c.since = now
	}
	if now.Sub(c.since) > 2*replayWindow || len(c.cur) >= replayCacheMax {
		c.prev, c.cur, c.since = c.cur, make(map[[envNonceLen]byte]struct{}), now
	}
	if _, ok := c.cur[k]; ok {
		return false
	}
	if _, ok := c.prev[k]; ok {
		return false
	}
	c.cur[k] = struct{}{}
	return true
}

// Bindings (see the top of the file).
func bindCall(kind, from string) []byte { return []byte("call\x00" + kind + "\x00" + from) }
func bindReply(kind string, reqNonce []byte) []byte {
	return append([]byte("reply\x00"+kind+"\x00"), reqNonce...)
}
func bindStream(from string) []byte { return []byte("stream\x00" + from) }
func bindFrame(kind byte, streamNonce []byte, seq uint64) []byte {
	b := append([]byte("frame\x00"), kind)
	b = append(b, streamNonce...)
	return binary.BigEndian.AppendUint64(b, seq)
}

// errEnvelope reports whether err is a refusal of the envelope.
func errEnvelope(err error) bool {
	_, ok := envReasons[err]
	return ok
}
