package daemon

// API access: the token, TLS, and the start-up rules for an API reachable
// off loopback.
//
//   - With Config.Token set, every request (client commands, ?node=
//     forwarding, a peer's replication and fault-table calls) must carry
//     "Authorization: Bearer TOKEN"; the comparison is constant-time. A
//     request without it, or with another token, gets 401 and
//     {"error": ..., "code": "token_required"} (api.CodeTokenRequired),
//     is counted (Info.Auth.TokenRefused) and logged, rate-limited per
//     remote host. The guard (guard.go) runs first, so a cross-site page
//     is refused before its token is even looked at.
//   - The agent refuses to start with --api off loopback and no token,
//     unless --insecure-api says so; it warns when gossip or the API is
//     off loopback without --encrypt (replication then travels in clear
//     and unauthenticated between nodes).
//   - With --api-tls-cert and --api-tls-key the API serves HTTPS
//     (HTTP/1.1 only), the daemon advertises the tag tls=1, and its own
//     calls to peers (peerClient) use HTTPS and carry the token.

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

// tagTLS is set to "1" by an agent whose API serves HTTPS.
const tagTLS = "tls"

// maxTokenLen bounds --token: it travels in every request's header.
const maxTokenLen = 4096

// validateAuth checks the token and TLS flags, and refuses an API off
// loopback with no token unless InsecureAPI.
func (c *Config) validateAuth() error {
	if len(c.Token) > maxTokenLen {
		return fmt.Errorf("--token is %d bytes, the limit is %d", len(c.Token), maxTokenLen)
	}
	if strings.ContainsAny(c.Token, " \t\r\n") {
		return fmt.Errorf("--token contains white space: use a token without spaces or newlines (e.g. `peerctl keygen`)")
	}
	if (c.APITLSCert == "") != (c.APITLSKey == "") {
		return fmt.Errorf("--api-tls-cert and --api-tls-key go together: give both PEM files, or neither")
	}
	if c.APITLSCert != "" {
		if _, err := tls.LoadX509KeyPair(c.APITLSCert, c.APITLSKey); err != nil {
			return fmt.Errorf("--api-tls-cert %s / --api-tls-key %s: %w", c.APITLSCert, c.APITLSKey, err)
		}
	}
	if c.APITLSCA != "" {
		if _, err := loadCertPool(c.APITLSCA); err != nil {
			return fmt.Errorf("--api-tls-ca: %w", err)
		}
	}
	if c.Token == "" && !c.InsecureAPI && !isLoopbackAddr(c.API) {
		return fmt.Errorf("--api %s is reachable off this machine and no --token is set: anyone who reaches it could read, write, kill nodes and inject faults. Set --token (or PEERCTL_TOKEN; `peerctl keygen` makes one) on every member and client, bind --api to 127.0.0.1, or pass --insecure-api to serve it open anyway", c.API)
	}
	return nil
}

