package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// maxReply bounds a reply Client reads: a key list of a million keys.
const maxReply = 512 << 20

// ErrKeyNotFound is returned by Client.Get when the key is missing or deleted.
var ErrKeyNotFound = errors.New("key not found")

// StatusError is an error response from a daemon.
type StatusError struct {
	Code int    // HTTP status
	Kind string // Error.Code, if any
	Msg  string
	raw  []byte // the reply's body
}

func (e *StatusError) Error() string { return e.Msg }

// Client talks to one daemon's HTTP API. Methods that take a node name
// reach that node through the daemon ("" means the daemon itself). It is
// safe for concurrent use.
type Client struct {
	scheme string // http or https
	addr   string // host:port
	token  string // sent as Authorization: Bearer TOKEN, if set
	hc     *http.Client
}

// NewClient returns a client for the daemon whose API listens on addr
// (host:port, http://host:port or https://host:port).
func NewClient(addr string) *Client {
	scheme, hp := splitScheme(addr)
	return &Client{scheme: scheme, addr: hp, hc: &http.Client{Timeout: 30 * time.Second}}
}

// Options configure a client made with NewClientOptions.
type Options struct {
	// Token is the API token, sent with every request.
	Token string
	// CAFile is a PEM file of certificates to trust for an https:// daemon,
	// besides the system's roots.
	CAFile string
	// Timeout bounds each request; 0 means 30 s.
	Timeout time.Duration
}

// NewClientOptions returns a client for the daemon at addr (as NewClient)
// with a token and TLS trust.
func NewClientOptions(addr string, o Options) (*Client, error) {
	c := NewClient(addr)
	c.token = o.Token
	if o.Timeout > 0 {
		c.hc.Timeout = o.Timeout
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", o.CAFile)
		}
		c.hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	return c, nil
}

// splitScheme splits "https://host:port" into its scheme and host:port;
// a bare host:port is http.
func splitScheme(addr string) (scheme, hostport string) {
	if rest, ok := strings.CutPrefix(addr, "https://"); ok {
		return "https", strings.TrimSuffix(rest, "/")
	}
	if rest, ok := strings.CutPrefix(addr, "http://"); ok {
		return "http", strings.TrimSuffix(rest, "/")
	}
	return "http", addr
}

// Addr returns the daemon address the client talks to (host:port).
func (c *Client) Addr() string { return c.addr }

// base returns scheme://host:port.
func (c *Client) base() string { return c.scheme + "://" + c.addr }

func (c *Client) url(path, node string, q url.Values) string {
	if q == nil {
		q = url.Values{}
	}
	if node != "" {
		q.Set("node", node)
	}
	u := c.base() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func kvPath(key string) string { return "/v1/kv/" + url.PathEscape(key) }

// do sends a request and decodes a JSON reply into out (if non-nil). A
// body from jsonBody is sent as application/json, any other as
// application/octet-stream; every request carries X-Peerctl-Client, which
// the API requires of state-changing requests (guard.go).
func (c *Client) do(ctx context.Context, method, u string, body io.Reader, out any) error {
	ct := "application/octet-stream"
	if jr, ok := body.(*jsonReader); ok {
		body, ct = jr.Reader, "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set(HeaderClient, "1")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return fmt.Errorf("cannot reach a peerctl daemon at %s (is `peerctl agent` running? set --addr or PEERCTL_ADDR): %w", c.addr, err)
		}
		return tlsHint(err, c.base())
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return fmt.Errorf("read reply from %s: %w", c.addr, err)
	}
	if len(data) > maxReply {
		return fmt.Errorf("read reply from %s: over %d bytes", c.addr, maxReply)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		msg := "the daemon wants a token: set --token or PEERCTL_TOKEN"
		if c.token != "" {
			msg = "the daemon refused the token: set --token or PEERCTL_TOKEN to the agent's token"
		}
		return &StatusError{Code: resp.StatusCode, Kind: CodeTokenRequired, Msg: msg, raw: data}
	}
	if resp.StatusCode == http.StatusBadRequest && c.scheme == "http" && bytes.Contains(data, []byte("HTTP request to an HTTPS server")) {
		return &StatusError{Code: resp.StatusCode, Msg: fmt.Sprintf("the daemon at %s serves HTTPS: use --addr https://%s", c.addr, c.addr), raw: data}
	}
	if resp.StatusCode >= 300 {
		var ae Error
		if json.Unmarshal(data, &ae) == nil && ae.Error != "" {
			return &StatusError{Code: resp.StatusCode, Kind: ae.Code, Msg: ae.Error, raw: data}
		}
		return &StatusError{Code: resp.StatusCode, Msg: fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(data))), raw: data}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode reply from %s: %w", c.addr, err)
	}
	return nil
}

// Do sends a request for path (with its query, if any) to the daemon and
// decodes a JSON reply into out (if non-nil), as the methods below do. body,
// if not nil, is sent as application/octet-stream. Errors are as the methods'.
// The daemon uses it for its internal endpoints (the fault table, fault
// orders to one node).
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader, out any) error {
	return c.do(ctx, method, c.base()+path, body, out)
}

// Members lists the members as the node sees them.
func (c *Client) Members(ctx context.Context, node string) ([]Member, error) {
	var out []Member
	return out, c.do(ctx, "GET", c.url("/v1/members", node, nil), nil, &out)
}

