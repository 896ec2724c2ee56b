package daemon

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestSuspectsReadsMemberlist guards the reflection in suspects: a paused
// node must show as suspect before it is declared failed, and as alive
// again after the pause, without a restart.
func TestSuspectsReadsMemberlist(t *testing.T) {
	nodes := startCluster(t, 3)
	c := NewClient(nodes[0].APIAddr())
	if _, err := c.InjectFault(context.Background(), FaultRequest{Kind: ReqPause, Nodes: []string{"n3"}, For: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	waitFor(t, 20*time.Second, "n3 suspect, then alive again", func() error {
		for _, m := range nodes[0].Members() {
			if m.Name == "n3" {
				seen[m.Status] = true
				if seen["suspect"] && m.Status == "alive" && !nodes[2].faults.Paused() {
					return nil
				}
				return fmt.Errorf("n1 sees n3 %s (seen %v)", m.Status, seen)
			}
		}
		return fmt.Errorf("n1 does not list n3")
	})
}
