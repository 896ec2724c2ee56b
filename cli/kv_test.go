package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/peerctl/peerctl/internal/api"
)

func TestPutGetRoundTrip(t *testing.T) {
	f := newFakeDaemon(t)
	out := mustRun(t, f.addr(), "", "put", "greeting", "hello")
	if out != "OK key=greeting version=v1@n1 origin=n1\n" {
		t.Errorf("put = %q; want OK key=greeting version=v1@n1 origin=n1", out)
	}
	// get adds a newline to a value without one.
	if out := mustRun(t, f.addr(), "", "get", "greeting"); out != "hello\n" {
		t.Errorf("get = %q; want %q", out, "hello\n")
	}
	// A key with a slash survives path escaping.
	mustRun(t, f.addr(), "", "put", "config/mode", "fast")
	if out := mustRun(t, f.addr(), "", "get", "config/mode"); out != "fast\n" {
		t.Errorf("get config/mode = %q; want %q", out, "fast\n")
	}
}

// "put KEY -" stores stdin exactly, and get prints it exactly: no newline
// is added to a value that ends with one.
func TestPutStdin(t *testing.T) {
	f := newFakeDaemon(t)
	const text = "line one\nline two\n"
	mustRun(t, f.addr(), text, "put", "notes", "-")
	if got := string(f.kv["notes"].Value); got != text {
		t.Errorf("stored %q; want %q", got, text)
	}
	if out := mustRun(t, f.addr(), "", "get", "notes"); out != text {
		t.Errorf("get = %q; want %q", out, text)
	}
}

// A binary value comes back as value_base64 in --json; text as value.
func TestGetJSON(t *testing.T) {
	f := newFakeDaemon(t)
	bin := []byte{0xff, 0x00, 0xfe}
	mustRun(t, f.addr(), string(bin), "put", "bin", "-")
	mustRun(t, f.addr(), "", "put", "txt", "héllo")

	var got map[string]any
	out := mustRun(t, f.addr(), "", "get", "--json", "bin")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got["value"]; ok {
		t.Errorf("binary value has a value field: %v", got)
	}
	if b, _ := base64.StdEncoding.DecodeString(got["value_base64"].(string)); !bytes.Equal(b, bin) {
		t.Errorf("value_base64 decodes to %x; want %x", b, bin)
	}

	got = nil
	out = mustRun(t, f.addr(), "", "get", "--json", "txt")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"key", "value", "version", "ts", "origin", "time"} {
		if _, ok := got[k]; !ok {
			t.Errorf("get --json lacks %q: %s", k, out)
		}
	}
	if got["value"] != "héllo" || got["key"] != "txt" || got["origin"] != "n1" {
		t.Errorf("get --json = %v; want key txt, value héllo, origin n1", got)
	}
}

// A missing key is an error, status 1, with the key quoted; nothing on stdout.
func TestGetMissing(t *testing.T) {
	f := newFakeDaemon(t)
	r := run(t, f.addr(), "", "get", "nope")
	if r.code != 1 || r.err == nil || r.err.Error() != `key "nope" not found` {
		t.Errorf("get nope: code %d, err %v; want 1, key \"nope\" not found", r.code, r.err)
	}
	if !errors.Is(r.err, api.ErrKeyNotFound) {
		t.Errorf("get nope: err %v does not wrap api.ErrKeyNotFound", r.err)
	}
	if r.stdout != "" {
		t.Errorf("get nope printed %q", r.stdout)
	}
	r = run(t, f.addr(), "", "get", "--node", "n2", "nope")
	if r.err == nil || r.err.Error() != `key "nope" not found at node n2` {
		t.Errorf("get --node n2 nope: err %v", r.err)
	}
}

// The daemon's error for an over-long value reaches the user as one line.
func TestPutTooLong(t *testing.T) {
	f := newFakeDaemon(t)
	r := run(t, f.addr(), strings.Repeat("x", maxValue+1), "put", "big", "-")
	if r.err == nil || !strings.Contains(r.err.Error(), "over the 64 KiB limit") || strings.Contains(r.err.Error(), "\n") {
		t.Errorf("put over 64 KiB: err %v; want the daemon's one-line error", r.err)
	}
}

func TestNodeFlagReachesDaemon(t *testing.T) {
	f := newFakeDaemon(t)
	for _, args := range [][]string{
		{"put", "--node", "n2", "k", "v"},
		{"get", "--node", "n2", "k"},
		{"keys", "--node", "n2"},
		{"del", "--node", "n2", "k"},
		{"info", "--node", "n2"},
	} {
		mustRun(t, f.addr(), "", args...)
		if got := f.lastNode(); got != "n2" {
			t.Errorf("%q sent node=%q; want n2", args, got)
		}
	}
}

