package api

// The fault commands' types: what POST, GET and DELETE /v1/faults take and
// return (daemon/faultsapi.go serves them), and the cluster's fault table
// records and per-node rules they report.

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Fault request kinds.
const (
	ReqPartition = "partition"
	ReqIsolate   = "isolate"
	ReqPause     = "pause"
	ReqDelay     = "delay"
	ReqLoss      = "loss"
)

// FaultRequest asks for a fault across the cluster.
type FaultRequest struct {
	Kind   string        `json:"kind"`             // partition, isolate, pause, delay, loss
	Groups [][]string    `json:"groups,omitempty"` // partition: the sides
	Nodes  []string      `json:"nodes,omitempty"`  // the targets; ["*"] means every node
	Peers  []string      `json:"peers,omitempty"`  // delay, loss: only toward these (default all)
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	Rate   float64       `json:"rate,omitempty"`
	For    time.Duration `json:"for,omitempty"`  // 0: until healed
	Seed   uint64        `json:"seed,omitempty"` // 0: keep each node's generator
	Reason string        `json:"reason,omitempty"`
}

// Describe is a short description of the fault asked for, e.g.
// "partition n1 / n2,n3" or "loss 20% n2 (to n1)".
func (r FaultRequest) Describe() string {
	nodes := strings.Join(r.Nodes, ",")
	if nodes == "*" {
		nodes = "all nodes"
	}
	var s string
	switch r.Kind {
	case ReqPartition:
		sides := make([]string, len(r.Groups))
		for i, g := range r.Groups {
			sides[i] = strings.Join(g, ",")
		}
		s = "partition " + strings.Join(sides, " / ")
	case ReqDelay:
		s = fmt.Sprintf("delay %s by %v", nodes, r.Delay)
		if r.Jitter > 0 {
			s += fmt.Sprintf("±%v", r.Jitter)
		}
	case ReqLoss:
		s = fmt.Sprintf("loss %.0f%% %s", r.Rate*100, nodes)
	default:
		s = r.Kind + " " + nodes
	}
	if len(r.Peers) > 0 {
		s += " (to " + strings.Join(r.Peers, ",") + ")"
	}
	return s
}

// NodeFaults is one node's part in a fault command or listing: the rules
// it applies, or why it could not be reached (it then applies the change
// when it is back, from its saved table or its first exchange).
type NodeFaults struct {
	Node  string `json:"node"`
	Rules []Rule `json:"rules"`
	Error string `json:"error,omitempty"`
}

// FaultResult reports a fault command: the fault recorded in the cluster's
// table, and for each node involved its rules and whether it was reached.
type FaultResult struct {
	ID    string       `json:"id"`
	Until time.Time    `json:"until,omitzero"` // zero: until healed
	Nodes []NodeFaults `json:"nodes"`
}

// HealResult reports a heal: the faults removed from the cluster's table,
// and each member told, or why it could not be (it lifts them when it is
// back).
type HealResult struct {
	Healed []FaultRecord `json:"healed"`
	Nodes  []NodeFaults  `json:"nodes"`
}

// FaultStatus is a fault in force and where it is applied.
type FaultStatus struct {
	FaultRecord
	Named   []string `json:"named"`   // nodes the command named
	Applied []string `json:"applied"` // nodes that apply its rules now
	Pending []string `json:"pending"` // nodes involved that do not yet: down, or not told yet
}

// FaultsView is the cluster's fault table as one node sees it, and every
// member's rules.
type FaultsView struct {
	Faults []FaultStatus `json:"faults"`
	Nodes  []NodeFaults  `json:"nodes"`
}

// Fault kinds.
const (
	FaultDrop  = "drop"  // drop everything sent to Peers (partition, isolate)
	FaultDelay = "delay" // delay everything sent to Peers by Delay ± Jitter
	FaultLoss  = "loss"  // drop each message sent to Peers with probability Rate
	FaultPause = "pause" // send nothing, receive nothing: a frozen process
)

// Rule is one fault installed on one node.
type Rule struct {
	ID     string        `json:"id"`    // shared by the rules one command installed
	Kind   string        `json:"kind"`  // drop, delay, loss, pause
	Peers  []string      `json:"peers"` // destination node names; empty means all
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	Rate   float64       `json:"rate,omitempty"`
	Since  time.Time     `json:"since"`
	Until  time.Time     `json:"until,omitempty"` // zero: until healed
	Reason string        `json:"reason"`          // the command, for people
	Nodes  []string      `json:"nodes"`           // nodes the command named; heal NODE removes these
}

// Describe is a short human description of the rule's effect.
func (r *Rule) Describe() string {
	to := "all peers"
	if len(r.Peers) > 0 {
		to = strings.Join(r.Peers, ",")
	}
	switch r.Kind {
	case FaultDrop:
		return "drops all traffic to " + to
	case FaultDelay:
		if r.Jitter > 0 {
			return fmt.Sprintf("delays traffic to %s by %v±%v", to, r.Delay, r.Jitter)
		}
		return fmt.Sprintf("delays traffic to %s by %v", to, r.Delay)
	case FaultLoss:
		return fmt.Sprintf("loses %.0f%% of traffic to %s", r.Rate*100, to)
	case FaultPause:
		return "paused: sends and answers nothing"
	}
	return r.Kind
}

// Endpoint is a member as a fault record remembers it: its name and the
// addresses it had when the fault was ordered. Gossip addresses let a
// restarted node apply rules to peers it has not yet heard of (a join by
// address carries no name); API addresses let it reach them for the table.
type Endpoint struct {
	Name   string `json:"name"`
	Gossip string `json:"gossip,omitempty"`
	API    string `json:"api,omitempty"`
}

// FaultRecord is one fault ordered on the cluster.
type FaultRecord struct {
	ID      string       `json:"id"`
	Request FaultRequest `json:"request"` // as ordered
	Members []Endpoint   `json:"members"` // every member known when ordered, by name
	Created time.Time    `json:"created"`
	Until   time.Time    `json:"until,omitzero"`  // zero: until healed
	Healed  time.Time    `json:"healed,omitzero"` // non-zero: a tombstone
}

// Live reports whether the record is in force at now.
func (r *FaultRecord) Live(now time.Time) bool {
	return r.Healed.IsZero() && (r.Until.IsZero() || now.Before(r.Until))
}

// MemberNames returns the names of the members the record remembers, in
// its order.
func (r *FaultRecord) MemberNames() []string {
	out := make([]string, len(r.Members))
	for i, m := range r.Members {
		out[i] = m.Name
	}
	return out
}

// Named returns the nodes the fault command named, sorted: both sides of a
// partition, the targets of the others (every member for "*"). `heal
// NODE` heals the faults that named NODE.
func (r *FaultRecord) Named() []string {
	var out []string
	switch {
	case r.Request.Kind == ReqPartition:
		for _, g := range r.Request.Groups {
			out = append(out, g...)
		}
	case len(r.Request.Nodes) == 1 && r.Request.Nodes[0] == "*":
		out = r.MemberNames()
	default:
		out = slices.Clone(r.Request.Nodes)
	}
	sort.Strings(out)
	return slices.Compact(out)
}
