package daemon

import (
	"context"
	"net/url"
)

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
