package api

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"strconv"
	"time"
)

// Unwrap maps the error codes of the consistent namespace and locks to
// their sentinels (ErrNoQuorum, ErrVersionMismatch, ErrLockHeld,
// ErrLockLost), so errors.Is works on a *StatusError.
func (e *StatusError) Unwrap() error {
	switch e.Kind {
	case CodeNoQuorum:
		return ErrNoQuorum
	case CodeVersionMismatch:
		return ErrVersionMismatch
	case CodeLockHeld:
		return ErrLockHeld
	case CodeLockLost:
		return ErrLockLost
	}
	return nil
}

// Leader returns the Raft group as the node sees it.
func (c *Client) Leader(ctx context.Context, node string) (*Leader, error) {
	var out Leader
	return &out, c.do(ctx, "GET", c.url("/v1/leader", node, nil), nil, &out)
}

func consistentQuery() url.Values { return url.Values{"consistent": {"1"}} }

// ConsistentGet reads the key from the consistent namespace, linearizably,
// through the node. It returns ErrKeyNotFound if the key is absent, and an
// error wrapping ErrNoQuorum without a quorum.
func (c *Client) ConsistentGet(ctx context.Context, node, key string) (*KV, error) {
	var out KV
	err := c.do(ctx, "GET", c.url(kvPath(key), node, consistentQuery()), nil, &out)
	var se *StatusError
	if errors.As(err, &se) && se.Kind == CodeKeyNotFound {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// PutOptions make a consistent put conditional.
type PutOptions struct {
	// IfVersion, if set, is the version the key must have (0: absent).
	IfVersion *uint64
	// IfAbsent is IfVersion 0.
	IfAbsent bool
}

// ConsistentPut writes the value in the consistent namespace through the
// node and returns once a quorum has it. With opts, a version that does
// not match fails with an error wrapping ErrVersionMismatch.
func (c *Client) ConsistentPut(ctx context.Context, node, key string, value []byte, opts PutOptions) (*WriteResult, error) {
	q := consistentQuery()
	if opts.IfVersion != nil {
		q.Set("if_version", strconv.FormatUint(*opts.IfVersion, 10))
	}
	if opts.IfAbsent {
		q.Set("if_absent", "1")
	}
	var out WriteResult
	if err := c.do(ctx, "PUT", c.url(kvPath(key), node, q), bytes.NewReader(value), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ConsistentDelete deletes the key from the consistent namespace through
// the node; ifVersion, if not nil, makes it conditional as for a put.
func (c *Client) ConsistentDelete(ctx context.Context, node, key string, ifVersion *uint64) (*WriteResult, error) {
	q := consistentQuery()
	if ifVersion != nil {
		q.Set("if_version", strconv.FormatUint(*ifVersion, 10))
	}
	var out WriteResult
	if err := c.do(ctx, "DELETE", c.url(kvPath(key), node, q), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ConsistentList lists the consistent namespace's keys with the prefix,
// sorted, linearizably.
func (c *Client) ConsistentList(ctx context.Context, node, prefix string) ([]KeyInfo, error) {
	q := consistentQuery()
	q.Set("prefix", prefix)
	var out []KeyInfo
	return out, c.do(ctx, "GET", c.url("/v1/kv", node, q), nil, &out)
}

func lockPath(name string) string { return "/v1/locks/" + url.PathEscape(name) }

// Lock acquires the lock through the node, waiting up to wait while another
// session holds it (then an error wrapping ErrLockHeld). The lock expires
// ttl after the last renew. The HTTP request lasts up to wait: the client's
// own timeout (30 s for NewClient) must exceed it.
func (c *Client) Lock(ctx context.Context, node, name string, ttl, wait time.Duration) (*LockGrant, error) {
	q := url.Values{"ttl": {ttl.String()}, "wait": {wait.String()}}
	var out LockGrant
	if err := c.do(ctx, "POST", c.url(lockPath(name), node, q), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RenewLock renews the session's hold on the lock; an error wrapping
// ErrLockLost means it no longer holds it.
func (c *Client) RenewLock(ctx context.Context, node, name, session string) (*LockGrant, error) {
	var out LockGrant
	if err := c.do(ctx, "POST", c.url(lockPath(name)+"/renew", node, url.Values{"session": {session}}), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Unlock releases the session's lock.
func (c *Client) Unlock(ctx context.Context, node, name, session string) error {
	return c.do(ctx, "DELETE", c.url(lockPath(name), node, url.Values{"session": {session}}), nil, nil)
}
