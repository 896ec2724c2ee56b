package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Limits bound what the HTTP API accepts, so that no client or peer can
// hold memory, connections or goroutines without end. Zero fields take the
// defaults (DefaultLimits); tests shorten them.
type Limits struct {
	// ReadTimeout bounds reading a whole request, body included, and
	// WriteTimeout writing its reply, on every route but the internal
	// stream. IdleTimeout closes a keep-alive connection with no request.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// StreamKeepalive is how often a sender writes an empty frame on an
	// idle internal stream; StreamIdle is how long a receiver waits for a
	// frame before it closes the stream (a few keepalives).
	StreamKeepalive, StreamIdle time.Duration
	// MaxConns caps concurrent API connections; a connection over the cap
	// gets 503 and is closed. MaxStreams caps concurrent internal streams
	// (one per peer name at most).
	MaxConns, MaxStreams int
	// MaxBodyBytes caps the request-body bytes all connections hold at
	// once (budget.go).
	MaxBodyBytes int64
}

// DefaultLimits returns the limits a daemon runs with. ReadTimeout allows a
// call's largest body (maxCall) at about 150 KB/s. MaxConns stays below a
// quarter of the process's file limit, leaving the rest to badger and
// memberlist.
func DefaultLimits() Limits {
	l := Limits{
		ReadTimeout:     time.Minute,
		WriteTimeout:    2 * time.Minute,
		IdleTimeout:     2 * time.Minute,
		StreamKeepalive: 10 * time.Second,
		StreamIdle:      time.Minute,
		MaxConns:        1024,
		MaxStreams:      256,
		MaxBodyBytes:    64 << 20,
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur > 0 && rl.Cur/4 < uint64(l.MaxConns) {
		l.MaxConns = max(int(rl.Cur/4), 16)
	}
	return l
}

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&l.ReadTimeout, d.ReadTimeout)
	set(&l.WriteTimeout, d.WriteTimeout)
	set(&l.IdleTimeout, d.IdleTimeout)
	set(&l.StreamKeepalive, d.StreamKeepalive)
	set(&l.StreamIdle, d.StreamIdle)
	if l.MaxConns == 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxStreams == 0 {
		l.MaxStreams = d.MaxStreams
	}
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	return l
}

// validate names the first bad field.
func (l Limits) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read timeout", l.ReadTimeout}, {"write timeout", l.WriteTimeout}, {"idle timeout", l.IdleTimeout},
		{"stream keepalive", l.StreamKeepalive}, {"stream idle timeout", l.StreamIdle}} {
		if d.v < 0 {
			return fmt.Errorf("api %s %v: must not be negative", d.name, d.v)
		}
	}
	if l.MaxBodyBytes < 0 {
		return fmt.Errorf("api body budget %d: must not be negative", l.MaxBodyBytes)
	}
	if l.MaxConns < 0 || l.MaxStreams < 0 {
		return fmt.Errorf("--max-conns %d, max streams %d: must not be negative", l.MaxConns, l.MaxStreams)
	}
	w := l.withDefaults()
	if w.StreamIdle <= w.StreamKeepalive {
		return fmt.Errorf("api stream idle timeout %v must exceed the stream keepalive %v, or idle streams are cut", w.StreamIdle, w.StreamKeepalive)
	}
	return nil
}

// limitListener accepts at most max connections at a time. A connection
// over the cap is answered 503 and closed at once (rather than left in the
// kernel's queue, where a client would hang), and logged at most once per
// minute. After Close it starts no more refusals, and wait waits for those
// under way (each ends within about a second), so the server's shutdown
// leaves none running.
type limitListener struct {
	net.Listener
	max int
	log *slog.Logger

	mu       sync.Mutex // guards open, logged, closed, and refusals.Add against Close's Wait
	open     int
	logged   time.Time
	refused  int // since the last log line
	closed   bool
	refusals sync.WaitGroup // goroutines answering connections over the cap
}

// Close closes the listener; Accept starts no refusal after it.
func (l *limitListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.Listener.Close()
}

// wait waits for the refusals under way; call it after Close.
func (l *limitListener) wait() { l.refusals.Wait() }

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.open >= l.max {
			l.refused++
			var n int
			if time.Since(l.logged) >= time.Minute {
				l.logged, n, l.refused = time.Now(), l.refused, 0
			}
			l.mu.Unlock()
			if n > 0 {
				l.log.Warn("api connection limit reached: refusing new connections until some close", "limit", l.max, "refused", n, "remote", c.RemoteAddr().String())
			}
			if refusing.Add(1) > maxRefusing {
				refusing.Add(-1)
				c.Close()
				continue
			}
			l.mu.Lock()
			closed := l.closed
			if !closed {
				l.refusals.Add(1)
			}
			l.mu.Unlock()
			if closed {
				refusing.Add(-1)
				c.Close()
				continue
			}
			go func() {
				defer l.refusals.Done()
				defer refusing.Add(-1)
				refuseConn(c, l.max)
			}()
			continue
		}
		l.open++
		l.mu.Unlock()
		return &limitConn{Conn: c, l: l}, nil
	}
}

// refusing counts connections being refused; past maxRefusing they are
// closed without an answer, so a flood costs no more than that many
// goroutines.
var refusing atomic.Int64

const maxRefusing = 64

// refuseConn answers 503 on a connection over the cap and closes it. It
// reads what the client sent for up to a second first: closing a socket
// with unread input resets it, and the client would see a reset instead of
// the answer.
func refuseConn(c net.Conn, limit int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	body := fmt.Sprintf("{\"error\": \"too many connections to this API (limit %d): retry later\"}\n", limit)
	fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return err
}
