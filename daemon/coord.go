package daemon

// Operations on the consistent namespace and locks, served by any node:
// the leader executes them; a follower forwards each to the leader as a
// raft-op call over the replication transport (so through the fault layer:
// a follower cut off from the leader cannot reach it either), retrying
// while the leader is unknown or changing, for at most opBudget. Past it
// the operation fails with errNoQuorum's message, which says how many
// voters this node reaches.
//
// A write is retried only when it surely was not applied (not proposed by
// a non-leader, or the message never left or was refused unread); a write
// whose fate is unknown (leadership lost after proposing it, a lost reply)
// fails at once as no quorum with that said: retrying a compare-and-set
// could report a mismatch for a write that in fact succeeded.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"
)

// opBudget bounds how long one operation tries to reach a quorum.
const opBudget = 4 * time.Second

// Operation kinds beside the FSM's (fsmCmd.Op): reads.
const (
	opGet  uint8 = 10
	opList uint8 = 11
)

// coordOp is one operation, as forwarded to the leader.
type coordOp struct {
	Op        uint8
	Key       string // key, lock name, or list prefix
	Value     []byte
	Cond      bool
	IfVersion uint64
	Session   string
	TTLMillis int64
}

// coordReply is an operation's outcome.
type coordReply struct {
	Code    string // "", codeNotLeader, codeKeyNotFound, codeVersionMismatch, codeLockHeld, codeLockLost
	Version uint64
	Existed bool
	Value   []byte
	Leader  string // the leader that served it
	Keys    []KeyInfo
	Lock    lockState
}

const codeNotLeader = "not_leader"

func isWrite(op uint8) bool { return op != opGet && op != opList }

// noQuorumError is an operation that could not reach a quorum.
type noQuorumError struct{ msg string }

func (e *noQuorumError) Error() string { return e.msg }

// kindMux hands raft-* messages to the coordination side and the rest to
// the replicator.
type kindMux struct {
	repl  *replicator
	coord *coord
}

func (m *kindMux) HandleMessage(ctx context.Context, from, kind string, body []byte, call bool) ([]byte, error) {
	if !isRaftKind(kind) {
		return m.repl.HandleMessage(ctx, from, kind, body, call)
	}
	if !call {
		return nil, reject(dropFrame, fmt.Errorf("raft message %s on a stream", kind))
	}
	return m.coord.handle(ctx, kind, body)
}

// handle serves a raft-* call.
func (c *coord) handle(ctx context.Context, kind string, body []byte) ([]byte, error) {
	if c.r == nil {
		if kind == kindRaftStatus {
			return encodeMsgpack(raftStatus{Off: true, LastContactMs: -1})
		}
		return nil, fmt.Errorf("raft is off on %s (--bootstrap-expect 0)", c.a.cfg.Name)
	}
	switch kind {
	case kindRaftStatus:
		return encodeMsgpack(c.status())
	case kindRaftOp:
		var op coordOp
		if err := decodeMsgpack(body, &op); err != nil {
			return nil, reject(dropFrame, fmt.Errorf("raft op: %w", err))
		}
		ctx, cancel := context.WithTimeout(ctx, opBudget)
		defer cancel()
		rep, err := c.exec(ctx, &op)
		if errors.Is(err, errNotLeader) {
			rep, err = coordReply{Code: codeNotLeader}, nil
		}
		if err != nil {
			return nil, err
		}
		return encodeMsgpack(&rep)
	}
	return c.nt.serve(ctx, kind, body)
}