// isLoopbackAddr reports whether host:port listens on loopback only:
// a loopback IP literal or "localhost". An empty host, 0.0.0.0, [::] and
// any other name are not.
func isLoopbackAddr(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(h, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// warnExposure logs, once at start, what an address off loopback exposes.
func (a *Agent) warnExposure() {
	off := []string{}
	if !isLoopbackAddr(a.cfg.Bind) {
		off = append(off, "--bind "+a.cfg.Bind)
	}
	if !isLoopbackAddr(a.cfg.API) {
		off = append(off, "--api "+a.cfg.API)
	}
	if len(off) > 0 && a.keyring == nil {
		a.log.Warn("SECURITY: listening off loopback without --encrypt: gossip and replication between nodes travel in clear and unauthenticated; anyone who reaches these ports can join the cluster and inject entries. Give every member the same --encrypt KEY (`peerctl keygen`)", "exposed", strings.Join(off, ", "))
	}
	if !isLoopbackAddr(a.cfg.API) && a.cfg.Token == "" {
		a.log.Warn("SECURITY: --insecure-api: the API is off loopback and asks for no token: anyone who reaches it can read, write and kill nodes", "api", a.cfg.API)
	}
	if !isLoopbackAddr(a.cfg.API) && a.cfg.Token != "" && a.cfg.APITLSCert == "" {
		a.log.Info("the API token travels in clear over HTTP: use --api-tls-cert/--api-tls-key where the network is not trusted", "api", a.cfg.API)
	}
}

// tokenAuth checks API tokens. It is safe for concurrent use.
type tokenAuth struct {
	want    []byte // "Bearer TOKEN"; nil: no token required
	refused atomic.Uint64
}

func newTokenAuth(token string) *tokenAuth {
	t := &tokenAuth{}
	if token != "" {
		t.want = []byte("Bearer " + token)
	}
	return t
}

// ok reports whether r carries the token (always, if none is required).
// The comparison takes the same time whatever the header holds, for
// headers of the right length.
func (t *tokenAuth) ok(r *http.Request) bool {
	if t.want == nil {
		return true
	}
	got := r.Header.Get("Authorization")
	return subtle.ConstantTimeCompare([]byte(got), t.want) == 1
}

// checkToken answers 401 and returns false if r lacks the API token.
func (s *httpServer) checkToken(w http.ResponseWriter, r *http.Request) bool {
	if s.token.ok(r) {
		return true
	}
	s.token.refused.Add(1)
	why := "no token"
	if r.Header.Get("Authorization") != "" {
		why = "wrong token"
	}
	s.a.repl.warns.warn(s.a.log, r.RemoteAddr, "api request refused: "+why, "method", r.Method, "path", r.URL.Path)
	w.Header().Set("WWW-Authenticate", `Bearer realm="peerctl"`)
	writeJSON(w, http.StatusUnauthorized, apiError{Code: api.CodeTokenRequired,
		Error: "this API wants a token (" + why + "): send Authorization: Bearer TOKEN (peerctl: --token or PEERCTL_TOKEN)"})
	return false
}

// loadCertPool reads PEM certificates from file into a new pool.
func loadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return p, nil
}

// serverTLS returns the API server's TLS configuration, or nil without
// --api-tls-cert. HTTP/1.1 only: replication streams rely on its
// connection-level deadlines.
func (c *Config) serverTLS() (*tls.Config, error) {
	if c.APITLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.APITLSCert, c.APITLSKey)
	if err != nil {
		return nil, fmt.Errorf("--api-tls-cert: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}, nil
}

// clientTLS returns the TLS configuration this daemon calls peers with:
// APITLSCA if given, else the system's roots plus the certificates of
// APITLSCert. nil without TLS.
func (c *Config) clientTLS() (*tls.Config, error) {
	if c.APITLSCert == "" {
		return nil, nil
	}
	var pool *x509.CertPool
	if c.APITLSCA != "" {
		p, err := loadCertPool(c.APITLSCA)
		if err != nil {
			return nil, fmt.Errorf("--api-tls-ca: %w", err)
		}
		pool = p
	} else {
		p, err := x509.SystemCertPool()
		if err != nil || p == nil {
			p = x509.NewCertPool()
		}
		b, err := os.ReadFile(c.APITLSCert)
		if err != nil {
			return nil, fmt.Errorf("--api-tls-cert: %w", err)
		}
		p.AppendCertsFromPEM(b)
		pool = p
	}
	return &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}, nil
}

// peerRoundTripper is how this daemon calls other daemons' APIs: it adds
// the API token to every request, and turns http:// into https:// for a
// peer that advertises tls=1 (or, for an address no member advertises,
// when this daemon serves HTTPS itself: a cluster is all HTTPS or all
// HTTP). Every daemon-to-daemon HTTP client goes through one.
type peerRoundTripper struct {
	next  http.RoundTripper
	token string
	tls   bool      // this daemon serves HTTPS
	peers *sync.Map // API host:port -> bool (advertises tls=1), from serf tags
}

func (p *peerRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if p.token == "" && !p.tls && req.URL.Scheme == "http" {
		if v, ok := p.peers.Load(req.URL.Host); !ok || !v.(bool) {
			return p.next.RoundTrip(req)
		}
	}
	// RoundTrip must not modify the request: clone it.
	r := req.Clone(req.Context())
	if p.token != "" && r.Header.Get("Authorization") == "" {
		r.Header.Set("Authorization", "Bearer "+p.token)
	}
	if r.URL.Scheme == "http" {
		useTLS := p.tls
		if v, ok := p.peers.Load(r.URL.Host); ok {
			useTLS = v.(bool)
		}
		if useTLS {
			r.URL.Scheme = "https"
		}
	}
	return p.next.RoundTrip(r)
}

// newPeerTransport returns the round tripper for calls to peers' APIs,
// over base (whose TLS settings it fills in).
func (a *Agent) newPeerTransport(base *http.Transport) (http.RoundTripper, error) {
	tc, err := a.cfg.clientTLS()
	if err != nil {
		return nil, err
	}
	base.TLSClientConfig = tc
	base.ForceAttemptHTTP2 = false
	return &peerRoundTripper{next: base, token: a.cfg.Token, tls: tc != nil, peers: &a.apiTLS}, nil
}

// peerClient returns an HTTP client for calls to peers' APIs with the
// given overall timeout.
func (a *Agent) peerClient(timeout time.Duration) *http.Client {
	return &http.Client{Transport: a.peerRT, Timeout: timeout}
}

// errNoKeyring is returned by keyring operations on a cluster without
// --encrypt.
var errNoKeyring = errors.New("this cluster has no keyring: start every agent with --encrypt KEY (`peerctl keygen`) to use one")

// authStats reads the security settings and refusal counters.
func (a *Agent) authStats() api.AuthStats {
	st := api.AuthStats{Token: a.cfg.Token != "", TLS: a.cfg.APITLSCert != ""}
	if a.http != nil {
		st.TokenRefused = a.http.token.refused.Load()
	}
	if a.keyring != nil {
		st.Keys = len(a.keyring.GetKeys())
	}
	if a.seal != nil {
		st.RefusedBy = a.seal.refusals()
		for _, n := range st.RefusedBy {
			st.ReplicationRefused += n
		}
	}
	return st
}
