package daemon

// The receiving side's checks of the replication envelope (envelope.go),
// kept beside transport.go, which calls them.

import (
	"encoding/base64"
	"errors"
	"net/http"
)

// errPeerSeals: a peer seals replication and this node has no keyring.
var errPeerSeals = errors.New("the peer seals replication with a cluster key and this node has none: start it with the cluster's --encrypt KEY")

// overhead is what sealing adds to each message (0 without a keyring).
func (t *httpTransport) overhead() int {
	if t.seal == nil {
		return 0
	}
	return envOverhead
}

// checkSealed refuses a call whose sealing does not match this node's:
// unsealed with a keyring, or sealed without one.
func (t *httpTransport) checkSealed(r *http.Request) error {
	sealed := r.Header.Get(headerSealed) == "1"
	switch {
	case t.seal != nil && !sealed:
		return errEnvMissing
	case t.seal == nil && sealed:
		return errPeerSeals
	}
	return nil
}

// openStream checks a stream's opening (headerAuth) and returns its nonce,
// which every frame of the stream is bound to; nil without a keyring.
func (t *httpTransport) openStream(r *http.Request, from string) ([]byte, error) {
	h := r.Header.Get(headerAuth)
	if t.seal == nil {
		if h != "" {
			t.refused(r, "replication stream refused", "stream", from, errPeerSeals)
			return nil, errPeerSeals
		}
		return nil, nil
	}
	err := errEnvMissing
	var nonce []byte
	if h != "" {
		env, derr := base64.StdEncoding.DecodeString(h)
		switch {
		case derr != nil || len(env) > 4*envOverhead:
			err = errEnvShort
		default:
			_, nonce, err = t.seal.open(bindStream(from), env)
			if err == nil {
				err = t.seal.fresh(nonce)
			}
		}
	}
	if err != nil {
		t.refused(r, "replication stream refused", "stream", from, err)
		return nil, err
	}
	return nonce, nil
}

// refused counts (envelope refusals) and logs, rate-limited per remote
// host, a message refused for its sealing.
func (t *httpTransport) refused(r *http.Request, msg, kind, from string, err error) {
	if t.seal != nil && errEnvelope(err) {
		t.seal.count(err)
	}
	t.warns.warn(t.log, r.RemoteAddr, msg, "kind", kind, "from", from, "err", err)
}

// authCode is the status for a refused envelope: 403, or 400 when this
// node has no key and the peer seals.
func authCode(err error) int {
	if errors.Is(err, errPeerSeals) {
		return http.StatusBadRequest
	}
	return http.StatusForbidden
}
