package daemon

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// faultTransport applies a node's fault rules to the replication messages
// it sends. Rules for replies are applied by the receiver (see
// httpServer.internal), so every message's fate is decided by its sender.
type faultTransport struct {
	next Transport
	f    *Faults
}

func (t *faultTransport) Call(ctx context.Context, peer, addr, kind string, body []byte) ([]byte, error) {
	drop, delay := t.f.Outbound(peer)
	if drop {
		return nil, fmt.Errorf("%s to %s: %w", kind, peer, errDropped)
	}
	if delay > 0 {
		tm := time.NewTimer(delay)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return nil, ctx.Err()
		}
	}
	return t.next.Call(ctx, peer, addr, kind, body)
}

func (t *faultTransport) Send(peer, addr, kind string, body []byte) error {
	drop, delay := t.f.Outbound(peer)
	if drop {
		return nil // lost on the way: the sender cannot tell
	}
	if delay > 0 {
		// Deliver later without holding up the caller, as a slow link does.
		cp := append([]byte(nil), body...)
		time.AfterFunc(delay, func() { t.next.Send(peer, addr, kind, cp) })
		return nil
	}
	return t.next.Send(peer, addr, kind, body)
}

// gossipCounters count membership traffic at the memberlist transport.
type gossipCounters struct {
	packetsSent, packetsRecv, bytesSent, bytesRecv atomic.Uint64
	streamsOut, streamsIn                          atomic.Uint64
}

// gossipTransport wraps memberlist's network transport: it counts packets
// and streams and applies the fault rules to them. Names of destinations
// come from memberlist (Address.Name) or, for joins by address, from
// names(addr).
type gossipTransport struct {
	inner *memberlist.NetTransport
	f     *Faults
	c     *gossipCounters
	names func(addr string) string

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

func newGossipTransport(inner *memberlist.NetTransport, f *Faults, c *gossipCounters, names func(string) string) *gossipTransport {
	t := &gossipTransport{
		inner: inner, f: f, c: c, names: names,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		done:     make(chan struct{}),
	}
	t.wg.Add(2)
	go t.forwardPackets()
	go t.forwardStreams()
	return t
}

func (t *gossipTransport) forwardPackets() {
	defer t.wg.Done()
	for {
		select {
		case p := <-t.inner.PacketCh():
			if t.f.Paused() {
				continue // a frozen process reads nothing
			}
			t.c.packetsRecv.Add(1)
			t.c.bytesRecv.Add(uint64(len(p.Buf)))
			select {
			case t.packetCh <- p:
			case <-t.done:
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *gossipTransport) forwardStreams() {
	defer t.wg.Done()
	for {
		select {
		case c := <-t.inner.StreamCh():
			if t.f.CutOff() {
				c.Close()
				continue
			}
			t.c.streamsIn.Add(1)
			select {
			case t.streamCh <- c:
			case <-t.done:
				c.Close()
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *gossipTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }
func (t *gossipTransport) StreamCh() <-chan net.Conn           { return t.streamCh }

func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *gossipTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	name := addr.Name
	if name == "" {
		name = t.names(addr.Addr)
	}
	drop, delay := t.f.Outbound(name)
	if drop {
		return time.Now(), nil // lost on the way, as UDP is
	}
	t.c.packetsSent.Add(1)
	t.c.bytesSent.Add(uint64(len(b)))
	if delay > 0 {
		// Never block memberlist's probe and gossip loops: send later
		// from a timer, with a copy (the caller reuses b).
		cp := append([]byte(nil), b...)
		time.AfterFunc(delay, func() {
			select {
			case <-t.done:
			default:
				t.inner.WriteToAddress(cp, addr)
			}
		})
		return time.Now(), nil
	}
	return t.inner.WriteToAddress(b, addr)
}

func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *gossipTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	name := addr.Name
	if name == "" {
		name = t.names(addr.Addr)
	}
	drop, delay := t.f.Outbound(name)
	if drop {
		return nil, fmt.Errorf("dial %s: %w", addr.String(), errDropped)
	}
	if delay > 0 {
		if delay >= timeout {
			return nil, fmt.Errorf("dial %s: i/o timeout (injected delay %v)", addr.String(), delay)
		}
		select {
		case <-time.After(delay):
		case <-t.done:
			return nil, fmt.Errorf("dial %s: transport shut down", addr.String())
		}
		timeout -= delay
	}
	t.c.streamsOut.Add(1)
	return t.inner.DialAddressTimeout(addr, timeout)
}

// abort stops a transport memberlist never started reading from.
func (t *gossipTransport) abort() {
	t.once.Do(func() { close(t.done) })
	t.inner.Shutdown()
	t.wg.Wait()
}

// Shutdown stops the inner transport first, while the forwarders still
// drain it: its listeners may be blocked handing over a packet, and
// memberlist reads our channels until this returns.
func (t *gossipTransport) Shutdown() error {
	err := t.inner.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}
