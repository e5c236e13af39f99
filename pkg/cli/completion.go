package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// bashCompletion completes skiff's own commands and flags from the binary
// itself (urfave's --generate-bash-completion), and hands everything after
// `skiff kubectl` to kubectl's own completion (cobra's __complete), so the
// embedded kubectl completes as the stock one does.
const bashCompletion = `# bash completion for skiff: source it, or save it as
# /etc/bash_completion.d/skiff
_skiff() {
	local cur=${COMP_WORDS[COMP_CWORD]} out IFS=$'\n'
	if [[ ${COMP_WORDS[1]} == kubectl ]] && ((COMP_CWORD >= 2)); then
		# cobra prints one candidate a line (tab, then a description) and
		# ends with a ":<directive>" line.
		out=$("${COMP_WORDS[0]}" kubectl __complete "${COMP_WORDS[@]:2:COMP_CWORD-2}" "$cur" 2>/dev/null) || return 0
		COMPREPLY=($(printf '%s\n' "$out" | sed -e '/^:[0-9]*$/d' -e 's/\t.*//'))
		return 0
	fi
	local words=("${COMP_WORDS[@]:0:COMP_CWORD}")
	# A flag being typed goes along, so that skiff completes flag names.
	[[ $cur == -* ]] && words+=("$cur")
	out=$("${words[@]}" --generate-bash-completion 2>/dev/null) || return 0
	COMPREPLY=($(compgen -W "$out" -- "$cur"))
}
complete -o default -F _skiff skiff
`

// zshCompletion runs the bash function through zsh's bash compatibility.
const zshCompletion = "#compdef skiff\nautoload -U +X bashcompinit && bashcompinit\n" + bashCompletion

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish",
		UsageText: "source <(skiff completion bash)\n   skiff completion zsh > \"${fpath[1]}/_skiff\"\n   skiff completion fish | source",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return inCommand("completion", fmt.Errorf("name one shell: bash, zsh or fish"))
			}
			var script string
			switch c.Args().First() {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return inCommand("completion", fmt.Errorf("fish completion: %w", err))
				}
				script = s
			default:
				return inCommand("completion", fmt.Errorf("unknown shell %q; use bash, zsh or fish", c.Args().First()))
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}
