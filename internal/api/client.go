package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
}

func (e *StatusError) Error() string { return e.Msg }

// Client talks to one daemon's HTTP API. Methods that take a node name
// reach that node through the daemon ("" means the daemon itself). It is
// safe for concurrent use.
type Client struct {
	addr string
	hc   *http.Client
}

// NewClient returns a client for the daemon whose API listens on addr
// (host:port).
func NewClient(addr string) *Client {
	return &Client{addr: addr, hc: &http.Client{Timeout: 30 * time.Second}}
}

// Addr returns the daemon address the client talks to.
func (c *Client) Addr() string { return c.addr }

func (c *Client) url(path, node string, q url.Values) string {
	if q == nil {
		q = url.Values{}
	}
	if node != "" {
		q.Set("node", node)
	}
	u := "http://" + c.addr + path
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
	if body != nil {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return fmt.Errorf("cannot reach a peerctl daemon at %s (is `peerctl agent` running? set --addr or PEERCTL_ADDR): %w", c.addr, err)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return fmt.Errorf("read reply from %s: %w", c.addr, err)
	}
	if len(data) > maxReply {
		return fmt.Errorf("read reply from %s: over %d bytes", c.addr, maxReply)
	}
	if resp.StatusCode >= 300 {
		var ae Error
		if json.Unmarshal(data, &ae) == nil && ae.Error != "" {
			return &StatusError{Code: resp.StatusCode, Kind: ae.Code, Msg: ae.Error}
		}
		return &StatusError{Code: resp.StatusCode, Msg: fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(data)))}
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
	return c.do(ctx, method, "http://"+c.addr+path, body, out)
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

// NewClientWith returns a client that uses hc.
func NewClientWith(addr string, hc *http.Client) *Client {
	return &Client{addr: addr, hc: hc}
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
