package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A heartbeat goes through Consumer, raft's main loop, even when raft
// installs a heartbeat handler: the fast path races with term changes
// (hashicorp/raft#695) and made followers report leaders for terms they
// never won.
func TestRaftHeartbeatThroughConsumer(t *testing.T) {
	rt := newRaftTransport(nil, "a", func(string) (string, bool) { return "", false }, time.Second)
	t.Cleanup(func() { rt.Close() })
	rt.SetHeartbeatHandler(func(raft.RPC) { t.Error("heartbeat went to the fast-path handler") })
	hb, err := encodeMsgpack(&raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("b")}, Term: 7})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := rt.serve(ctx, kindRaftAppend, hb)
		done <- result{b, err}
	}()
	select {
	case rpc := <-rt.Consumer():
		req, ok := rpc.Command.(*raft.AppendEntriesRequest)
		if !ok || req.Term != 7 {
			t.Fatalf("consumer got %#v; want the heartbeat of term 7", rpc.Command)
		}
		rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
	case <-ctx.Done():
		t.Fatal("heartbeat never reached the consumer")
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("serve = %v", r.err)
	}
	var resp raft.AppendEntriesResponse
	if err := decodeMsgpack(r.b, &resp); err != nil || !resp.Success || resp.Term != 7 {
		t.Fatalf("response %+v, %v; want success at term 7", resp, err)
	}
}