// do runs the operation on the leader, wherever it is.
func (c *coord) do(ctx context.Context, op *coordOp) (coordReply, error) {
	if c.r == nil {
		return coordReply{}, &noQuorumError{fmt.Sprintf("no quorum: raft is off on %s (started with --bootstrap-expect 0); ask another node", c.a.cfg.Name)}
	}
	ctx, cancel := context.WithTimeout(ctx, opBudget)
	defer cancel()
	backoff := 10 * time.Millisecond
	var last error
	for {
		var rep coordReply
		var err error
		leader := c.leaderName()
		switch {
		case c.r.State() == raft.Leader:
			rep, err = c.exec(ctx, op)
		case leader == "":
			err = fmt.Errorf("no leader known: %w", errNotLeader)
		default:
			rep, err = c.forward(ctx, leader, op)
		}
		if err == nil && rep.Code != codeNotLeader {
			return rep, nil
		}
		if err == nil {
			err = fmt.Errorf("%s is no longer the leader: %w", leader, errNotLeader)
		}
		if ctx.Err() == nil && isWrite(op.Op) && !surelyNotApplied(err) {
			// Not a lack of quorum as such: the leader was lost or changed
			// while the write was in flight. Say so, and what this node
			// reaches now.
			return coordReply{}, &noQuorumError{fmt.Sprintf("the leader was lost while the write was in flight, so its outcome is unknown: it may have been committed; read the key to know (%v); now %s", err, strings.TrimPrefix(c.noQuorumMsg(), "no quorum: "))}
		}
		last = err
		select {
		case <-ctx.Done():
			return coordReply{}, &noQuorumError{fmt.Sprintf("%s (after %v: %v)", c.noQuorumMsg(), opBudget, last)}
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// surelyNotApplied reports whether an operation that failed with err was
// surely not applied: it was not proposed, or never reached the leader.
func surelyNotApplied(err error) bool {
	return errors.Is(err, errNotLeader) || errors.Is(err, errDropped) || errors.Is(err, syscall.ECONNREFUSED) ||
		strings.Contains(err.Error(), errCutOff.Error()) || strings.Contains(err.Error(), "no API address")
}

// forward sends the operation to the leader.
func (c *coord) forward(ctx context.Context, leader string, op *coordOp) (coordReply, error) {
	var rep coordReply
	addr, ok := c.addrOf(leader)
	if !ok {
		return rep, fmt.Errorf("leader %s: no API address known", leader)
	}
	body, err := encodeMsgpack(op)
	if err != nil {
		return rep, err
	}
	reply, err := c.a.transport.Call(ctx, leader, addr, kindRaftOp, body)
	if err != nil {
		return rep, err
	}
	if err := decodeMsgpack(reply, &rep); err != nil {
		return rep, fmt.Errorf("raft op reply from %s: %w", leader, err)
	}
	return rep, nil
}

// exec runs the operation on this node, which must lead.
func (c *coord) exec(ctx context.Context, op *coordOp) (coordReply, error) {
	leader := c.a.cfg.Name
	switch op.Op {
	case opGet:
		if err := c.readIndex(ctx); err != nil {
			return coordReply{}, err
		}
		e, ok := c.fsm.get(op.Key)
		if !ok {
			return coordReply{Code: codeKeyNotFound, Leader: leader}, nil
		}
		return coordReply{Value: e.Value, Version: e.Version, Leader: e.Leader}, nil
	case opList:
		if err := c.readIndex(ctx); err != nil {
			return coordReply{}, err
		}
		return coordReply{Keys: c.fsm.list(op.Key, math.MaxInt), Leader: leader}, nil
	case opPut, opDelete, opLock, opRenew, opUnlock:
		res, err := c.apply(ctx, &fsmCmd{Op: op.Op, Key: op.Key, Value: op.Value, Cond: op.Cond, IfVersion: op.IfVersion, Session: op.Session, TTLMillis: op.TTLMillis})
		if err != nil {
			return coordReply{}, err
		}
		c.a.writes.Add(1) // the idle loop frees memory once writes stop (agent.go maintain)
		return coordReply{Code: res.Code, Version: res.Version, Existed: res.Existed, Lock: res.Lock, Leader: leader}, nil
	}
	return coordReply{}, fmt.Errorf("unknown operation %d", op.Op)
}

// readIndex returns once a read of this node's state machine is
// linearizable: this node led when the read began and still leads a
// quorum (VerifyLeader), its leadership barrier is applied (so its commit
// index covers every entry committed before), and it has applied the
// commit index it had when the read began. errNotLeader otherwise.
func (c *coord) readIndex(ctx context.Context) error {
	term := c.r.CurrentTerm()
	for c.ready.Load() != term {
		if c.r.State() != raft.Leader || c.r.CurrentTerm() != term {
			return errNotLeader
		}
		c.barrier(term) // if the one at election failed, try again
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	idx := c.r.CommitIndex()
	f := c.r.VerifyLeader()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("verify leadership: %v: %w", err, errNotLeader)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	for c.r.AppliedIndex() < idx {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	if c.r.CurrentTerm() != term {
		return errNotLeader
	}
	return nil
}

// noQuorumMsg says why this node cannot reach a quorum: how many voters it
// reaches (itself, and the voters serf sees alive that the fault layer does
// not cut it off from).
func (c *coord) noQuorumMsg() string {
	f := c.r.GetConfiguration()
	var voters []string
	if f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters = append(voters, string(s.ID))
			}
		}
	}
	if len(voters) == 0 {
		return fmt.Sprintf("no quorum: the raft group has not formed yet (it forms once %d members are alive; this node sees %d)", c.expect, len(c.aliveMembers()))
	}
	alive := map[string]bool{}
	for _, m := range c.a.serf.Members() {
		alive[m.Name] = m.Status == serf.StatusAlive
	}
	reach := 0
	for _, v := range voters {
		if v == c.a.cfg.Name {
			if !c.a.faults.Paused() {
				reach++
			}
			continue
		}
		t := c.a.faults.Toward(v)
		if alive[v] && !strings.Contains(t, "cut") && !strings.Contains(t, "paused") {
			reach++
		}
	}
	return fmt.Sprintf("no quorum: this node reaches %d of %d voters (a quorum is %d)", reach, len(voters), len(voters)/2+1)
}

// newSession returns a random lock session ID.
func newSession() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
