package procs

import (
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Ports are drawn from below Linux's ephemeral range, so that the local
// port of some outgoing connection cannot take a port between the moment
// it is found free and the moment an agent binds it. handed remembers
// what this process gave out, as a closed port looks free again.
var ports struct {
	mu     sync.Mutex
	handed map[int]bool
}

// FreePorts returns the first of n consecutive ports, free on loopback
// for TCP and UDP when checked, and not handed out before by this
// process. It is safe for concurrent use.
func FreePorts(tb testing.TB, n int) int {
	tb.Helper()
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.handed == nil {
		ports.handed = map[int]bool{}
	}
	const low, high = 20000, 32000
	for range 200 {
		base := low + rand.IntN(high-low-n)
		if portsFree(base, n) {
			for p := base; p < base+n; p++ {
				ports.handed[p] = true
			}
			return base
		}
	}
	tb.Fatalf("no %d consecutive free ports between %d and %d", n, low, high)
	return 0
}

// portsFree checks base..base+n-1; ports.mu is held.
func portsFree(base, n int) bool {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		if ports.handed[p] {
			return false
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		held = append(held, l)
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		held = append(held, u)
	}
	return true
}