// Info returns the node's description and statistics.
func (c *Client) Info(ctx context.Context, node string) (*Info, error) {
	var out Info
	return &out, c.do(ctx, "GET", c.url("/v1/info", node, nil), nil, &out)
}

// Get returns the key as the node holds it, or ErrKeyNotFound.
func (c *Client) Get(ctx context.Context, node, key string) (*KV, error) {
	var out KV
	err := c.do(ctx, "GET", c.url(kvPath(key), node, nil), nil, &out)
	var se *StatusError
	if errors.As(err, &se) && se.Kind == CodeKeyNotFound {
		return nil, ErrKeyNotFound
	}
	return &out, err
}

// GetAll returns the key as every alive node holds it.
func (c *Client) GetAll(ctx context.Context, key string) ([]NodeKV, error) {
	var out []NodeKV
	return out, c.do(ctx, "GET", c.url(kvPath(key), "", url.Values{"all": {"1"}}), nil, &out)
}

// Put writes the value at the node.
func (c *Client) Put(ctx context.Context, node, key string, value []byte) (*WriteResult, error) {
	var out WriteResult
	return &out, c.do(ctx, "PUT", c.url(kvPath(key), node, nil), bytes.NewReader(value), &out)
}

// Delete deletes the key at the node.
func (c *Client) Delete(ctx context.Context, node, key string) (*WriteResult, error) {
	var out WriteResult
	return &out, c.do(ctx, "DELETE", c.url(kvPath(key), node, nil), nil, &out)
}

// List returns the live keys with the prefix, sorted.
func (c *Client) List(ctx context.Context, node, prefix string) ([]KeyInfo, error) {
	var out []KeyInfo
	return out, c.do(ctx, "GET", c.url("/v1/kv", node, url.Values{"prefix": {prefix}}), nil, &out)
}

// Kill makes the node's process exit at once, as with kill -9.
func (c *Client) Kill(ctx context.Context, node string) error {
	return c.do(ctx, "POST", c.url("/v1/kill", node, nil), nil, nil)
}

// Leave makes the node leave the cluster gracefully and exit.
func (c *Client) Leave(ctx context.Context, node string) error {
	return c.do(ctx, "POST", c.url("/v1/leave", node, nil), nil, nil)
}

// NewClientWith returns a client that uses hc, for the daemon at addr (as
// NewClient).
func NewClientWith(addr string, hc *http.Client) *Client {
	scheme, hp := splitScheme(addr)
	return &Client{scheme: scheme, addr: hp, hc: hc}
}

// tlsHint adds what to do to a TLS failure of a request to base.
func tlsHint(err error, base string) error {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &ua):
		return fmt.Errorf("%w (the daemon's certificate is not signed by a CA this client trusts: pass --ca FILE)", err)
	case errors.As(err, &he):
		return fmt.Errorf("%w (the certificate does not name this address: use an --addr it names)", err)
	case errors.As(err, &rh), strings.Contains(err.Error(), "malformed HTTP response"), strings.Contains(err.Error(), "HTTP response to HTTPS client"):
		if strings.HasPrefix(base, "https://") {
			return fmt.Errorf("%w (the daemon serves plain HTTP: use --addr http://%s)", err, strings.TrimPrefix(base, "https://"))
		}
		return fmt.Errorf("%w (the daemon may serve HTTPS: use --addr https://%s)", err, strings.TrimPrefix(base, "http://"))
	}
	return err
}

// jsonReader is a JSON request body.
type jsonReader struct{ *bytes.Reader }

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return &jsonReader{bytes.NewReader(b)}
}

// Check compares the data of every alive node.
func (c *Client) Check(ctx context.Context) (*CheckResult, error) {
	return c.CheckWithin(ctx, 0)
}

// CheckWithin is Check with the daemon's fan-out bounded by budget (0: the
// daemon's default): members that have not answered by then count as not
// compared.
func (c *Client) CheckWithin(ctx context.Context, budget time.Duration) (*CheckResult, error) {
	var q url.Values
	if budget > 0 {
		q = url.Values{"timeout": {budget.String()}}
	}
	var out CheckResult
	return &out, c.do(ctx, "GET", c.url("/v1/check", "", q), nil, &out)
}

// InjectFault orders a fault on the cluster through the daemon.
func (c *Client) InjectFault(ctx context.Context, req FaultRequest) (*FaultResult, error) {
	var out FaultResult
	return &out, c.do(ctx, "POST", c.url("/v1/faults", "", nil), jsonBody(req), &out)
}

// Faults returns the cluster's faults in force and every member's rules.
func (c *Client) Faults(ctx context.Context) (*FaultsView, error) {
	var out FaultsView
	return &out, c.do(ctx, "GET", c.url("/v1/faults", "", url.Values{"all": {"1"}}), nil, &out)
}

// Heal removes faults from the cluster: every fault if target is "", else
// the fault with ID target or the faults that named the node target.
func (c *Client) Heal(ctx context.Context, target string) (*HealResult, error) {
	q := url.Values{}
	if target != "" {
		q.Set("target", target)
	}
	var out HealResult
	return &out, c.do(ctx, "DELETE", c.url("/v1/faults", "", q), nil, &out)
}

// LocalFaults returns the rules the node applies.
func (c *Client) LocalFaults(ctx context.Context, node string) ([]Rule, error) {
	var out []Rule
	return out, c.do(ctx, "GET", c.url("/v1/faults", node, nil), nil, &out)
}
