package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/cluster"
)

// The longest unavailability runs from the first failed operation of a
// run of failures to the end of the next answered one.
func TestStatsOutage(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ops := []op{
		{start: at(0), took: 5 * time.Millisecond, ok: true, tries: 2},
		{start: at(20), took: time.Millisecond, ok: false},
		{start: at(40), took: time.Millisecond, ok: false},
		{start: at(60), took: 300 * time.Millisecond, ok: true, tries: 2}, // ends at 360
		{start: at(400), took: 5 * time.Millisecond, ok: true, tries: 3},
		{start: at(420), took: time.Millisecond, ok: false}, // never answered again: ends at 421
	}
	s := statsOf(ops)
	if s.n != 6 || s.failed != 3 || s.rerouted != 1 {
		t.Errorf("statsOf: n %d failed %d rerouted %d; want 6, 3, 1", s.n, s.failed, s.rerouted)
	}
	if s.outage != 340*time.Millisecond {
		t.Errorf("statsOf: outage %v; want 340ms (20ms to 360ms)", s.outage)
	}
	if s.slowest != 300*time.Millisecond {
		t.Errorf("statsOf: slowest %v; want 300ms", s.slowest)
	}
	if got := s.availability(); got != 50 {
		t.Errorf("availability = %v; want 50", got)
	}
}

func TestNines(t *testing.T) {
	for _, c := range []struct {
		s    opStats
		want float64
	}{{opStats{n: 1000, failed: 1}, 3}, {opStats{n: 100, failed: 10}, 1}, {opStats{n: 1000}, 3}, {opStats{}, 0}} {
		if got := nines(c.s); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("nines(%d ops, %d failed) = %v; want %v", c.s.n, c.s.failed, got, c.want)
		}
	}
}

// The router starts at the next node in turn and fails over to the
// following ones until one answers.
func TestRouterFailsOver(t *testing.T) {
	cs := []*api.Client{api.NewClient("a:1"), api.NewClient("b:1"), api.NewClient("c:1")}
	rt := &router{cs: cs}
	down := map[string]bool{"a:1": true, "b:1": true}
	var asked []string
	tries, err := rt.do(context.Background(), func(c *api.Client) error {
		asked = append(asked, c.Addr())
		if down[c.Addr()] {
			return errors.New("refused")
		}
		return nil
	})
	if err != nil || tries != 3 || strings.Join(asked, ",") != "a:1,b:1,c:1" {
		t.Errorf("do = %d tries, %v, asked %v; want 3, nil, a b c", tries, err, asked)
	}
	asked = nil
	down["c:1"] = true
	tries, err = rt.do(context.Background(), func(c *api.Client) error {
		asked = append(asked, c.Addr())
		return errors.New("refused")
	})
	if err == nil || tries != 3 || asked[0] != "b:1" {
		t.Errorf("all down: %d tries, %v, asked %v; want 3 tries, an error, starting at b", tries, err, asked)
	}
}

// A chapter whose step fails returns a *StepError naming the step, reports
// it in --json, and leaves nothing on disk. Its "agents" here exit at
// once, as a broken binary would.
func TestFailedStepCleansUp(t *testing.T) {
	exe := fakeAgent(t, "exit 3")
	tmp := t.TempDir()
	var out, narration bytes.Buffer
	err := Run(context.Background(), "spof", Options{Out: &out, Err: &narration, JSON: true, Quick: true, Exe: exe, TempDir: tmp})
	var se *StepError
	if !errors.As(err, &se) || se.Step != 1 || se.Chapter != "spof" {
		t.Fatalf("Run = %v; want a StepError for spof step 1", err)
	}
	if !strings.Contains(err.Error(), "step 1 (Start node1") || !strings.Contains(err.Error(), "exited unexpectedly") {
		t.Errorf("error %q does not name the step and why", err)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out.String())
	}
	if rep.OK || !strings.HasPrefix(rep.FailedStep, "1. Start node1") {
		t.Errorf("report: ok %v, failed step %q; want not ok, step 1", rep.OK, rep.FailedStep)
	}
	assertEmpty(t, tmp)
}

// An interrupted chapter stops its nodes, removes its directory and says
// it was interrupted.
func TestInterruptCleansUp(t *testing.T) {
	exe := fakeAgent(t, "exec sleep 60")
	tmp := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var narration bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, "availability", Options{Out: &narration, Quick: true, Exe: exe, TempDir: tmp})
	}()
	// Interrupt it once it has started its nodes (it waits for them to
	// form, which these never do).
	err := cluster.WaitFor(context.Background(), 30*time.Second, 10*time.Millisecond, func(context.Context) (bool, string) {
		logs, _ := filepath.Glob(filepath.Join(tmp, "*", "cluster", "node5.log"))
		return len(logs) > 0, "node5 not started yet"
	})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Errorf("Run = %v; want an interrupted error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run still runs 30s after its context ended")
	}
	assertEmpty(t, tmp)
}

func TestUnknownChapter(t *testing.T) {
	err := Run(context.Background(), "nosuch", Options{})
	if err == nil || !strings.Contains(err.Error(), "availability, consistency") {
		t.Errorf("Run(nosuch) = %v; want an error listing the chapters", err)
	}
}

// fakeAgent writes a shell script that stands in for peerctl.
func fakeAgent(t *testing.T, body string) string {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh to stand in for an agent")
	}
	p := filepath.Join(t.TempDir(), "fake-peerctl")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("%s left behind in %s", left[0].Name(), dir)
	}
}
