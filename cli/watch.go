package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:     "watch",
		Category: catCluster,
		Usage:    "print the cluster's events as they happen",
		UsageText: `peerctl watch [--kinds KIND,...] [--cluster] [--node NAME] [--json]

Examples:
  peerctl watch                         # what the daemon at --addr sees
  peerctl watch --cluster               # every node's events, merged
  peerctl watch --kinds member,fault    # membership and faults only
  peerctl watch --cluster --json | jq .`,
		Description: `Follows the daemon's event stream (GET /v1/events) and prints one line per
event: its time, the node that reports it, and what happened. Kinds:
member (a member's status changed as that node sees it, with who detected a
failure when known), write (a write accepted there), apply (a peer's entry
arrived, with its latency since the write), sync (an anti-entropy round),
fault (installed or lifted), leader, and with --cluster stream (a node's
stream joined or lost). Under heavy load write and apply events are sampled:
a line then says how many were left out.

With --cluster the events of every reachable node are merged, and nodes
that join later are followed. Colour is used only when the output is a
terminal (and NO_COLOR is unset); --json prints one JSON object per line.

If the stream breaks (the daemon restarts, or drops this client for
falling behind) watch says so on stderr and reconnects, waiting up to 5 s
between attempts; events in the gap are not replayed. With --once it exits
instead (status 1). Ctrl-C ends it.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "kinds", Usage: "only these `KINDS`, comma-separated: " + strings.Join(api.EventKinds, ", ")},
			&cli.BoolFlag{Name: "cluster", Usage: "merge every reachable node's events"},
			&cli.BoolFlag{Name: "once", Usage: "exit when the stream ends instead of reconnecting"},
			nodeFlag("watch"),
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per line (for jq) instead of text"},
		},
		Action: runWatch,
	}
}

func runWatch(c *cli.Context) error {
	if err := wantArgs(c, 0, 0); err != nil {
		return err
	}
	var kinds []string
	if k := strings.TrimSpace(c.String("kinds")); k != "" {
		for _, s := range strings.Split(k, ",") {
			s = strings.ToLower(strings.TrimSpace(s))
			if !slices.Contains(api.EventKinds, s) {
				return fmt.Errorf("--kinds: unknown kind %q: want some of %s", s, strings.Join(api.EventKinds, ", "))
			}
			kinds = append(kinds, s)
		}
	}
	ctx := c.Context
	cl := client(c)
	p := &eventPrinter{w: c.App.Writer, json: c.Bool("json"), color: isTerminal(c.App.Writer)}
	backoff := 500 * time.Millisecond
	for first := true; ; first = false {
		st, err := cl.Events(ctx, c.String("node"), kinds, c.Bool("cluster"))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var se *api.StatusError
			if first || c.Bool("once") || (errors.As(err, &se) && se.Code < 500) {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "watch: %v; retrying in %v\n", err, backoff)
		} else {
			if !first {
				fmt.Fprintf(c.App.ErrWriter, "watch: reconnected to %s\n", cl.Addr())
			}
			backoff = 500 * time.Millisecond
			for ev := range st.C {
				if err := p.print(&ev); err != nil {
					st.Close()
					return err
				}
			}
			err = st.Err()
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("event stream from %s ended", cl.Addr())
			}
			if c.Bool("once") {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "watch: %v; reconnecting in %v\n", err, backoff)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// eventPrinter prints events as text lines or JSON lines.
type eventPrinter struct {
	w     io.Writer
	json  bool
	color bool
}

// Colors of member statuses (ANSI SGR codes).
var statusColors = map[string]string{"alive": "32", "suspect": "33", "failed": "31", "leaving": "90", "left": "90"}

func (p *eventPrinter) print(ev *api.Event) error {
	if p.json {
		return json.NewEncoder(p.w).Encode(ev) // one line: no indent
	}
	_, err := fmt.Fprintln(p.w, p.line(ev))
	return err
}

// line is the text form of ev: time, node, kind, what happened.
func (p *eventPrinter) line(ev *api.Event) string {
	ts := ev.Time
	if t := ev.When(); !t.IsZero() {
		ts = t.Local().Format("15:04:05.000")
	}
	node := p.paint(nodeColor(ev.Node), fmt.Sprintf("%-6s", ev.Node))
	var what string
	switch ev.Kind {
	case api.EventMember:
		what = ev.Member + " " + p.paint(statusColors[ev.Status], ev.Status)
		if ev.DetectedBy != "" {
			what += " (detected by " + ev.DetectedBy + ")"
		}
	case api.EventWrite:
		what = ev.Key + " " + ev.Version
		if ev.Deleted {
			what = ev.Key + " deleted " + ev.Version
		}
	case api.EventApply:
		what = ev.Key + " from " + ev.From
		if ev.Deleted {
			what = ev.Key + " deleted, from " + ev.From
		}
		if ev.LatencyMS != nil {
			what += fmt.Sprintf(" after %.0f ms", *ev.LatencyMS)
		}
	case api.EventSync:
		what = fmt.Sprintf("with %s: sent %d, received %d", ev.Peer, deref(ev.Sent), deref(ev.Received))
		if ev.Error != "" {
			what += ": " + p.paint("31", "failed: "+ev.Error)
		}
	case api.EventFault:
		what = ev.Action + " " + ev.ID + " " + ev.Text
		if ev.Reason != "" {
			what += " (" + ev.Reason + ")"
		}
		if ev.Action == "installed" {
			what = p.paint("31", what)
		}
	case api.EventLeader:
		what = "no leader"
		if ev.Leader != "" {
			what = ev.Leader
		}
		what += fmt.Sprintf(" (term %d)", ev.Term)
	case api.EventStreamStatus:
		what = ev.Peer + " " + ev.Status
		if ev.Reason != "" {
			what += ": " + ev.Reason
		}
	case api.EventDropped:
		what = p.paint("31", ev.Reason)
	default:
		what = "(unknown kind)"
	}
	if ev.Sampled > 0 {
		what += fmt.Sprintf(" [+%d more %s events left out]", ev.Sampled, ev.Kind)
	}
	return fmt.Sprintf("%s %s %-7s %s", ts, node, ev.Kind, what)
}

func (p *eventPrinter) paint(code, s string) string {
	if code == "" {
		return s
	}
	return paint(p.color, code, s)
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// nodeColor gives each node name a stable color.
func nodeColor(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return nodeColors[h.Sum32()%uint32(len(nodeColors))]
}

// dashboardURL is the web dashboard of the daemon whose API is at api.
func dashboardURL(api string) string { return "http://" + api + "/ui/" }
