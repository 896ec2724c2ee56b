package daemon

import (
	"strings"
	"testing"
	"time"
)

// With --encrypt, members sharing the key form a cluster and replicate;
// a node with another key cannot read their gossip and never joins.
func TestEncryptedGossip(t *testing.T) {
	const key = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s="
	const other = "3Ho4fK1YkUTmV2PoAbp+A6zH2UEv6MUnTDfMJUy/ZKk="
	pair := startClusterWith(t, 2, func(c *Config) { c.EncryptKey = key })
	n1, n2 := pair[0], pair[1]
	if _, err := n1.Put("secret", []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "replicated", func() error {
		_, err := n2.Store().Get("secret")
		return err
	})

	c3 := testConfig(t, "n3", t.TempDir())
	c3.EncryptKey = other
	c3.Join = nil
	n3 := startNode(t, c3)
	if _, err := n3.serf.Join([]string{n1.GossipAddr()}, true); err == nil {
		t.Error("node with another key joined the encrypted cluster")
	}
	for _, m := range n1.Members() {
		if m.Name == "n3" {
			t.Errorf("n1 lists n3 (%s) although its key differs", m.Status)
		}
	}

	bad := testConfig(t, "n4", t.TempDir())
	bad.EncryptKey = "not-base64!"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "peerctl keygen") {
		t.Errorf("Validate(bad key) = %v; want a hint to use peerctl keygen", err)
	}
}
