package daemon

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// streamConn opens a raw connection and sends the headers of an internal
// stream from the peer named from; frames follow as chunks (sendChunk).
func streamConn(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/internal/stream HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nX-Peerctl-From: %s\r\nTransfer-Encoding: chunked\r\n\r\n", addr, from)
	return c
}

func sendChunk(c net.Conn, b []byte) error {
	_, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(b), b)
	return err
}

// frameHeader is a frame's kind and announced length, without its body.
func frameHeader(kind byte, n int) []byte {
	return binary.AppendUvarint([]byte{kind}, uint64(n))
}

// closedWithin waits until the server closes c (a read returns EOF or an
// error other than our own deadline) and returns what it had sent.
func closedWithin(t *testing.T, c net.Conn, d time.Duration, what string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: connection still open after %v", what, d)
	}
	return string(b)
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Six streams each announcing a 64 MiB frame and sending a little of it,
// then six announcing a frame just under the cap, all left open: the first
// are refused from their header, the others cost what they sent. Before
// frames were capped and grown as bytes arrived, this test's heap grew by
// 384 MiB (6 × 64 MiB allocated from the headers alone). Reference: issue
// 7, "six half-sent streams took a daemon from 24 MB to 417 MB".
func TestHalfSentFramesKeepMemoryFlat(t *testing.T) {
	nd := startNode(t, testConfig(t, "n1", t.TempDir()))
	addr := nd.APIAddr()
	before := heapAlloc()
	part := make([]byte, 32<<10)
	var big []net.Conn
	for i := 0; i < 6; i++ {
		c := streamConn(t, addr, fmt.Sprintf("big%d", i))
		sendChunk(c, append(frameHeader(0, 64<<20), part...))
		big = append(big, c)
	}
	for i, c := range big {
		if reply := closedWithin(t, c, 10*time.Second, "64 MiB frame"); !strings.Contains(reply, "413") {
			t.Errorf("stream %d announcing 64 MiB: reply %q; want 413", i, reply)
		}
	}
	for i := 0; i < 6; i++ {
		c := streamConn(t, addr, fmt.Sprintf("under%d", i))
		sendChunk(c, append(frameHeader(0, maxFrame), part...))
	}
	waitFor(t, 10*time.Second, "six open streams", func() error {
		nd.ht.smu.Lock()
		defer nd.ht.smu.Unlock()
		if n := len(nd.ht.in); n != 6 {
			return fmt.Errorf("%d streams open", n)
		}
		return nil
	})
	// Watch the heap for a while the six half frames stay open.
	var peak uint64
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
		peak = max(peak, heapAlloc())
		time.Sleep(50 * time.Millisecond)
	}
	growth := int64(peak) - int64(before)
	t.Logf("heap before %d MiB, peak with 12 half-sent frames %d MiB (growth %d KiB)", before>>20, peak>>20, growth>>10)
	if growth > 32<<20 {
		t.Errorf("heap grew by %d MiB; want < 32 MiB", growth>>20)
	}
	if got := nd.repl.drops[dropOversize].Load(); got != 6 {
		t.Errorf("oversize frames counted: %d; want 6", got)
	}
}

// limitsConfig is a node with short timeouts, so tests see them act.
func limitsConfig(t *testing.T, name string, join ...string) *Config {
	cfg := testConfig(t, name, t.TempDir(), join...)
	cfg.Limits = Limits{ReadTimeout: time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: time.Second,
		StreamKeepalive: 200 * time.Millisecond, StreamIdle: time.Second}
	return cfg
}

