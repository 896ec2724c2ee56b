package cli

import (
	"os"
	"strings"
	"testing"
)

func TestDecodeSavedRejectsHostileInput(t *testing.T) {
	for _, in := range []string{``, `{`, `[]`, `"x"`, `{"name": 5}`, `{"join": "x"}`,
		`{"join": [` + strings.Repeat(`"h:1",`, maxSavedJoin) + `"h:1"]}`,
		`{"name": "` + strings.Repeat("x", maxSavedFile) + `"}`} {
		if s, err := decodeSaved([]byte(in)); err == nil {
			t.Errorf("decodeSaved(%.40q) = %+v, nil; want an error", in, s)
		}
	}
	dir := t.TempDir()
	os.WriteFile(savedPath(dir), []byte(`{"name": `), 0o600)
	if _, err := loadSaved(dir); err == nil || !strings.Contains(err.Error(), "is corrupt (fix or delete it)") {
		t.Errorf("loadSaved(corrupt) = %v; want 'is corrupt (fix or delete it)'", err)
	}
}

func FuzzDecodeSaved(f *testing.F) {
	f.Add([]byte(`{"name": "n1", "bind": "127.0.0.1:7946", "api": "127.0.0.1:7947", "profile": "local", "join": ["127.0.0.1:7948"]}`))
	f.Add([]byte(`{"name": "", "join": null}`))
	f.Add([]byte(`{"advertise": "10.0.0.1:7946", "join": [""]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSaved(b)
		if err != nil {
			return
		}
		if len(s.Join) > maxSavedJoin {
			t.Fatalf("%d join addresses; the limit is %d", len(s.Join), maxSavedJoin)
		}
		// What is accepted survives a write and a read unchanged.
		dir := t.TempDir()
		if err := writeSaved(dir, s); err != nil {
			t.Fatal(err)
		}
		again, err := loadSaved(dir)
		if err != nil || !again.equal(s) {
			t.Fatalf("re-read %+v, %v; wrote %+v", again, err, s)
		}
	})
}
