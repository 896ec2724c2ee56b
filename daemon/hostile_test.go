package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
	"github.com/peerctl/peerctl/store/badger"
)

// Issue 7, item 1: a forged push with a version far in the future must not
// poison any node's clock. Two forged entries, one at the greatest timestamp
// Validate accepts (2^63-1) and one a century ahead, are POSTed raw to a
// node's internal push endpoint. They must be refused; later writes on
// either node must stay readable and replicated with versions near the wall
// clock; and both nodes must restart from their data dirs with their data.
func TestForgedFutureVersionsAreRefused(t *testing.T) {
	nodes := startCluster(t, 2)
	n1 := nodes[0]
	if _, err := n1.Put("before", []byte("acknowledged")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the first write on both nodes", func() error { return converged(nodes) })

	century := time.Now().AddDate(100, 0, 0)
	forged := []store.Entry{
		{Key: "forged/max", Value: []byte("x"), Version: store.Version{TS: store.MaxTimestamp, Node: "mallory"}},
		{Key: "forged/century", Value: []byte("x"), Version: store.Version{TS: store.MakeTimestamp(century.UnixMilli(), 0), Node: "mallory"}},
	}
	req, err := http.NewRequest("POST", "http://"+n1.APIAddr()+"/v1/internal/push", bytes.NewReader(store.EncodeBatch(forged)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("forged push = %d %s; want a 4xx refusal", resp.StatusCode, body)
	}
	if got := n1.Info().Replication.MalformedDropped; got == 0 {
		t.Errorf("forged push not counted in malformed_dropped")
	}

	// Later writes on both nodes: readable everywhere, stamped near now.
	var writes []store.Entry
	for i, nd := range nodes {
		e, err := nd.Put(fmt.Sprintf("after/%d", i), []byte("still works"))
		if err != nil {
			t.Fatalf("%s: Put after the forged push: %v", nd.Name(), err)
		}
		if skew := time.Until(e.Version.TS.Time()); skew > time.Minute {
			t.Errorf("%s: write after the forged push stamped %v, %v ahead of the wall clock", nd.Name(), e.Version, skew)
		}
		writes = append(writes, e)
	}
	waitFor(t, 10*time.Second, "later writes readable on both nodes", func() error {
		for _, nd := range nodes {
			for _, w := range writes {
				got, err := nd.Store().Get(w.Key)
				if err != nil {
					return fmt.Errorf("%s: Get(%s): %v", nd.Name(), w.Key, err)
				}
				if got.Version != w.Version {
					return fmt.Errorf("%s: %s at %v, want %v", nd.Name(), w.Key, got.Version, w.Version)
				}
			}
		}
		return converged(nodes)
	})
	for _, nd := range nodes {
		for _, f := range forged {
			if _, err := nd.Store().Get(f.Key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: forged key %s: err = %v; want not found", nd.Name(), f.Key, err)
			}
		}
	}

	// Both nodes restart from their data dirs and hold what they had.
	want := append([]string{"before"}, writes[0].Key, writes[1].Key)
	for i, nd := range nodes {
		cfg := nd.cfg
		if err := nd.Shutdown(); err != nil {
			t.Fatalf("%s: Shutdown: %v", nd.Name(), err)
		}
		rcfg := testConfig(t, cfg.Name, cfg.DataDir)
		rcfg.Bind = nd.GossipAddr()
		nodes[i] = startNode(t, rcfg)
	}
	waitFor(t, 15*time.Second, "restarted nodes see each other", func() error { return allAlive(nodes, 2) })
	for _, nd := range nodes {
		for _, k := range want {
			if _, err := nd.Store().Get(k); err != nil {
				t.Errorf("%s after restart: Get(%s): %v", nd.Name(), k, err)
			}
		}
	}
	e, err := nodes[1].Put("after-restart", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a write after restart replicated", func() error {
		got, err := nodes[0].Store().Get("after-restart")
		if err != nil {
			return err
		}
		if got.Version != e.Version {
			return fmt.Errorf("n1 has %v, want %v", got.Version, e.Version)
		}
		return nil
	})
}

// A data dir holding a record from the future (as a store poisoned before
// versions were bounded would) still starts: the record is set aside, the
// clock is not dragged forward, and anti-entropy restores the key from a
// peer.
func TestFutureRecordOnDiskIsSetAsideAndRepaired(t *testing.T) {
	nodes := startCluster(t, 2)
	good, err := nodes[0].Put("k", []byte("good"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "k on both nodes", func() error { return converged(nodes) })

	n2 := nodes[1]
	cfg := n2.cfg
	if err := n2.Shutdown(); err != nil {
		t.Fatal(err)
	}
	be, err := badger.Open(filepath.Join(cfg.DataDir, "store"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	poison := store.Entry{Key: "k", Value: []byte("poison"), Version: store.Version{
		TS: store.MakeTimestamp(time.Now().AddDate(100, 0, 0).UnixMilli(), 0), Node: "mallory"}}
	if err := be.Put([]store.Entry{poison}); err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}

	rcfg := testConfig(t, cfg.Name, cfg.DataDir)
	rcfg.Bind = n2.GossipAddr()
	nodes[1] = startNode(t, rcfg)
	if q := nodes[1].Info().Store.Quarantined; q != 1 {
		t.Fatalf("restarted node set aside %d records; want 1", q)
	}
	e, err := nodes[1].Put("fresh", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if ahead := time.Until(e.Version.TS.Time()); ahead > time.Minute {
		t.Fatalf("write after restart stamped %v, %v ahead: the set-aside record moved the clock", e.Version, ahead)
	}
	waitFor(t, 15*time.Second, "k repaired from the peer", func() error {
		got, err := nodes[1].Store().Get("k")
		if err != nil {
			return err
		}
		if got.Version != good.Version || string(got.Value) != "good" {
			return fmt.Errorf("n2 has %q at %v", got.Value, got.Version)
		}
		return converged(nodes)
	})
}

func TestMaxClockSkewValidated(t *testing.T) {
	for _, d := range []time.Duration{-time.Second, 0, 25 * time.Hour} {
		cfg := testConfig(t, "n", t.TempDir())
		cfg.MaxClockSkew = d
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--max-clock-skew") {
			t.Errorf("Validate with MaxClockSkew %v = %v; want an error naming --max-clock-skew", d, err)
		}
	}
	if got := DefaultConfig().MaxClockSkew; got != time.Minute {
		t.Errorf("default MaxClockSkew = %v; want 1m", got)
	}
}

// A key whose record was set aside on this node reads as what it is, not
// as a key that never existed: 503 with code key_set_aside and a message
// that says the copy was damaged and how it comes back. A key never
// written still reads 404, and a write brings the key back. Before, the
// set-aside key read "key not found" (404), which says an acknowledged
// write is gone. Reference: issue 7, item 1 (quarantine) and the
// reviewer's probe "does get on that node say something clear".
func TestGetOfSetAsideKeySaysSo(t *testing.T) {
	dir := t.TempDir()
	be, err := badger.Open(filepath.Join(dir, "store"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	poison := store.Entry{Key: "k", Value: []byte("poison"), Version: store.Version{
		TS: store.MakeTimestamp(time.Now().AddDate(100, 0, 0).UnixMilli(), 0), Node: "mallory"}}
	if err := be.Put([]store.Entry{poison}); err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	nd := startNode(t, testConfig(t, "n1", dir))
	if q := nd.Info().Store.Quarantined; q != 1 {
		t.Fatalf("node set aside %d records; want 1", q)
	}
	get := func(key string) (int, apiError) {
		t.Helper()
		resp, err := http.Get("http://" + nd.APIAddr() + "/v1/kv/" + key)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ae apiError
		json.NewDecoder(resp.Body).Decode(&ae)
		return resp.StatusCode, ae
	}
	code, ae := get("k")
	if code != http.StatusServiceUnavailable || ae.Code != codeKeySetAside || !strings.Contains(ae.Error, "damaged on disk and set aside") {
		t.Errorf("GET set-aside key = %d %+v; want 503 %s saying it was set aside", code, ae, codeKeySetAside)
	}
	if code, ae := get("never"); code != http.StatusNotFound || ae.Code != codeKeyNotFound {
		t.Errorf("GET unknown key = %d %+v; want 404 %s", code, ae, codeKeyNotFound)
	}
	if _, err := nd.Put("k", []byte("again")); err != nil {
		t.Fatal(err)
	}
	if code, ae := get("k"); code != http.StatusOK {
		t.Errorf("GET after a new write = %d %+v; want 200", code, ae)
	}
	if _, _, err := nd.Delete("k"); err != nil {
		t.Fatal(err)
	}
	if code, ae := get("k"); code != http.StatusNotFound || ae.Code != codeKeyNotFound {
		t.Errorf("GET after delete = %d %+v; want 404 %s (deleted, not set aside)", code, ae, codeKeyNotFound)
	}
}
