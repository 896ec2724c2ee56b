package daemon

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

var (
	testKey1 = bytes.Repeat([]byte{1}, 32)
	testKey2 = bytes.Repeat([]byte{2}, 32)
)

func testSealer(tb testing.TB, primary []byte, others ...[]byte) *sealer {
	tb.Helper()
	kr, err := memberlist.NewKeyring(others, primary)
	if err != nil {
		tb.Fatal(err)
	}
	return newSealer(kr)
}

// Every way an envelope can be damaged or misplaced is refused with its
// reason, and a good one opens (envelope.go, "Wire format", "Replay").
func TestEnvelopeOpenRefuses(t *testing.T) {
	s := testSealer(t, testKey1)
	bind := bindCall(kindSync, "n1")
	plain := []byte("the entries")
	env, nonce, err := s.seal(nil, bind, plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != len(plain)+envOverhead {
		t.Fatalf("sealed %d bytes into %d; want %d overhead", len(plain), len(env), envOverhead)
	}
	if got, n2, err := s.open(bind, env); err != nil || !bytes.Equal(got, plain) || !bytes.Equal(n2, nonce) {
		t.Fatalf("open(good) = %q, %v; want %q", got, err, plain)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(env)
		b[i] ^= 0x40
		return b
	}
	other := testSealer(t, testKey2)
	oenv, _, _ := other.seal(nil, bind, plain)
	old := testSealer(t, testKey1)
	old.now = func() time.Time { return time.Now().Add(-replayWindow - time.Second) }
	stale, _, _ := old.seal(nil, bind, plain)
	future := testSealer(t, testKey1)
	future.now = func() time.Time { return time.Now().Add(replayWindow + time.Second) }
	ahead, _, _ := future.seal(nil, bind, plain)
	for _, tc := range []struct {
		name    string
		binding []byte
		env     []byte
		want    error
	}{
		{"empty", bind, nil, errEnvShort},
		{"truncated header", bind, env[:envHeaderLen], errEnvShort},
		{"truncated tag", bind, env[:len(env)-1], errEnvAuth},
		{"version", bind, flip(0), errEnvVersion},
		{"key id", bind, flip(1), errEnvKey},
		{"other key", bind, oenv, errEnvKey},
		{"timestamp bit", bind, flip(1 + envIDLen + 7), errEnvAuth},
		{"nonce bit", bind, flip(1 + envIDLen + 8 + 3), errEnvAuth},
		{"subkey nonce bit", bind, flip(envHeaderLen - 1), errEnvAuth},
		{"ciphertext bit", bind, flip(envHeaderLen + 2), errEnvAuth},
		{"tag bit", bind, flip(len(env) - 1), errEnvAuth},
		{"other kind", bindCall(kindDigest, "n1"), env, errEnvAuth},
		{"other sender", bindCall(kindSync, "n2"), env, errEnvAuth},
		{"moved to a reply", bindReply(kindSync, nonce), env, errEnvAuth},
		{"too old", bind, stale, errEnvStale},
		{"too far ahead", bind, ahead, errEnvStale},
	} {
		got, _, err := s.open(tc.binding, tc.env)
		if !errors.Is(err, tc.want) || got != nil {
			t.Errorf("open(%s) = %q, %v; want nil, %v", tc.name, got, err, tc.want)
		}
	}
	// Every single-bit flip anywhere is refused.
	for i := range env {
		for bit := 0; bit < 8; bit++ {
			b := bytes.Clone(env)
			b[i] ^= 1 << bit
			if got, _, err := s.open(bind, b); err == nil {
				t.Fatalf("open(bit %d of byte %d flipped) = %q, nil; want an error", bit, i, got)
			}
		}
	}
	// A request is accepted once.
	if err := s.fresh(nonce); err != nil {
		t.Fatalf("fresh(first) = %v", err)
	}
	if err := s.fresh(nonce); !errors.Is(err, errEnvReplay) {
		t.Errorf("fresh(replayed) = %v; want %v", err, errEnvReplay)
	}
}

// Frames are bound to their stream and their place in it.
func TestEnvelopeFrameBinding(t *testing.T) {
	s := testSealer(t, testKey1)
	_, streamNonce, _ := s.seal(nil, bindStream("n1"), nil)
	f0, _, _ := s.seal(nil, bindFrame(0, streamNonce, 0), []byte("push 0"))
	if _, _, err := s.open(bindFrame(0, streamNonce, 0), f0); err != nil {
		t.Fatalf("open(frame 0 as 0) = %v", err)
	}
	if _, _, err := s.open(bindFrame(0, streamNonce, 1), f0); !errors.Is(err, errEnvAuth) {
		t.Errorf("open(frame 0 replayed as 1) = %v; want %v", err, errEnvAuth)
	}
	_, other, _ := s.seal(nil, bindStream("n1"), nil)
	if _, _, err := s.open(bindFrame(0, other, 0), f0); !errors.Is(err, errEnvAuth) {
		t.Errorf("open(frame 0 on another stream) = %v; want %v", err, errEnvAuth)
	}
}

// The sealer follows its keyring: a receiver holding both keys opens what
// either primary sealed; once a key is removed its envelopes are refused.
func TestEnvelopeRotation(t *testing.T) {
	kr, _ := memberlist.NewKeyring(nil, testKey1)
	s := newSealer(kr)
	e1, _, _ := s.seal(nil, []byte("b"), []byte("one"))
	if err := kr.AddKey(testKey2); err != nil {
		t.Fatal(err)
	}
	if err := kr.UseKey(testKey2); err != nil {
		t.Fatal(err)
	}
	e2, _, _ := s.seal(nil, []byte("b"), []byte("two"))
	if k2 := deriveEnvKey(testKey2); !bytes.Equal(e2[1:1+envIDLen], k2.id[:]) {
		t.Fatalf("after UseKey, sealed with key id %x; want key 2's", e2[1:1+envIDLen])
	}
	for _, e := range [][]byte{e1, e2} {
		if _, _, err := s.open([]byte("b"), e); err != nil {
			t.Errorf("open during rotation = %v", err)
		}
	}
	if err := kr.RemoveKey(testKey1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.open([]byte("b"), e1); !errors.Is(err, errEnvKey) {
		t.Errorf("open(sealed with a removed key) = %v; want %v", err, errEnvKey)
	}
}

// The replay cache forgets nothing within 2 × replayWindow and stays
// bounded.
func TestReplayCache(t *testing.T) {
	c := newReplayCache()
	t0 := time.Now()
	n := []byte("nonce-nonce-nonce-nonce!")
	if !c.add(n, t0) || c.add(n, t0.Add(2*replayWindow)) {
		t.Fatal("nonce accepted twice within 2 × replayWindow")
	}
	for i := 0; i < 2*replayCacheMax+10; i++ {
		var k [envNonceLen]byte
		k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
		c.add(k[:], t0)
	}
	if len(c.cur) > replayCacheMax || len(c.prev) > replayCacheMax {
		t.Errorf("cache holds %d + %d nonces; want at most %d each", len(c.cur), len(c.prev), replayCacheMax)
	}
}

// Whatever bytes arrive, open never panics, returns a plaintext only with
// no error, and opens nothing that was not sealed with the key.
func FuzzEnvelopeOpen(f *testing.F) {
	s := testSealer(f, testKey1, testKey2)
	good, _, _ := s.seal(nil, []byte("b"), []byte("hello"))
	f.Add(good)
	f.Add(good[:envHeaderLen])
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _, err := s.open([]byte("b"), b)
		if err != nil && p != nil {
			t.Fatalf("open = %q with error %v", p, err)
		}
		// Only "hello" was ever sealed under these keys (the fuzzer's
		// workers each seal their own copy of the seed).
		if err == nil && string(p) != "hello" {
			t.Fatalf("open accepted a forged envelope %x: %q", b, p)
		}
	})
}
