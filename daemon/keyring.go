package daemon

// The gossip keyring: one memberlist.Keyring, shared by memberlist (gossip
// encryption) and the replication envelope (envelope.go), so a key change
// reaches both at once. It starts from --encrypt, or from
// DATA_DIR/keyring.json when that exists: serf rewrites that file (a JSON
// array of base64 keys, the primary first) after every change made through
// its key manager, so a restarted node keeps rotated keys, as serf's own
// agent does. The saved keyring wins over --encrypt.
//
// Rotation is serf's, cluster-wide through serf queries:
//
//	GET  /v1/keyring           KeyringResult: each key and how many nodes hold it
//	POST /v1/keyring/install   {"key": "BASE64"}: every node adds the key
//	POST /v1/keyring/use       {"key": "BASE64"}: every node seals with it
//	POST /v1/keyring/remove    {"key": "BASE64"}: every node drops it (not the primary)
//
// Install, use, then remove: nodes accept every installed key, so
// replication and gossip carry on while the primary changes.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/peerctl/peerctl/internal/api"
)

// keyringFileName is the saved keyring in the data dir.
const keyringFileName = "keyring.json"

// maxKeyringFile bounds the saved keyring read at start.
const maxKeyringFile = 64 << 10

// maxKeyringKeys bounds the keys an install through the API may leave in
// the keyring. A rotation needs two; without a bound, installs grow the
// saved keyring past maxKeyringFile (about 1400 keys: the agent then
// refuses to start) and make every undecryptable gossip packet cost one
// decryption attempt per key.
const maxKeyringKeys = 16

// KeyringResult is the API's reply to keyring requests.
type KeyringResult = api.KeyringResult

// keyringFile is where serf saves the keyring; "" in memory.
func (a *Agent) keyringFile() string {
	if a.cfg.InMemory || a.keyring == nil {
		return ""
	}
	return filepath.Join(a.cfg.DataDir, keyringFileName)
}

// openKeyring sets a.keyring and a.seal from the saved keyring or
// --encrypt; both stay nil without either.
func (a *Agent) openKeyring() error {
	key, err := a.cfg.key()
	if err != nil {
		return err
	}
	var keys [][]byte
	if !a.cfg.InMemory {
		f := filepath.Join(a.cfg.DataDir, keyringFileName)
		saved, err := loadKeyring(f)
		if err != nil {
			return fmt.Errorf("keyring %s: %w (remove the file to start from --encrypt again)", f, err)
		}
		if saved != nil {
			keys = saved
			a.log.Info("using the saved keyring", "file", f, "keys", len(saved))
			if key != nil && !containsKey(saved, key) {
				a.log.Warn("the --encrypt key is not in the saved keyring (rotated since?): using the saved keyring", "file", f)
			}
		}
	}
	if keys == nil && key != nil {
		keys = [][]byte{key}
	}
	if keys == nil {
		return nil
	}
	kr, err := memberlist.NewKeyring(keys[1:], keys[0])
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	a.keyring = kr
	a.seal = newSealer(kr)
	return nil
}

// loadKeyring reads a saved keyring: nil, nil if there is none.
func loadKeyring(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyringFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyringFile {
		return nil, fmt.Errorf("over %d bytes", maxKeyringFile)
	}
	var enc []string
	if err := json.Unmarshal(b, &enc); err != nil {
		return nil, fmt.Errorf("not a JSON array of base64 keys: %w", err)
	}
	if len(enc) == 0 {
		return nil, fmt.Errorf("no key in it")
	}
	keys := make([][]byte, 0, len(enc))
	for i, e := range enc {
		k, err := decodeKey(e)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// decodeKey decodes and checks one base64 gossip key.
func decodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("not base64: %v (make a key with `peerctl keygen`)", err)
	}
	if n := len(k); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("key is %d bytes, want 16, 24 or 32 (make one with `peerctl keygen`)", n)
	}
	return k, nil
}

func containsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if string(x) == string(k) {
			return true
		}
	}
	return false
}

// keyringRoutes registers the keyring endpoints.
func (s *httpServer) keyringRoutes() {
	s.mux.HandleFunc("GET /v1/keyring", s.keyringOp)
	s.mux.HandleFunc("POST /v1/keyring/{op}", s.keyringOp)
}

// keyringOp lists the keyring, or installs, uses or removes a key on
// every member through serf's key manager.
func (s *httpServer) keyringOp(w http.ResponseWriter, r *http.Request) {
	if s.a.keyring == nil {
		writeError(w, http.StatusBadRequest, errNoKeyring)
		return
	}
	km := s.a.serf.KeyManager()
	op := r.PathValue("op")
	var (
		resp *serf.KeyResponse
		err  error
	)
	if r.Method == http.MethodGet {
		op = "list"
		resp, err = km.ListKeys()
	} else {
		var req api.KeyringRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			writeError(w, bodyErrorCode(err), fmt.Errorf("bad keyring request: want {\"key\": \"BASE64\"}: %w", err))
			return
		}
		if _, err := decodeKey(req.Key); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("keyring %s: %w", op, err))
			return
		}
		switch op {
		case "install":
			if k, _ := decodeKey(req.Key); !containsKey(s.a.keyring.GetKeys(), k) && len(s.a.keyring.GetKeys()) >= maxKeyringKeys {
				writeError(w, http.StatusBadRequest, fmt.Errorf("keyring install: the keyring holds %d keys, the limit: remove unused ones first (`peerctl keyring remove`)", maxKeyringKeys))
				return
			}
			resp, err = km.InstallKey(req.Key)
		case "use":
			resp, err = km.UseKey(req.Key)
		case "remove":
			resp, err = km.RemoveKey(req.Key)
		default:
			writeError(w, http.StatusNotFound, fmt.Errorf("keyring: unknown operation %q: want install, use or remove", op))
			return
		}
	}
	out := KeyringResult{Op: op}
	if resp != nil {
		out.Keys, out.PrimaryKeys = resp.Keys, resp.PrimaryKeys
		out.Nodes, out.Responses, out.Errors = resp.NumNodes, resp.NumResp, resp.NumErr
		for node, msg := range resp.Messages {
			out.Messages = append(out.Messages, api.NodeMessage{Node: node, Message: msg})
		}
		sort.Slice(out.Messages, func(i, j int) bool { return out.Messages[i].Node < out.Messages[j].Node })
	}
	if err != nil {
		out.Error = err.Error()
		s.a.log.Warn("keyring "+op+" incomplete", "err", err, "nodes", out.Nodes, "responses", out.Responses, "errors", out.Errors)
		writeJSON(w, http.StatusBadGateway, out)
		return
	}
	if op != "list" {
		s.a.log.Info("keyring "+op+" applied cluster-wide", "nodes", out.Nodes, "responses", out.Responses)
	}
	writeJSON(w, http.StatusOK, out)
}