// A body trickled a byte at a time, a keep-alive connection left idle, an
// internal stream that never sends a frame and one that stalls inside a
// frame are all closed by the server after their timeouts.
func TestSlowAndIdleConnectionsAreClosed(t *testing.T) {
	nd := startNode(t, limitsConfig(t, "n1"))
	addr := nd.APIAddr()

	t.Run("trickled body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "PUT /v1/kv/slow HTTP/1.1\r\nHost: %s\r\nX-Peerctl-Client: 1\r\nContent-Length: 1000\r\n\r\n", addr)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		}()
		start := time.Now()
		closedWithin(t, c, 10*time.Second, "trickled body")
		t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
		if _, err := nd.Store().Get("slow"); err == nil {
			t.Error("the trickled value was stored")
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /v1/info HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("idle connection: read = %v; want EOF (closed by the server)", err)
		}
		t.Logf("closed after %v idle", time.Since(start).Round(time.Millisecond))
	})
	t.Run("silent stream", func(t *testing.T) {
		c := streamConn(t, addr, "silent")
		start := time.Now()
		closedWithin(t, c, 10*time.Second, "stream without frames")
		t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("stalled frame", func(t *testing.T) {
		before := nd.repl.drops[dropTruncated].Load()
		c := streamConn(t, addr, "stalled")
		sendChunk(c, append(frameHeader(0, 1000), "half"...))
		closedWithin(t, c, 10*time.Second, "stream stalled inside a frame")
		waitFor(t, 5*time.Second, "truncated frame counted", func() error {
			if got := nd.repl.drops[dropTruncated].Load(); got != before+1 {
				return fmt.Errorf("truncated: %d, want %d", got, before+1)
			}
			return nil
		})
	})
}

// An idle stream between two nodes carries keepalive frames and is not cut
// by the receiver's idle deadline: the same stream carries the next push.
func TestIdleStreamStaysUp(t *testing.T) {
	// Ten keepalives per idle timeout: a loaded machine may delay some.
	const idle, keepalive = 1500 * time.Millisecond, 150 * time.Millisecond
	c1, c2 := limitsConfig(t, "n1"), limitsConfig(t, "n2")
	c1.Limits.StreamIdle, c1.Limits.StreamKeepalive = idle, keepalive
	c2.Limits.StreamIdle, c2.Limits.StreamKeepalive = idle, keepalive
	n1 := startNode(t, c1)
	c2.Join = []string{n1.GossipAddr()}
	n2 := startNode(t, c2)
	nodes := []*testNode{n1, n2}
	waitFor(t, 15*time.Second, "both alive", func() error { return allAlive(nodes, 2) })
	if _, err := n1.Put("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a on n2", func() error { _, err := n2.Store().Get("a"); return err })
	stream := func() *http.ResponseController {
		n2.ht.smu.Lock()
		defer n2.ht.smu.Unlock()
		return n2.ht.byPeer["n1"]
	}
	first := stream()
	if first == nil {
		t.Fatal("n2 holds no stream from n1")
	}
	// Over two idle timeouts pass without a write.
	for end := time.Now().Add(2*idle + idle/2); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if s := stream(); s != first {
			t.Fatalf("the stream from n1 was replaced or closed while idle")
		}
	}
	if _, err := n1.Put("b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b on n2", func() error { _, err := n2.Store().Get("b"); return err })
	if s := stream(); s != first {
		t.Error("the push after the idle time used a new stream")
	}
	if n := n2.repl.stats().MalformedDropped; n != 0 {
		t.Errorf("n2 dropped %d messages from a healthy peer", n)
	}
}

