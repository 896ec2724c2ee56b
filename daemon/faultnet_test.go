package daemon

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// The gossip wrapper runs over memberlist's MockNetwork, no sockets. A
// packet a's drop rule cuts is lost and not counted as sent; once healed
// the next packet arrives, and is the first to.
func TestGossipTransportOverMockNetwork(t *testing.T) {
	var mn memberlist.MockNetwork
	fa, fb := NewFaults(1), NewFaults(1) // a's and b's rules
	var ca, cb gossipCounters
	names := func(string) string { return "b" }
	a := newGossipTransport(mn.NewTransport("a"), fa, &ca, names)
	b := newGossipTransport(mn.NewTransport("b"), fb, &cb, names)
	defer a.Shutdown()
	defer b.Shutdown()
	ip, port, err := b.FinalAdvertiseAddr("", 0)
	if err != nil {
		t.Fatal(err)
	}
	to := memberlist.Address{Addr: net.JoinHostPort(ip.String(), strconv.Itoa(port)), Name: "b"}

	if err := fa.Add(Rule{ID: "cut", Kind: FaultDrop, Peers: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteToAddress([]byte("cut by a"), to); err != nil {
		t.Fatalf("write with a drop rule: %v; want the packet lost silently, as UDP loses it", err)
	}
	if n := ca.packetsSent.Load(); n != 0 {
		t.Errorf("packets sent = %d after a dropped packet; want 0", n)
	}
	fa.Heal()

	if _, err := a.WriteToAddress([]byte("healed"), to); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-b.PacketCh():
		if string(p.Buf) != "healed" {
			t.Errorf("b received %q first; want %q (the others were dropped)", p.Buf, "healed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b received nothing within 10s")
	}
	if s, r := ca.packetsSent.Load(), cb.packetsRecv.Load(); s != 1 || r != 1 {
		t.Errorf("a sent %d packets, b received %d; want 1 and 1", s, r)
	}
}
