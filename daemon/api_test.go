package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
)

func TestHTTPAPI(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	c := NewClient(nodes[0].APIAddr())

	// Keys may hold '/', "..", spaces and non-ASCII text.
	keys := []string{"plain", "a/b//c", "../up", "with space?x=1", "ключ/ü"}
	for _, k := range keys {
		if _, err := c.Put(ctx, "", k, []byte("v:"+k)); err != nil {
			t.Fatalf("Put(%q) = %v", k, err)
		}
	}
	for _, k := range keys {
		// Read through n1 from n3: ?node= forwarding.
		waitFor(t, 5*time.Second, "replicated "+k, func() error {
			kv, err := c.Get(ctx, "n3", k)
			if err != nil {
				return err
			}
			if string(kv.Value) != "v:"+k || kv.Origin != "n1" {
				return fmt.Errorf("n3 has %q from %s", kv.Value, kv.Origin)
			}
			return nil
		})
	}
	list, err := NewClient(nodes[1].APIAddr()).List(ctx, "", "a/")
	if err != nil || len(list) != 1 || list[0].Key != "a/b//c" {
		t.Fatalf("List(a/) = %v, %v; want [a/b//c]", list, err)
	}

	all, err := c.GetAll(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("GetAll returned %d nodes, want 3", len(all))
	}
	for _, nk := range all {
		if nk.KV == nil || string(nk.KV.Value) != "v:plain" {
			t.Errorf("GetAll: %s holds %+v", nk.Node, nk.KV)
		}
	}

	// Delete at n2; the key is gone everywhere.
	if res, err := c.Delete(ctx, "n2", "plain"); err != nil || !res.Existed {
		t.Fatalf("Delete = %+v, %v", res, err)
	}
	waitFor(t, 5*time.Second, "delete replicated", func() error {
		for _, nd := range nodes {
			if _, err := NewClient(nd.APIAddr()).Get(ctx, "", "plain"); !errors.Is(err, ErrKeyNotFound) {
				return fmt.Errorf("%s: Get = %v", nd.Name(), err)
			}
		}
		return nil
	})

	// Bad input: clear errors with the right codes, nothing stored.
	tests := []struct {
		name string
		do   func() error
		code int
		msg  string
	}{
		{"value too large", func() error {
			_, err := c.Put(ctx, "", "big", bytes.Repeat([]byte("x"), store.MaxValueLen+1))
			return err
		}, http.StatusRequestEntityTooLarge, "value"},
		{"key too long", func() error {
			_, err := c.Put(ctx, "", strings.Repeat("k", store.MaxKeyLen+1), []byte("v"))
			return err
		}, http.StatusBadRequest, "key is 513 bytes"},
		{"control character", func() error {
			_, err := c.Put(ctx, "", "a\nb", []byte("v"))
			return err
		}, http.StatusBadRequest, "control character"},
		{"unknown node", func() error {
			_, err := c.Get(ctx, "nosuch", "k")
			return err
		}, http.StatusNotFound, "unknown node"},
	}
	for _, tt := range tests {
		err := tt.do()
		var se *StatusError
		if !errors.As(err, &se) || se.Code != tt.code || !strings.Contains(se.Msg, tt.msg) {
			t.Errorf("%s: err = %v; want status %d containing %q", tt.name, err, tt.code, tt.msg)
		}
	}
	if _, err := c.Get(ctx, "", "big"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("rejected value was stored: %v", err)
	}

	// Malformed replication messages are rejected and change nothing.
	before := nodes[0].Store().Digest()
	resp, err := http.Post("http://"+nodes[0].APIAddr()+"/v1/internal/push", "application/octet-stream", strings.NewReader("\x01\xff\xff garbage"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("garbage push: status %d, want 400", resp.StatusCode)
	}
	if after := nodes[0].Store().Digest(); before != after {
		t.Error("garbage push changed the store")
	}

	// Prometheus metrics: our counters and serf/memberlist's own.
	resp, err = http.Get("http://" + nodes[0].APIAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`peerctl_replication_messages_sent_total{kind="push"}`, "peerctl_gossip_packets_sent_total", "peerctl_writes_total 5", "peerctl_memberlist_"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Kill through another node: the target stops; the others mark it failed.
	if err := c.Kill(ctx, "n3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n3 failed on n1 and n2", func() error {
		for _, nd := range nodes[:2] {
			for _, m := range nd.Members() {
				if m.Name == "n3" && m.Status != "failed" {
					return fmt.Errorf("%s sees n3 %s", nd.Name(), m.Status)
				}
			}
		}
		return nil
	})
}
