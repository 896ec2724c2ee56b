package daemon

// Raft over the replication transport. hashicorp/raft's RPCs
// (AppendEntries, RequestVote, RequestPreVote, TimeoutNow, InstallSnapshot)
// travel as calls of their own kinds (raft-*) through the node's Transport:
// the same HTTP connections on the API port as replication, and the same
// fault layer, so kill, pause, partition, delay and loss apply to raft
// exactly as they do to replication. No new port, no new address: a raft
// server's address is its node name, resolved to the member's API address
// from serf's tags when a message is sent.
//
// A call's body is the request encoded with msgpack (as raft's own
// NetworkTransport encodes it); its reply, the response. An error on the
// receiving side travels back as the call's error. InstallSnapshot carries
// the snapshot in the body after its header, so a snapshot is limited to
// what one call may carry (maxSnapshotCall); a larger one fails to install
// and the follower is left to catch up when the snapshot shrinks (the
// consistent namespace is meant for coordination data, not bulk data).
// Pipelining is not supported: each AppendEntries waits for its reply
// (raft batches the entries written meanwhile into the next one).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// Raft message kinds on the replication transport.
const (
	kindRaftAppend   = "raft-append"
	kindRaftVote     = "raft-vote"
	kindRaftPreVote  = "raft-prevote"
	kindRaftTimeout  = "raft-timeout"
	kindRaftSnapshot = "raft-snapshot"
	kindRaftOp       = "raft-op"     // a follower forwards an operation to the leader (coord.go)
	kindRaftStatus   = "raft-status" // does the node hold raft state? (bootstrap, raft.go)
)

// isRaftKind reports whether kind is served by the raft side.
func isRaftKind(kind string) bool {
	switch kind {
	case kindRaftAppend, kindRaftVote, kindRaftPreVote, kindRaftTimeout, kindRaftSnapshot, kindRaftOp, kindRaftStatus:
		return true
	}
	return false
}

// maxSnapshotCall bounds a snapshot sent in one InstallSnapshot call,
// header included: the transport's call limit.
const maxSnapshotCall = maxCall

// raftTransport implements raft.Transport over a Transport. It is safe for
// concurrent use.
type raftTransport struct {
	tr      Transport
	local   string                           // this node's name, its raft address
	addrOf  func(name string) (string, bool) // a member's API address
	timeout time.Duration                    // bounds each RPC but InstallSnapshot
	consume chan raft.RPC

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
}

var (
	_ raft.Transport   = (*raftTransport)(nil)
	_ raft.WithPreVote = (*raftTransport)(nil)
	_ raft.WithClose   = (*raftTransport)(nil)
)

func newRaftTransport(tr Transport, local string, addrOf func(string) (string, bool), timeout time.Duration) *raftTransport {
	ctx, cancel := context.WithCancel(context.Background())
	return &raftTransport{tr: tr, local: local, addrOf: addrOf, timeout: timeout,
		consume: make(chan raft.RPC), ctx: ctx, cancel: cancel}
}

// msgpackHandle returns the encoding of raft messages, operations and
// snapshots. MapValueReset: without it a map of structs decodes every
// value's byte slice into one reused buffer, so all values alias the last.
func msgpackHandle() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.MapValueReset = true
	return h
}

func encodeMsgpack(v any) ([]byte, error) {
	var b []byte
	err := codec.NewEncoderBytes(&b, msgpackHandle()).Encode(v)
	return b, err
}

func decodeMsgpack(b []byte, v any) error {
	return codec.NewDecoderBytes(b, msgpackHandle()).Decode(v)
}

func (t *raftTransport) Consumer() <-chan raft.RPC     { return t.consume }
func (t *raftTransport) LocalAddr() raft.ServerAddress { return raft.ServerAddress(t.local) }

