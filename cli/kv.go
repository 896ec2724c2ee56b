package cli

import (
	"time"
	"unicode/utf8"

	"github.com/peerctl/peerctl/internal/api"
)

// kv is a key's entry as `get --json` prints it. Value holds the value when
// it is valid UTF-8; otherwise ValueBase64 holds it, base64 (standard
// encoding), and Value is absent.
type kv struct {
	Key         string    `json:"key"`
	Value       *string   `json:"value,omitempty"`
	ValueBase64 []byte    `json:"value_base64,omitempty"` // encoding/json writes []byte as base64
	Version     string    `json:"version"`
	TS          uint64    `json:"ts,string"` // HLC timestamp as a string: JavaScript loses precision above 2^53
	Origin      string    `json:"origin"`
	Time        time.Time `json:"time"`
	Deleted     bool      `json:"deleted,omitempty"` // a tombstone (only in get --all)
}

func toKV(e *api.KV) *kv {
	if e == nil {
		return nil
	}
	out := &kv{Key: e.Key, Version: e.Version, TS: e.TS, Origin: e.Origin, Time: e.Time, Deleted: e.Deleted}
	if utf8.Valid(e.Value) {
		s := string(e.Value)
		out.Value = &s
	} else {
		out.ValueBase64 = e.Value
	}
	return out
}

// writeResult is what put and del print with --json.
type writeResult struct {
	Key     string `json:"key"`
	Version string `json:"version"`
	TS      uint64 `json:"ts,string"` // HLC timestamp as a string: JavaScript loses precision above 2^53
	Origin  string `json:"origin"`
	Existed *bool  `json:"existed,omitempty"` // del only: a live value was there
}
