package api

import (
	"context"
	"encoding/json"
	"errors"
)

// CodeTokenRequired marks a 401: the daemon wants an API token
// (Authorization: Bearer TOKEN) and the request had none or another.
const CodeTokenRequired = "token_required"

// KeyringRequest is the body of POST /v1/keyring/{install,use,remove}.
type KeyringRequest struct {
	Key string `json:"key"` // base64, 16, 24 or 32 bytes
}

// KeyringResult is the reply to a keyring request: serf's key manager's
// answer, gathered from every member. A request some members did not
// apply comes back with status 502 and Error set.
type KeyringResult struct {
	Op          string         `json:"op"`                     // list, install, use or remove
	Keys        map[string]int `json:"keys,omitempty"`         // key -> members holding it
	PrimaryKeys map[string]int `json:"primary_keys,omitempty"` // key -> members sealing with it
	Nodes       int            `json:"nodes"`                  // members asked
	Responses   int            `json:"responses"`              // members that answered
	Errors      int            `json:"errors"`                 // members that failed
	Messages    []NodeMessage  `json:"messages,omitempty"`     // what failed members said
	Error       string         `json:"error,omitempty"`
}

// NodeMessage is one member's message.
type NodeMessage struct {
	Node    string `json:"node"`
	Message string `json:"message"`
}

// Keyring lists the cluster's gossip keys (GET /v1/keyring).
func (c *Client) Keyring(ctx context.Context) (*KeyringResult, error) {
	return c.keyring(ctx, "GET", "/v1/keyring", nil)
}

// KeyringOp installs, uses or removes a key on every member (op is
// "install", "use" or "remove"). When some members failed, it returns the
// result and an error.
func (c *Client) KeyringOp(ctx context.Context, op, key string) (*KeyringResult, error) {
	return c.keyring(ctx, "POST", "/v1/keyring/"+op, jsonBody(KeyringRequest{Key: key}))
}

func (c *Client) keyring(ctx context.Context, method, path string, body any) (*KeyringResult, error) {
	var out KeyringResult
	var err error
	if body == nil {
		err = c.do(ctx, method, c.url(path, "", nil), nil, &out)
	} else {
		err = c.do(ctx, method, c.url(path, "", nil), body.(*jsonReader), &out)
	}
	var se *StatusError
	if errors.As(err, &se) && se.Code == 502 && se.raw != nil {
		json.Unmarshal(se.raw, &out)
		return &out, err
	}
	return &out, err
}