func TestKeys(t *testing.T) {
	f := newFakeDaemon(t)
	for _, k := range []string{"b", "a/2", "a/1"} {
		mustRun(t, f.addr(), "", "put", k, "v")
	}
	if out := mustRun(t, f.addr(), "", "keys"); out != "a/1\na/2\nb\n" {
		t.Errorf("keys = %q; want a/1, a/2, b", out)
	}
	if out := mustRun(t, f.addr(), "", "keys", "a/"); out != "a/1\na/2\n" {
		t.Errorf("keys a/ = %q; want a/1, a/2", out)
	}
	var got []keyInfo
	out := mustRun(t, f.addr(), "", "keys", "--json", "b")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Key != "b" || got[0].Version == "" || got[0].Origin != "n1" {
		t.Errorf("keys --json b = %+v; want one entry for b", got)
	}
	if out := mustRun(t, f.addr(), "", "keys", "--json", "zzz"); strings.TrimSpace(out) != "[]" {
		t.Errorf("keys --json zzz = %q; want []", out)
	}
}

func TestDel(t *testing.T) {
	f := newFakeDaemon(t)
	mustRun(t, f.addr(), "", "put", "k", "v")
	if out := mustRun(t, f.addr(), "", "rm", "k"); !strings.HasPrefix(out, "OK deleted key=k version=") || strings.Contains(out, "no live value") {
		t.Errorf("rm k = %q", out)
	}
	if r := run(t, f.addr(), "", "get", "k"); r.code != 1 {
		t.Errorf("get after delete: code %d; want 1", r.code)
	}
	var got map[string]any
	out := mustRun(t, f.addr(), "", "delete", "--json", "k")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got["existed"] != false || got["key"] != "k" {
		t.Errorf("delete --json of a deleted key = %v; want existed false", got)
	}
}

func kvAt(version string, value string) *api.KV {
	return &api.KV{Key: "k", Value: []byte(value), Version: version, Origin: "n1"}
}

// get --all prints a row per node and says whether the alive ones agree.
func TestGetAll(t *testing.T) {
	long := strings.Repeat("a", 100)
	tests := []struct {
		name string
		rows []api.NodeKV
		last string
	}{
		{"converged", []api.NodeKV{
			{Node: "n2", Status: "alive", KV: kvAt("v2", long)},
			{Node: "n1", Status: "alive", KV: kvAt("v2", long)},
			{Node: "n3", Status: "failed", Error: "connection refused"},
		}, "converged: all 2 alive nodes hold version v2"},
		{"all missing", []api.NodeKV{
			{Node: "n1", Status: "alive"},
			{Node: "n2", Status: "alive"},
		}, "converged: all 2 alive nodes lack the key"},
		{"diverged", []api.NodeKV{
			{Node: "n1", Status: "alive", KV: kvAt("v2", "new")},
			{Node: "n2", Status: "alive", KV: kvAt("v1", "old")},
			{Node: "n3", Status: "alive"},
			{Node: "n4", Status: "alive", KV: kvAt("v2", "new")},
		}, "diverged: version v2 on n1, n4; version v1 on n2; missing on n3"},
		{"unreachable", []api.NodeKV{
			{Node: "n1", Status: "alive", KV: kvAt("v2", "new")},
			{Node: "n2", Status: "alive", Error: "timeout"},
		}, "diverged: version v2 on n1; no answer from n2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeDaemon(t)
			f.all["k"] = tt.rows
			out := mustRun(t, f.addr(), "", "get", "--all", "k")
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if len(lines) != len(tt.rows)+2 {
				t.Fatalf("get --all printed %d lines; want header, %d rows, summary", len(lines), len(tt.rows))
			}
			if got := strings.Fields(lines[0]); strings.Join(got, " ") != "NODE STATUS VALUE VERSION ORIGIN" {
				t.Errorf("header = %q", lines[0])
			}
			if !strings.HasPrefix(lines[1], "n1 ") {
				t.Errorf("first row = %q; want n1 (rows sorted by node)", lines[1])
			}
			if got := lines[len(lines)-1]; got != tt.last {
				t.Errorf("summary = %q; want %q", got, tt.last)
			}
			for _, l := range lines {
				if strings.Contains(l, long) {
					t.Errorf("row %q shows the whole 100-byte value; want it cut", l)
				}
			}
		})
	}
}

func TestGetAllCells(t *testing.T) {
	f := newFakeDaemon(t)
	f.all["k"] = []api.NodeKV{
		{Node: "n1", Status: "alive", KV: kvAt("v1", "a\tb")},
		{Node: "n2", Status: "alive"},
		{Node: "n3", Status: "alive", Error: "dial tcp: refused"},
		{Node: "n4", Status: "alive", KV: &api.KV{Key: "k", Version: "v2", Origin: "n4", Deleted: true}},
	}
	out := mustRun(t, f.addr(), "", "get", "--all", "k")
	for _, want := range []string{`a\tb`, "(missing)", "error: dial tcp: refused", "(deleted)"} {
		if !strings.Contains(out, want) {
			t.Errorf("get --all lacks %q:\n%s", want, out)
		}
	}

	var got []map[string]any
	out = mustRun(t, f.addr(), "", "get", "--all", "--json", "k")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[1]["kv"] != nil || got[2]["error"] != "dial tcp: refused" {
		t.Errorf("get --all --json = %v", got)
	}
	if kv, _ := got[0]["kv"].(map[string]any); kv["value"] != "a\tb" {
		t.Errorf("n1 kv = %v; want value a\\tb", got[0]["kv"])
	}
	if r := run(t, f.addr(), "", "get", "--all", "--node", "n2", "k"); r.err == nil {
		t.Error("get --all --node: no error")
	}
}
