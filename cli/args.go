package cli

// Command-line normalisation, in one place for every command: urfave/cli v2
// stops reading flags at a command's first argument and reads the global
// flags only before the command name, so `peerctl get greeting --all` and
// `peerctl members --addr HOST:PORT` would fail. Run reorders the command
// line first, using each command's own flag definitions; error messages
// about commands, durations and addresses are made here too.

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// Run runs app with args (args[0] is the program name) after reordering
// them with ReorderArgs. main.go and the tests run the App through it. The
// command line as typed, from the command name on, is kept in
// app.Metadata[TypedCommand] (fault commands record it as their reason).
func Run(ctx context.Context, app *cli.App, args []string) error {
	out, cmd := reorderArgs(app, args)
	if cmd > 0 {
		if app.Metadata == nil {
			app.Metadata = map[string]any{}
		}
		app.Metadata[TypedCommand] = strings.Join(args[cmd:], " ")
	}
	return app.RunContext(ctx, out)
}

// TypedCommand is the app.Metadata key of the command line as typed.
const TypedCommand = "peerctl.typed"

// ReorderArgs returns args with every flag moved before the arguments of
// the command it belongs to, and the global flags (--addr) found after
// the command name moved before it, so that flags may be given before or
// after arguments; a command's own switch (a flag without a value, such as
// --json) may also come before the command name. It knows from each flag's definition whether the flag
// takes a value ("--node n2") or not ("--all"; "--all=false" is one
// token). "--" ends the flags: what follows is arguments, and a "--" is
// kept in front of the arguments if one of them begins with "-" ("put k --
// -v"). A lone "-" (stdin) is an argument. An unknown command, or an
// unknown flag before the command name, leaves args as they are, for the
// App to report; an unknown flag after it stays with the command's flags.
func ReorderArgs(app *cli.App, args []string) []string {
	out, _ := reorderArgs(app, args)
	return out
}

// reorderArgs is ReorderArgs; it also returns the index in args of the
// command name, or 0 if args were left as they are.
func reorderArgs(app *cli.App, args []string) ([]string, int) {
	if len(args) < 2 || args[len(args)-1] == "--generate-bash-completion" {
		return args, 0
	}
	global := flagTable(app.Flags)
	lead := flagTable(app.Flags, "help", "h", "version", "v")
	out := []string{args[0]}
	var early []string // a command's own switches before its name: `peerctl --json members`
	i := 1
	for ; i < len(args) && isFlag(args[i]); i++ {
		takes, ok := lead[flagName(args[i])]
		if !ok {
			early = append(early, args[i])
			continue
		}
		out = append(out, args[i])
		if takes && !strings.Contains(args[i], "=") && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	if i == len(args) || args[i] == "--" {
		return args, 0
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args, 0
	}
	own := flagTable(cmd.Flags)
	for _, f := range early {
		if takes, ok := own[flagName(f)]; !ok || takes {
			return args, 0 // not a switch of this command: the App says so
		}
	}
	moved, rest := reorderCommand(cmd, global, append(early, args[i+1:]...))
	out = append(out, moved...)
	out = append(out, args[i])
	return append(out, rest...), i
}

// reorderCommand reorders one command's tokens: its flags, then its
// arguments (or a subcommand and its tokens). Global flags found among
// them are returned apart, to go before the command name. With --help or
// -h, the arguments are dropped: help is about the command.
func reorderCommand(cmd *cli.Command, global map[string]bool, tokens []string) (globals, out []string) {
	own := flagTable(cmd.Flags, "help", "h")
	var flags, argv []string
	dashed := false // an argument begins with "-"
	help := false
	dangling := ""
	for j := 0; j < len(tokens); j++ {
		tok := tokens[j]
		if tok == "--" {
			for _, a := range tokens[j+1:] {
				dashed = dashed || (strings.HasPrefix(a, "-") && a != "-")
			}
			argv = append(argv, tokens[j+1:]...)
			break
		}
		if !isFlag(tok) {
			if len(argv) == 0 && len(cmd.Subcommands) > 0 {
				if sub := cmd.Command(tok); sub != nil {
					g, rest := reorderCommand(sub, global, tokens[j+1:])
					out = append(append(flags, tok), rest...)
					return append(globals, g...), out
				}
			}
			argv = append(argv, tok)
			continue
		}
		name := flagName(tok)
		help = help || name == "help" || name == "h"
		takes, ok := own[name]
		dst := &flags
		if !ok {
			if gt, isGlobal := global[name]; isGlobal {
				takes, dst = gt, &globals
			}
		}
		if takes && !strings.Contains(tok, "=") && j+1 == len(tokens) {
			dangling = tok // its value is missing: left last, for urfave to say so
			continue
		}
		*dst = append(*dst, tok)
		if takes && !strings.Contains(tok, "=") {
			j++
			*dst = append(*dst, tokens[j])
		}
	}
	out = flags
	if help {
		return globals, out
	}
	if dashed {
		out = append(out, "--")
	}
	out = append(out, argv...)
	if dangling != "" {
		out = append(out, dangling)
	}
	return globals, out
}

// flagTable maps every name of flags (and of the extra boolean flags) to
// whether it takes a value.
func flagTable(flags []cli.Flag, bools ...string) map[string]bool {
	t := map[string]bool{}
	for _, b := range bools {
		t[b] = false
	}
	for _, f := range flags {
		takes := true
		if d, ok := f.(cli.DocGenerationFlag); ok {
			takes = d.TakesValue()
		}
		for _, n := range f.Names() {
			t[n] = takes
		}
	}
	return t
}

// isFlag reports whether tok is a flag: "-x", "--xy", "--xy=v"; not "-"
// or "--".
func isFlag(tok string) bool { return len(tok) > 1 && tok[0] == '-' && tok != "--" }

// flagName is the name in "-x", "--name" or "--name=value".
func flagName(tok string) string {
	n := strings.TrimLeft(tok, "-")
	if i := strings.IndexByte(n, '='); i >= 0 {
		n = n[:i]
	}
	return n
}

// normalizeAddr accepts HOST:PORT, http://HOST:PORT[/] and
// https://HOST:PORT[/] and returns HOST:PORT, or https://HOST:PORT for
// https; other schemes are refused with a clear error.
func normalizeAddr(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		return addr, nil
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("--addr %q: %w", addr, err)
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return "", fmt.Errorf("--addr %q: scheme %q is not supported: use HOST:PORT, http://HOST:PORT or https://HOST:PORT", addr, u.Scheme)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("--addr %q: want %s://HOST:PORT, with no path, query or user", addr, u.Scheme)
	}
	if u.Scheme == "https" {
		return "https://" + u.Host, nil
	}
	return u.Host, nil
}