// Over MaxConns, a new connection is answered 503 and closed; once one
// closes, new connections are served again.
func TestConnectionCap(t *testing.T) {
	cfg := testConfig(t, "n1", t.TempDir())
	cfg.Limits.MaxConns = 3
	nd := startNode(t, cfg)
	addr := nd.APIAddr()
	get := func(c net.Conn) (*http.Response, error) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /v1/info HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	var held []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if resp, err := get(c); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d: %v %v", i, resp, err)
		}
		held = append(held, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := get(c)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("fourth connection: %v, %v; want 503", resp, err)
	}
	held[0].Close()
	waitFor(t, 5*time.Second, "a connection served after one closed", func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		resp, err := get(c)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// One stream per peer name, MaxStreams in all: a second stream under the
// same name replaces the first; a new name over the cap is refused.
func TestStreamCap(t *testing.T) {
	cfg := testConfig(t, "n1", t.TempDir())
	cfg.Limits.MaxStreams = 2
	nd := startNode(t, cfg)
	addr := nd.APIAddr()
	open := func() int {
		nd.ht.smu.Lock()
		defer nd.ht.smu.Unlock()
		return len(nd.ht.in)
	}
	a := streamConn(t, addr, "a")
	streamConn(t, addr, "b")
	waitFor(t, 5*time.Second, "two streams", func() error {
		if n := open(); n != 2 {
			return fmt.Errorf("%d open", n)
		}
		return nil
	})
	c := streamConn(t, addr, "c")
	if reply := closedWithin(t, c, 5*time.Second, "third stream"); !strings.Contains(reply, "503") || !strings.Contains(reply, "too many replication streams") {
		t.Errorf("third stream: %q; want 503", reply)
	}
	streamConn(t, addr, "a")
	closedWithin(t, a, 5*time.Second, "stream replaced by the same peer")
	waitFor(t, 5*time.Second, "two streams again", func() error {
		if n := open(); n != 2 {
			return fmt.Errorf("%d open", n)
		}
		return nil
	})
}

// Each malformed frame or message is counted under its reason, in info's
// malformed_dropped and in /metrics.
func TestMalformedInputIsCounted(t *testing.T) {
	nd := startNode(t, testConfig(t, "n1", t.TempDir()))
	addr := nd.APIAddr()
	c := streamConn(t, addr, "x")
	sendChunk(c, frameHeader(7, 1)) // unknown kind
	closedWithin(t, c, 5*time.Second, "unknown frame kind")
	c = streamConn(t, addr, "x")
	sendChunk(c, []byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) // length overflows
	closedWithin(t, c, 5*time.Second, "bad length")
	c = streamConn(t, addr, "x")
	sendChunk(c, append(frameHeader(0, 100), "cut"...))
	c.(*net.TCPConn).CloseWrite() // the peer goes away inside a frame
	closedWithin(t, c, 5*time.Second, "truncated frame")
	c = streamConn(t, addr, "x")
	sendChunk(c, append(frameHeader(0, 5), "\x01\x02\x03\x04\x05"...)) // a push that does not decode
	sendChunk(c, frameHeader(kindKeepalive, 0))

	code, _ := rawRequest(t, "POST", "http://"+addr+"/v1/internal/push", map[string]string{"Content-Type": "application/octet-stream"}, strings.Repeat("x", maxCall+1))
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize call: %d; want 413", code)
	}
	code, _ = rawRequest(t, "POST", "http://"+addr+"/v1/internal/digest", map[string]string{"Content-Type": "application/octet-stream"}, "garbage")
	if code != http.StatusBadRequest {
		t.Errorf("garbage digest: %d; want 400", code)
	}
	want := map[string]uint64{dropFrame: 2, dropTruncated: 1, dropDecode: 2, dropOversize: 1}
	waitFor(t, 5*time.Second, "every drop counted", func() error {
		for reason, n := range want {
			if got := nd.repl.drops[reason].Load(); got != n {
				return fmt.Errorf("%s: %d, want %d", reason, got, n)
			}
		}
		if got := nd.Info().Replication.MalformedDropped; got != 6 {
			return fmt.Errorf("malformed_dropped %d, want 6", got)
		}
		return nil
	})
	_, metrics := rawRequest(t, "GET", "http://"+addr+"/metrics", nil, "")
	// /metrics and /v1/info read one snapshot type (replStats): they agree.
	info := nd.Info().Replication
	for _, line := range []string{`peerctl_malformed_messages_total{reason="frame"} 2`, `peerctl_malformed_messages_total{reason="decode"} 2`,
		`peerctl_malformed_messages_total{reason="truncated"} 1`, `peerctl_malformed_messages_total{reason="oversize"} 1`,
		`peerctl_malformed_messages_total{reason="refused"} 0`,
		fmt.Sprintf("peerctl_sync_rounds_total %d", info.SyncRounds), fmt.Sprintf("peerctl_entries_applied_total %d", info.EntriesApplied)} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
}
