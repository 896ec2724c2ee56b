package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// The replication half of the fault layer: every fault check on replication
// traffic is in this file. faultTransport applies the send rules in Call and
// Send, and the receive rules by wrapping the Handler the transport below
// hands received messages to (faultHandler): a node cut off (paused, or
// dropping everything) takes in nothing, and a reply is a message the node
// sends, so the rules toward the asker decide its fate. Every message's fate
// is thus decided by its sender's rules, at the sender or, for a reply, at
// the replier.
type faultTransport struct {
	next  Transport
	f     *Faults
	later *delayer // delayed sends
}

func newFaultTransport(next Transport, f *Faults) *faultTransport {
	return &faultTransport{next: next, f: f, later: newDelayer()}
}

// delayer delivers delayed messages as a slow link does: later, from
// goroutines that stop waits for, without holding up the sender (memberlist
// calls WriteToAddress from its probe and gossip loops). Messages not yet
// due when it stops are dropped, as they would be with the node. It is safe
// for concurrent use.
type delayer struct {
	done chan struct{}  // closed by stop
	mu   sync.Mutex     // guards shut, and wg.Add against stop's Wait
	wg   sync.WaitGroup // sends under way
	shut bool
}

func newDelayer() *delayer { return &delayer{done: make(chan struct{})} }

// after runs send once delay has passed, unless stop comes first. The
// caller copies any buffer send uses that it will reuse.
func (d *delayer) after(delay time.Duration, send func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shut {
		return // lost with the node
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		tm := time.NewTimer(delay)
		defer tm.Stop()
		select {
		case <-tm.C:
			send()
		case <-d.done:
		}
	}()
}

// stop drops the sends not yet due and waits for those under way.
func (d *delayer) stop() {
	d.mu.Lock()
	if !d.shut {
		d.shut = true
		close(d.done)
	}
	d.mu.Unlock()
	d.wg.Wait()
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
		cp := append([]byte(nil), body...)
		t.later.after(delay, func() { t.next.Send(peer, addr, kind, cp) })
		return nil
	}
	return t.next.Send(peer, addr, kind, body)
}

// SetHandler passes h on, wrapped in the receive rules.
func (t *faultTransport) SetHandler(h Handler) {
	t.next.SetHandler(&faultHandler{next: h, f: t.f})
}

// close drops the delayed sends not yet due and waits for those under way.
// Call it after the transport below is closed, so none blocks on a peer.
func (t *faultTransport) close() { t.later.stop() }

// errCutOff refuses a message received while the node is paused or
// isolated.
var errCutOff = errors.New("node is paused or isolated (fault injection)")

// faultHandler applies the receive rules to messages handed to next.
type faultHandler struct {
	next Handler
	f    *Faults
}

func (h *faultHandler) HandleMessage(ctx context.Context, from, kind string, body []byte, call bool) ([]byte, error) {
	if h.f.CutOff() { // frozen or isolated: nothing gets through
		return nil, errCutOff
	}
	reply, err := h.next.HandleMessage(ctx, from, kind, body, call)
	if err != nil || !call {
		return reply, err
	}
	// The reply is a message this node sends: its rules decide its fate.
	drop, delay := h.f.Outbound(from)
	if drop {
		return nil, fmt.Errorf("reply %w", errDropped)
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
	return reply, nil
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
	// The wrapped transport: memberlist's NetTransport in the daemon, its
	// MockTransport in tests. Methods not wrapped here pass through.
	memberlist.NodeAwareTransport
	f     *Faults
	c     *gossipCounters
	names func(addr string) string

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}  // closed by stop
	wg       sync.WaitGroup // the forwarders
	mu       sync.Mutex     // guards stopped
	stopped  bool
	later    *delayer // delayed packets
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

func newGossipTransport(inner memberlist.NodeAwareTransport, f *Faults, c *gossipCounters, names func(string) string) *gossipTransport {
	t := &gossipTransport{
		NodeAwareTransport: inner, f: f, c: c, names: names,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		done:     make(chan struct{}),
		later:    newDelayer(),
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
		case p := <-t.NodeAwareTransport.PacketCh():
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
		case c := <-t.NodeAwareTransport.StreamCh():
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
		cp := append([]byte(nil), b...) // the caller reuses b
		t.later.after(delay, func() { t.NodeAwareTransport.WriteToAddress(cp, addr) })
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, addr)
}

func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *gossipTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	select {
	case <-t.done:
		// Shut down: a join still going through its addresses (a rejoin
		// that Shutdown waits for) stops at the next one.
		return nil, fmt.Errorf("dial %s: transport shut down", addr.String())
	default:
	}
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
	return t.NodeAwareTransport.DialAddressTimeout(addr, timeout)
}

// abort stops a transport memberlist never started reading from.
func (t *gossipTransport) abort() {
	t.stop()
	t.NodeAwareTransport.Shutdown()
	t.wg.Wait()
	t.later.stop()
}

// stop tells the forwarders and delayed sends to end.
func (t *gossipTransport) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		close(t.done)
	}
}

// Shutdown stops the inner transport first, while the forwarders still
// drain it: its listeners may be blocked handing over a packet, and
// memberlist reads our channels until this returns.
func (t *gossipTransport) Shutdown() error {
	err := t.NodeAwareTransport.Shutdown()
	t.stop()
	t.wg.Wait()
	t.later.stop()
	return err
}