// suggest returns the command name (or alias) nearest to s, or "" if none
// is near: within an edit distance of a third of its length (at least 1),
// a swap of two neighbouring letters counting as one edit.
func suggest(cmds []*cli.Command, s string) string {
	best, bestD := "", 0
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		for _, n := range c.Names() {
			d := editDistance(strings.ToLower(s), n)
			if d <= max(1, len(n)/3) && (best == "" || d < bestD) {
				best, bestD = n, d
			}
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b
// (insertions, deletions, substitutions, adjacent transpositions), in
// bytes. Inputs are short: command names and what was typed for one.
func editDistance(a, b string) int {
	if len(a) > 64 {
		a = a[:64]
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// Flag parse errors of a duration given without a unit, from the command
// line and from an environment variable.
var (
	badFlagValue = regexp.MustCompile(`invalid value "([^"]*)" for flag -([\w-]+)`)
	badEnvValue  = regexp.MustCompile(`could not parse "([^"]*)" as duration value from (.*) for flag ([\w-]+)`)
)

// durationHint rewrites a parse error of a duration flag given a bare
// number ("--by 100") as "add a unit, e.g. 100ms". flags are the flags
// the command defines. Other errors come back unchanged.
func durationHint(flags []cli.Flag, err error) error {
	var value, name, from string
	if m := badFlagValue.FindStringSubmatch(err.Error()); m != nil {
		value, name, from = m[1], m[2], "--"+m[2]+" "+m[1]
	} else if m := badEnvValue.FindStringSubmatch(err.Error()); m != nil {
		value, name, from = m[1], m[3], m[2]+"="+m[1]
	} else {
		return err
	}
	if _, numErr := strconv.ParseFloat(value, 64); numErr != nil {
		return err
	}
	for _, f := range flags {
		if _, ok := f.(*cli.DurationFlag); !ok {
			continue
		}
		for _, n := range f.Names() {
			if n == name {
				return fmt.Errorf("%s: a duration needs a unit: add a unit, e.g. %sms or %ss", from, value, value)
			}
		}
	}
	return err
}
