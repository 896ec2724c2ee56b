package daemon

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/peerctl/peerctl/store"
)

// One sync request naming every bucket and holding no summaries (what a new
// empty node sends, and what anyone can send) costs the answering node
// about one reply's worth of memory, not its whole store. Before, the node
// read every entry it would give (up to 4 MiB of keys, values not counted)
// and trimmed afterwards: 3000 values of 60 KiB were read, 180 MB, for a
// 4 MiB reply, and four such requests took a daemon from 390 MB to 655 MB.
// Reference: issue 7, "Bounded everything".
func TestSyncReplyReadsOnlyWhatItSends(t *testing.T) {
	nd := startNode(t, testConfig(t, "n1", t.TempDir()))
	const n, size = 2000, 60 << 10 // 120 MB of values
	v := bytes.Repeat([]byte("v"), size)
	for i := 0; i < n; i++ {
		if _, err := nd.Put(fmt.Sprintf("big%04d", i), v); err != nil {
			t.Fatal(err)
		}
	}
	all := make([]int, store.NumBuckets)
	for i := range all {
		all[i] = i
	}
	body := store.SyncReq{Buckets: all}.Encode()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	req, err := http.NewRequest("POST", "http://"+nd.APIAddr()+"/v1/internal/sync", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("sync = %d, %v", resp.StatusCode, err)
	}
	m, err := store.DecodeSyncReply(reply)
	if err != nil {
		t.Fatal(err)
	}
	es := m.Entries
	if len(es) == 0 || len(reply) > syncChunk+4096 || !m.More {
		t.Errorf("reply: %d entries, %d bytes, more=%v; want some entries, at most %d bytes, more", len(es), len(reply), m.More, syncChunk)
	}
	// Allocated by the whole process during the call: the reply (4 MiB,
	// encoded and read back here) and what was read to build it.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("sync reply: %d entries, %d KiB; allocated %d MiB meanwhile (store holds %d MiB)", len(es), len(reply)>>10, alloc>>20, n*size>>20)
	if alloc > 64<<20 {
		t.Errorf("answering one sync allocated %d MiB; want < 64 MiB (the store holds %d MiB)", alloc>>20, n*size>>20)
	}
}
