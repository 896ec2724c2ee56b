package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// echoHandler replies to a call with its body.
type echoHandler struct{}

func (echoHandler) HandleMessage(_ context.Context, _, _ string, body []byte, _ bool) ([]byte, error) {
	return body, nil
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTransportCall measures one replication call over loopback HTTP,
// plain and sealed, alternating (run with -count for medians): the cost of
// the envelope next to the cost of the call it rides on.
func BenchmarkTransportCall(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		for _, sealed := range []bool{false, true} {
			name := "plain/"
			if sealed {
				name = "sealed/"
			}
			b.Run(name+itoa(size), func(b *testing.B) {
				var seal *sealer
				if sealed {
					kr, _ := memberlist.NewKeyring(nil, testKey1)
					seal = newSealer(kr)
				}
				mk := func(from string) *httpTransport {
					tr := newHTTPTransport(from, Limits{}, slog.New(slog.DiscardHandler))
					tr.secure(seal, func(t *http.Transport) (http.RoundTripper, error) { return t, nil })
					tr.report(newLogLimiter(time.Minute), func(string) {})
					return tr
				}
				srv, cli := mk("n2"), mk("n1")
				srv.SetHandler(echoHandler{})
				mux := http.NewServeMux()
				srv.register(mux)
				hs := httptest.NewServer(mux)
				defer hs.Close()
				defer cli.close()
				addr := hs.Listener.Addr().String()
				body := make([]byte, size)
				b.SetBytes(int64(size))
				b.ResetTimer()
				cpu0 := cpuTime()
				for i := 0; i < b.N; i++ {
					if _, err := cli.Call(context.Background(), "n2", addr, kindSync, body); err != nil {
						b.Fatal(err)
					}
				}
				// CPU time (both ends, one process) is steadier than wall
				// time on a shared machine.
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}