func (t *raftTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// call sends one RPC of kind to target and decodes the reply into resp.
func (t *raftTransport) call(target raft.ServerAddress, kind string, body []byte, timeout time.Duration, resp any) error {
	name := string(target)
	addr, ok := t.addrOf(name)
	if !ok {
		return fmt.Errorf("%s to %s: no API address known for the member", kind, name)
	}
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	reply, err := t.tr.Call(ctx, name, addr, kind, body)
	if err != nil {
		return err
	}
	if err := decodeMsgpack(reply, resp); err != nil {
		return fmt.Errorf("%s to %s: decode reply: %w", kind, name, err)
	}
	return nil
}

func (t *raftTransport) rpc(target raft.ServerAddress, kind string, req, resp any) error {
	body, err := encodeMsgpack(req)
	if err != nil {
		return err
	}
	return t.call(target, kind, body, t.timeout, resp)
}

func (t *raftTransport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return t.rpc(target, kindRaftAppend, args, resp)
}

func (t *raftTransport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return t.rpc(target, kindRaftVote, args, resp)
}

func (t *raftTransport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.rpc(target, kindRaftPreVote, args, resp)
}

func (t *raftTransport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return t.rpc(target, kindRaftTimeout, args, resp)
}

// InstallSnapshot sends the header and the snapshot's bytes in one call:
// uvarint(len(header)) header data.
func (t *raftTransport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	hdr, err := encodeMsgpack(args)
	if err != nil {
		return err
	}
	if args.Size < 0 || int64(len(hdr))+args.Size+binary.MaxVarintLen64 > maxSnapshotCall {
		return fmt.Errorf("install snapshot on %s: snapshot of %d bytes is over the %d bytes one message may carry", target, args.Size, maxSnapshotCall)
	}
	body := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(hdr)+int(args.Size)), uint64(len(hdr)))
	body = append(body, hdr...)
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, data, args.Size); err != nil {
		return fmt.Errorf("install snapshot on %s: read snapshot: %w", target, err)
	}
	body = append(body, buf.Bytes()...)
	// A snapshot takes longer than a heartbeat: allow for the bytes.
	return t.call(target, kindRaftSnapshot, body, t.timeout+30*time.Second, resp)
}

func (t *raftTransport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

func (t *raftTransport) DecodePeer(b []byte) raft.ServerAddress { return raft.ServerAddress(b) }

// SetHeartbeatHandler is deliberately a no-op: every heartbeat goes
// through Consumer, raft's main loop, like any other AppendEntries. With
// the fast path, hashicorp/raft processes a heartbeat outside its main
// loop and can record the sender as leader for a term this node has
// meanwhile moved past (hashicorp/raft#695, fix proposed in #701): the node
// then reports a leader for a term it never won, which the nemesis checker
// (at most one leader per term) rightly counts as split-brain. The price is
// that a heartbeat waits behind a log write on a busy follower; the
// election timeout (hundreds of milliseconds) is far above one fsync.
func (t *raftTransport) SetHeartbeatHandler(func(raft.RPC)) {}

// Close ends outgoing RPCs and refuses incoming ones.
func (t *raftTransport) Close() error {
	t.cancel()
	return nil
}

var errRaftClosed = errors.New("raft transport closed")

// serve hands a received RPC of kind to raft and returns the encoded
// response. It blocks until raft answers, ctx is done, or the transport
// closes.
func (t *raftTransport) serve(ctx context.Context, kind string, body []byte) ([]byte, error) {
	var cmd any
	var rd io.Reader
	switch kind {
	case kindRaftAppend:
		var req raft.AppendEntriesRequest
		if err := decodeMsgpack(body, &req); err != nil {
			return nil, &rejectError{reason: dropFrame, err: fmt.Errorf("raft append: %w", err)}
		}
		cmd = &req
	case kindRaftVote:
		var req raft.RequestVoteRequest
		if err := decodeMsgpack(body, &req); err != nil {
			return nil, &rejectError{reason: dropFrame, err: fmt.Errorf("raft vote: %w", err)}
		}
		cmd = &req
	case kindRaftPreVote:
		var req raft.RequestPreVoteRequest
		if err := decodeMsgpack(body, &req); err != nil {
			return nil, &rejectError{reason: dropFrame, err: fmt.Errorf("raft prevote: %w", err)}
		}
		cmd = &req
	case kindRaftTimeout:
		var req raft.TimeoutNowRequest
		if err := decodeMsgpack(body, &req); err != nil {
			return nil, &rejectError{reason: dropFrame, err: fmt.Errorf("raft timeout-now: %w", err)}
		}
		cmd = &req
	case kindRaftSnapshot:
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)-k) {
			return nil, &rejectError{reason: dropFrame, err: fmt.Errorf("raft snapshot: bad header length")}
		}
		var req raft.InstallSnapshotRequest
		if err := decodeMsgpack(body[k:k+int(n)], &req); err != nil {
			return nil, &rejectError{reason: dropFrame, err: fmt.Errorf("raft snapshot: %w", err)}
		}
		data := body[k+int(n):]
		if req.Size != int64(len(data)) {
			return nil, &rejectError{reason: dropFrame, err: fmt.Errorf("raft snapshot: header says %d bytes, %d came", req.Size, len(data))}
		}
		cmd, rd = &req, bytes.NewReader(data)
	default:
		return nil, fmt.Errorf("unknown raft message kind %q", kind)
	}
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: cmd, Reader: rd, RespChan: respCh}
	select {
	case t.consume <- rpc:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.ctx.Done():
		return nil, errRaftClosed
	}
	select {
	case r := <-respCh:
		if r.Error != nil {
			return nil, r.Error
		}
		return encodeMsgpack(r.Response)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.ctx.Done():
		return nil, errRaftClosed
	}
}
