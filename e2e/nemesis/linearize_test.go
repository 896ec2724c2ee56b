package nemesis

import (
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability checker of the consistent namespace (issue 11,
// item 4). Every operation a client attempted on a consistent key becomes a
// porcupine.Operation over a per-key model of a register with versions and
// compare-and-set:
//
//	state:  absent, or (value, version) with version the raft index of the
//	        key's last change (0 if no client learned it)
//	get     -> absent, or (value, version): must equal the state
//	put v   -> version w: the state becomes (v, w); w is above the state's
//	        version (raft indexes grow along the log, the order of the
//	        linearization)
//	cas N v -> applied with version w, or version_mismatch: applied iff the
//	        state's version is N (N = 0: the key is absent)
//	del     -> the key is absent
//
// Outcomes. An acknowledged operation has its answer as output. An
// operation that provably did not happen (the connection was refused, or
// the daemon refused a request it did not propose: a bad request) is left
// out. Every other write (a timeout, a reset, a 503 such as "no quorum"
// after which the entry may still commit, a daemon killed mid-request) is
// indeterminate: porcupine's convention is an operation that never returns
// (Return = math.MaxInt64) with an output the model accepts whatever the
// state, so the checker may linearize it at any point after its call or
// never observe it. A read without an answer is left out (it changes
// nothing). Values are unique per write, so a value read names the write
// that made it, and its version, if any client learned it, is filled into
// the indeterminate write that wrote it.

// linKind is a consistent operation.
type linKind string

const (
	linGet linKind = "get"
	linPut linKind = "put"
	linCAS linKind = "cas"
	linDel linKind = "del"
)

// linOutcome is what the client learned of a consistent operation.
type linOutcome int

const (
	linOK       linOutcome = iota // answered: for cas, applied
	linMismatch                   // cas refused: version_mismatch (a definite answer)
	linFail                       // provably not done: left out of the check
	linUnknown                    // may or may not have happened
)

func (o linOutcome) String() string {
	return [...]string{"ok", "mismatch", "fail", "unknown"}[o]
}

// linOp is one consistent operation of the history.
type linOp struct {
	Client    int
	Node      string // the daemon it was sent to
	Kind      linKind
	Key       string
	Value     string // put, cas: the value written (unique); get: the value read
	IfVersion uint64 // cas: the expected version, 0 = absent
	Found     bool   // get: the key was present
	Version   uint64 // the version acknowledged (put, cas) or read (get)
	Invoke    time.Duration
	Done      time.Duration
	Outcome   linOutcome
	Err       string
}

func (o linOp) String() string {
	s := fmt.Sprintf("c%d %s", o.Client, o.describe())
	s += fmt.Sprintf(" at %s [+%s..+%s] %s", o.Node, o.Invoke.Round(time.Millisecond), o.Done.Round(time.Millisecond), o.Outcome)
	if o.Err != "" {
		s += ": " + o.Err
	}
	return s
}

// describe is the operation and its answer, as in the visualization.
func (o linOp) describe() string {
	switch o.Kind {
	case linGet:
		if o.Outcome != linOK {
			return fmt.Sprintf("get %s", o.Key)
		}
		if !o.Found {
			return fmt.Sprintf("get %s -> absent", o.Key)
		}
		return fmt.Sprintf("get %s -> %s@%d", o.Key, o.Value, o.Version)
	case linPut:
		return fmt.Sprintf("put %s=%s -> %s", o.Key, o.Value, o.answer())
	case linCAS:
		return fmt.Sprintf("cas %s if@%d =%s -> %s", o.Key, o.IfVersion, o.Value, o.answer())
	}
	return fmt.Sprintf("del %s -> %s", o.Key, o.answer())
}

func (o linOp) answer() string {
	switch {
	case o.Outcome == linOK && o.Kind != linDel:
		return fmt.Sprintf("@%d", o.Version)
	case o.Outcome == linMismatch:
		return "mismatch"
	}
	return o.Outcome.String()
}

// linState is the model's state of one key.
type linState struct {
	Exists  bool
	Value   string
	Version uint64 // 0: not known
}

// linInput and linOutput are what porcupine passes the model.
type linInput struct {
	Kind      linKind
	Key       string
	Value     string
	IfVersion uint64
	// Known is the version of Value if a client learned it (an
	// acknowledgement, a read), for an indeterminate write.
	Known uint64
}

type linOutput struct {
	Unknown bool
	OK      bool // cas applied; false: version_mismatch
	Found   bool
	Value   string
	Version uint64
}

// kvModel is the per-key model; Partition splits a history by key.
var kvModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, o := range h {
			k := o.Input.(linInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], o)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, len(keys))
		for i, k := range keys {
			out[i] = byKey[k]
		}
		return out
	},
	Init: func() any { return linState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(linState), input.(linInput), output.(linOutput)
		written := linState{Exists: true, Value: in.Value, Version: in.Known}
		switch in.Kind {
		case linGet:
			if out.Unknown {
				return true, st
			}
			if !out.Found {
				return !st.Exists, st
			}
			if !st.Exists || st.Value != out.Value || st.Version != 0 && st.Version != out.Version {
				return false, st
			}
			st.Version = out.Version // a read pins a version nobody had learned
			return true, st
		case linPut:
			if out.Unknown {
				return true, written
			}
			if st.Exists && st.Version >= out.Version {
				return false, st // versions grow along the log
			}
			written.Version = out.Version
			return true, written
		case linCAS:
			holds := in.IfVersion == 0 && !st.Exists || in.IfVersion != 0 && st.Exists && st.Version == in.IfVersion
			switch {
			case out.Unknown:
				if holds {
					return true, written
				}
				return true, st
			case out.OK:
				if !holds || st.Exists && st.Version >= out.Version {
					return false, st
				}
				written.Version = out.Version
				return true, written
			default:
				return !holds, st
			}
		}
		return true, linState{} // del, whatever its outcome
	},
	Hash: func(state any) uint64 {
		st := state.(linState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%v|%s|%d", st.Exists, st.Value, st.Version)
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		o := linOp{Kind: in.Kind, Key: in.Key, Value: in.Value, IfVersion: in.IfVersion, Found: out.Found, Version: out.Version}
		switch {
		case out.Unknown:
			o.Outcome = linUnknown
		case in.Kind == linCAS && !out.OK:
			o.Outcome = linMismatch
		}
		if in.Kind == linGet {
			o.Value = out.Value
		}
		return o.describe()
	},
	DescribeState: func(state any) string {
		st := state.(linState)
		if !st.Exists {
			return "absent"
		}
		if st.Version == 0 {
			return st.Value + "@?"
		}
		return fmt.Sprintf("%s@%d", st.Value, st.Version)
	},
}

