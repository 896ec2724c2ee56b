package cli

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// The scripts ask peerctl itself for candidates: urfave/cli answers
// `peerctl ARGS... --generate-bash-completion` with the commands, flags
// (when the word starts with "-") or, for kill and leave, member names.
// Adapted from urfave/cli's autocomplete/ scripts, without their
// dependency on the bash-completion package.

const bashCompletion = `# bash completion for peerctl; load with: source <(peerctl completion bash)
_peerctl_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}" opts
  if [[ "$cur" == -* ]]; then
    opts=$("${COMP_WORDS[@]:0:COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${COMP_WORDS[@]:0:COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o bashdefault -o default -F _peerctl_complete peerctl
`

const zshCompletion = `#compdef peerctl
# zsh completion for peerctl; load with: source <(peerctl completion zsh)
# (after compinit), or save as _peerctl in a directory on $fpath.
_peerctl() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _peerctl peerctl
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Category:  catTools,
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		UsageText: `peerctl completion bash|zsh|fish

Examples:
  source <(peerctl completion bash)                  # in ~/.bashrc
  source <(peerctl completion zsh)                   # in ~/.zshrc, after compinit
  peerctl completion fish > ~/.config/fish/completions/peerctl.fish`,
		Description: `Prints a script that completes peerctl's commands, flags and, for kill
and leave, the names of the members the daemon at --addr knows.`,
		Action: runCompletion,
		BashComplete: func(c *cli.Context) {
			for _, s := range []string{"bash", "zsh", "fish"} {
				fmt.Fprintln(c.App.Writer, s)
			}
		},
	}
}

func runCompletion(c *cli.Context) error {
	if err := wantArgs(c, 1, 1); err != nil {
		return err
	}
	var script string
	switch shell := c.Args().First(); shell {
	case "bash":
		script = bashCompletion
	case "zsh":
		script = zshCompletion
	case "fish":
		s, err := c.App.ToFishCompletion()
		if err != nil {
			return fmt.Errorf("fish completion: %w", err)
		}
		script = s
	default:
		return fmt.Errorf("completion: unknown shell %q: want bash, zsh or fish", shell)
	}
	_, err := io.WriteString(c.App.Writer, script)
	return err
}
