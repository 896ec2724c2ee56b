package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/urfave/cli/v2"
)

// savedFile is the name, in the data dir, of the agent's saved flags.
const savedFile = "agent.json"

// savedConfig is DATA_DIR/agent.json: the agent flags that give a node its
// identity and addresses, so `peerctl agent --data-dir DIR` restarts it as
// it was. The encryption key is deliberately not saved.
type savedConfig struct {
	Name      string   `json:"name"`
	Bind      string   `json:"bind"`
	Advertise string   `json:"advertise,omitempty"`
	API       string   `json:"api"`
	Profile   string   `json:"profile"`
	Join      []string `json:"join,omitempty"`
}

func (s *savedConfig) equal(o *savedConfig) bool {
	return o != nil && s.Name == o.Name && s.Bind == o.Bind && s.Advertise == o.Advertise &&
		s.API == o.API && s.Profile == o.Profile && slices.Equal(s.Join, o.Join)
}

func savedPath(dir string) string { return filepath.Join(dir, savedFile) }

// loadSaved reads DIR/agent.json; it returns nil, nil if dir is "" or the
// file does not exist.
func loadSaved(dir string) (*savedConfig, error) {
	if dir == "" {
		return nil, nil
	}
	p := savedPath(dir)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read saved agent config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSavedFile+1))
	if err != nil {
		return nil, fmt.Errorf("read saved agent config: %w", err)
	}
	s, err := decodeSaved(b)
	if err != nil {
		return nil, fmt.Errorf("saved agent config %s is corrupt (fix or delete it): %w", p, err)
	}
	return s, nil
}

// Limits of agent.json: it is small; anything bigger is not ours.
const (
	maxSavedFile = 64 << 10
	maxSavedJoin = 256
)

// decodeSaved parses agent.json: a JSON object of at most maxSavedFile
// bytes with at most maxSavedJoin join addresses. The values themselves
// are checked where flags are (daemon.Config.Validate).
func decodeSaved(b []byte) (*savedConfig, error) {
	if len(b) > maxSavedFile {
		return nil, fmt.Errorf("%d bytes, the limit is %d", len(b), maxSavedFile)
	}
	var s savedConfig
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if len(s.Join) > maxSavedJoin {
		return nil, fmt.Errorf("%d join addresses, the limit is %d", len(s.Join), maxSavedJoin)
	}
	return &s, nil
}

// effectiveSaved merges flags and the saved config: a flag set on the
// command line or by its environment variable wins, then a non-empty saved
// value, then the flag's default. saved may be nil.
func effectiveSaved(c *cli.Context, saved *savedConfig) *savedConfig {
	if saved == nil {
		saved = &savedConfig{}
	}
	str := func(flag, savedVal string) string {
		if c.IsSet(flag) || savedVal == "" {
			return c.String(flag)
		}
		return savedVal
	}
	eff := &savedConfig{
		Name:      str("name", saved.Name),
		Bind:      str("bind", saved.Bind),
		Advertise: str("advertise", saved.Advertise),
		API:       str("api", saved.API),
		Profile:   str("profile", saved.Profile),
		Join:      c.StringSlice("join"),
	}
	if !c.IsSet("join") && len(saved.Join) > 0 {
		eff.Join = slices.Clone(saved.Join)
	}
	return eff
}

// writeSaved replaces DIR/agent.json atomically.
func writeSaved(dir string, s *savedConfig) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("save agent config: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save agent config: %w", err)
	}
	tmp, err := os.CreateTemp(dir, savedFile+".tmp*")
	if err != nil {
		return fmt.Errorf("save agent config: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save agent config: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save agent config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save agent config: %w", err)
	}
	if err := os.Rename(tmp.Name(), savedPath(dir)); err != nil {
		return fmt.Errorf("save agent config: %w", err)
	}
	return nil
}