// linOperations turns a history into porcupine's operations: failed
// operations and unanswered reads left out, indeterminate writes never
// returning, with the versions clients learned filled in.
func linOperations(ops []linOp) []porcupine.Operation {
	known := map[string]uint64{} // value -> its version, where learned
	for _, o := range ops {
		if o.Outcome == linOK && o.Version != 0 && (o.Kind == linPut || o.Kind == linCAS || o.Kind == linGet && o.Found) {
			known[o.Key+"\x00"+o.Value] = o.Version
		}
	}
	var out []porcupine.Operation
	for _, o := range ops {
		if o.Outcome == linFail || o.Kind == linGet && o.Outcome != linOK {
			continue
		}
		in := linInput{Kind: o.Kind, Key: o.Key, IfVersion: o.IfVersion}
		if o.Kind != linGet {
			in.Value = o.Value
			in.Known = known[o.Key+"\x00"+o.Value]
		}
		res := linOutput{Found: o.Found, Version: o.Version, OK: o.Outcome == linOK}
		if o.Kind == linGet {
			res.Value = o.Value
		}
		ret := int64(o.Done)
		if o.Outcome == linUnknown {
			res, ret = linOutput{Unknown: true}, math.MaxInt64
		}
		out = append(out, porcupine.Operation{ClientId: o.Client, Input: in, Call: int64(o.Invoke), Output: res, Return: ret, Metadata: o.Node})
	}
	return out
}

// linResult is the verdict on a history.
type linResult struct {
	Checked    int // operations given to porcupine
	Keys       int // partitions
	Result     porcupine.CheckResult
	Visualized string // the HTML file written, if not linearizable
	Took       time.Duration
}

// checkLinearizable checks the history with porcupine within timeout.
// Unless it is linearizable it writes porcupine's visualization to a file
// in dir and names it in the result.
func checkLinearizable(ops []linOp, timeout time.Duration, dir string) (linResult, error) {
	h := linOperations(ops)
	keys := map[string]bool{}
	for _, o := range h {
		keys[o.Input.(linInput).Key] = true
	}
	t0 := time.Now()
	res, info := porcupine.CheckOperationsVerbose(kvModel, h, timeout)
	r := linResult{Checked: len(h), Keys: len(keys), Result: res, Took: time.Since(t0)}
	if res == porcupine.Ok {
		return r, nil
	}
	f, err := os.CreateTemp(dir, "porcupine-*.html")
	if err != nil {
		return r, fmt.Errorf("write the visualization: %w", err)
	}
	r.Visualized = f.Name()
	if err := porcupine.Visualize(kvModel, info, f); err != nil {
		f.Close()
		return r, fmt.Errorf("write the visualization to %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return r, fmt.Errorf("write the visualization to %s: %w", f.Name(), err)
	}
	return r, nil
}

// visualizationDir is where a failing check writes its HTML: the
// directory NEMESIS_ARTIFACTS names, else the system's temporary
// directory (not the test's: that is removed when the test ends).
func visualizationDir() string {
	if d := os.Getenv("NEMESIS_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return filepath.Join(os.TempDir())
}

// keyHistory is the history of one key, for a failure message.
func keyHistory(ops []linOp, key string, max int) string {
	var lines []string
	for _, o := range ops {
		if o.Key == key && o.Outcome != linFail {
			lines = append(lines, "  "+o.String())
		}
	}
	if len(lines) > max {
		lines = lines[len(lines)-max:]
	}
	return strings.Join(lines, "\n")
}
