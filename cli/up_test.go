package cli

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/peerctl/peerctl/internal/cluster"
)

// A busy port names the node that wanted it, and the suggestion points
// past it to a free range.
func TestUpBusyPortError(t *testing.T) {
	base, err := cluster.FreePortRange(4)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", cluster.Loopback(base+2))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p, err := cluster.BusyPort(base, 4)
	if p != base+2 || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("BusyPort(%d, 4) = %d, %v; want %d, address in use", base, p, err, base+2)
	}
	msg := busyPortError(cluster.Layout(2, base, "d"), p, err, 2).Error()
	if !strings.Contains(msg, "node2 gossip") || !strings.Contains(msg, "--base-port") {
		t.Errorf("busyPortError = %q; want it to name node2 gossip and suggest --base-port", msg)
	}
}
