package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Join addresses may be DNS names (a Compose service, a Kubernetes pod's
// stable name under a headless Service). A name is looked up again on every
// join attempt, not once at start: in a container cluster the peers' names
// appear in DNS only as their containers start, and a restarted peer may
// come back on another address.

// Bounds on resolving --join addresses for one attempt.
const (
	resolveTimeout  = 5 * time.Second // all look-ups of one attempt
	maxAddrsPerName = 16              // addresses taken from one name
)

// lookupFunc resolves a host name to addresses, as net.Resolver.LookupHost.
type lookupFunc func(ctx context.Context, host string) ([]string, error)

// resolveJoin turns join addresses (HOST:PORT, HOST an IP or a DNS name)
// into IP:PORT targets for one join attempt: each name is looked up with
// lookup and contributes up to maxAddrsPerName addresses, in the order
// returned. Targets in self (this node's own gossip addresses) are left
// out, as are duplicates. It returns the targets, whether every address
// resolved only to self (the node was told to join itself, as a first
// Kubernetes pod is), and one error per address that did not resolve.
func resolveJoin(ctx context.Context, lookup lookupFunc, addrs []string, self ...string) (targets []string, onlySelf bool, errs []error) {
	isSelf := map[string]bool{}
	for _, s := range self {
		if s != "" {
			isSelf[s] = true
		}
	}
	seen := map[string]bool{}
	selfHits := 0
	for _, addr := range addrs {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("join address %q: want HOST:PORT", addr))
			continue
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("join address %q: port %q is not a number in 1..65535", addr, port))
			continue
		}
		var ips []string
		if ip := net.ParseIP(host); ip != nil {
			ips = []string{ip.String()}
		} else {
			ips, err = lookup(ctx, host)
			if err != nil {
				errs = append(errs, fmt.Errorf("join address %q: %w", addr, err))
				continue
			}
			if len(ips) == 0 {
				errs = append(errs, fmt.Errorf("join address %q: %s has no addresses", addr, host))
				continue
			}
		}
		if len(ips) > maxAddrsPerName {
			ips = ips[:maxAddrsPerName]
		}
		for _, ip := range ips {
			t := net.JoinHostPort(ip, port)
			switch {
			case isSelf[t]:
				selfHits++
			case !seen[t]:
				seen[t] = true
				targets = append(targets, t)
			}
		}
	}
	return targets, len(targets) == 0 && selfHits > 0 && len(errs) == 0, errs
}

// joinTargets resolves the join addresses for one attempt with the
// system resolver, bounded by resolveTimeout or the agent's stop.
func (a *Agent) joinTargets(addrs []string) ([]string, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	go func() {
		select {
		case <-a.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	self := []string{a.gossip}
	if a.cfg.Advertise != "" {
		self = append(self, a.cfg.Advertise)
	}
	lookup := a.cfg.LookupHost
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	targets, onlySelf, errs := resolveJoin(ctx, lookup, addrs, self...)
	return targets, onlySelf, errors.Join(errs...)
}
