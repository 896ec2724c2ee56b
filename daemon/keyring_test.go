package daemon

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerctl/peerctl/internal/api"
)

// Rotating the keyring (install, use, remove) through the API while writes
// go on at every node loses nothing and refuses no member's message:
// replication follows the primary key with no downtime. Each node saves
// the new keyring, and a node restarted with the old --encrypt key comes
// back with the saved one. Reference: issue 10, item 1 (rotation).
func TestKeyringRotationUnderWrites(t *testing.T) {
	const newKey = "dGhpcyBpcyBhIG5ldyAzMi1ieXRlIGtleSBmb3IgdSE="
	var nodes []*testNode
	var cfgs []*Config
	for i := 0; i < 3; i++ {
		var join []string
		if i > 0 {
			join = []string{nodes[0].GossipAddr()}
		}
		c := testConfig(t, fmt.Sprintf("n%d", i+1), t.TempDir(), join...)
		c.EncryptKey = clusterKey
		cfgs = append(cfgs, c)
		nodes = append(nodes, startNode(t, c))
	}
	waitFor(t, 20*time.Second, "encrypted cluster", func() error { return allAlive(nodes, 3) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var written atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(halt) // before the nodes stop
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := nodes[i%3].Put(fmt.Sprintf("w-%05d", i), []byte("v")); err != nil {
				t.Errorf("put w-%05d: %v", i, err)
				return
			}
			written.Store(int64(i + 1))
			time.Sleep(2 * time.Millisecond) // a steady stream of writes, not a flood
		}
	}()
	c := api.NewClient(nodes[0].APIAddr())
	for _, op := range []struct{ op, key string }{{"install", newKey}, {"use", newKey}, {"remove", clusterKey}} {
		before := written.Load()
		res, err := c.KeyringOp(ctx, op.op, op.key)
		if err != nil || res.Responses != 3 || res.Errors != 0 {
			t.Fatalf("keyring %s = %+v, %v; want 3 responses, no error", op.op, res, err)
		}
		waitFor(t, 10*time.Second, "writes go on after "+op.op, func() error {
			if written.Load() < before+20 {
				return errors.New("fewer than 20 writes since")
			}
			return nil
		})
	}
	halt()
	n := int(written.Load())
	waitFor(t, 30*time.Second, "every write on every node", func() error {
		for _, nd := range nodes {
			for i := 0; i < n; i++ {
				if _, err := nd.Store().Get(fmt.Sprintf("w-%05d", i)); err != nil {
					return fmt.Errorf("%s lacks w-%05d: %v", nd.Name(), i, err)
				}
			}
		}
		return nil
	})
	t.Logf("%d writes during the rotation, all on all 3 nodes", n)
	for _, nd := range nodes {
		if st := nd.Info().Auth; st.ReplicationRefused != 0 || st.Keys != 1 {
			t.Errorf("%s: refused %v, %d keys; want none refused, 1 key", nd.Name(), st.RefusedBy, st.Keys)
		}
		b, err := os.ReadFile(filepath.Join(nd.cfg.DataDir, keyringFileName))
		var saved []string
		if err != nil || json.Unmarshal(b, &saved) != nil || len(saved) != 1 || saved[0] != newKey {
			t.Errorf("%s saved keyring = %s, %v; want [%q]", nd.Name(), b, err, newKey)
		}
	}
	res, err := c.Keyring(ctx)
	if err != nil || len(res.Keys) != 1 || res.Keys[newKey] != 3 || res.PrimaryKeys[newKey] != 3 {
		t.Errorf("keyring list = %+v, %v; want only the new key, on and primary on 3 nodes", res, err)
	}

	// n3 restarts with the old --encrypt key: the saved keyring wins.
	nodes[2].Shutdown()
	c3 := testConfig(t, "n3", cfgs[2].DataDir, nodes[0].GossipAddr())
	c3.EncryptKey = clusterKey
	n3 := startNode(t, c3)
	nodes[2] = n3
	waitFor(t, 20*time.Second, "n3 back with the saved keyring", func() error { return allAlive(nodes, 3) })
	if _, err := nodes[0].Put("after", []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "replicated to the restarted n3", func() error {
		_, err := n3.Store().Get("after")
		return err
	})
}

// A node without a keyring answers keyring requests with a hint.
func TestKeyringWithoutEncrypt(t *testing.T) {
	n := startNode(t, testConfig(t, "n1", t.TempDir()))
	_, err := api.NewClient(n.APIAddr()).Keyring(context.Background())
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != 400 || !strings.Contains(err.Error(), "--encrypt") {
		t.Errorf("keyring list without --encrypt = %v; want 400 naming --encrypt", err)
	}
}

// Installs through the API stop at maxKeyringKeys with a 400 naming the
// limit; installing a key already held still succeeds.
func TestKeyringInstallBounded(t *testing.T) {
	c := testConfig(t, "n1", t.TempDir())
	c.EncryptKey = clusterKey
	n := startNode(t, c)
	cl := api.NewClient(n.APIAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key := func(i int) string { return base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%032d", i))) }
	for i := 1; i < maxKeyringKeys; i++ { // the --encrypt key is the first
		if _, err := cl.KeyringOp(ctx, "install", key(i)); err != nil {
			t.Fatalf("install key %d of %d: %v", i+1, maxKeyringKeys, err)
		}
	}
	_, err := cl.KeyringOp(ctx, "install", key(maxKeyringKeys))
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != 400 || !strings.Contains(err.Error(), "limit") {
		t.Errorf("install past %d keys = %v; want 400 naming the limit", maxKeyringKeys, err)
	}
	if _, err := cl.KeyringOp(ctx, "install", key(1)); err != nil {
		t.Errorf("reinstall a held key at the limit: %v", err)
	}
	if got := len(n.keyring.GetKeys()); got != maxKeyringKeys {
		t.Errorf("keyring holds %d keys; want %d", got, maxKeyringKeys)
	}
}
