package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// WriteReference renders every command's flags as Markdown: the
// configuration reference in docs/ is generated from it, so the help text,
// the environment variable names and the defaults are written down once.
func WriteReference(w io.Writer) error {
	app := NewApp(Actions{})
	var b strings.Builder
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("Generated from the command-line definitions by `make docs`; do not edit by hand.\n\n")
	b.WriteString("A setting whose table names an environment variable can be given as a flag, as that\n")
	b.WriteString("variable, or as a key of the config file (`--config`, default `/etc/skiff/config.yaml`)\n")
	b.WriteString("named like the long flag; the others (the flags of `skiff token create`, for one) are\n")
	b.WriteString("flags only. Precedence: flag > environment > config file > default. List flags are\n")
	b.WriteString("repeated on the command line and written as YAML sequences in the config file.\n")
	b.WriteString("Drop-ins, `*.yaml` in `<config file>.d/`, are read in lexical order after the config\n")
	b.WriteString("file; a later file's key replaces an earlier one's, and `key+:` appends to a list.\n")
	writeCommands(&b, "skiff", app.Commands)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCommands documents each command that has flags, then its
// sub-commands, in definition order.
func writeCommands(b *strings.Builder, prefix string, cmds []*cli.Command) {
	for _, cmd := range cmds {
		if cmd.Hidden {
			continue
		}
		path := prefix + " " + cmd.Name
		if len(cmd.Flags) > 0 {
			fmt.Fprintf(b, "\n## %s\n\n%s.\n", path, cmd.Usage)
			for _, category := range categories(cmd.Flags) {
				if category != "" {
					fmt.Fprintf(b, "\n### %s\n", category)
				}
				b.WriteString("\n| flag | environment | default | description |\n|---|---|---|---|\n")
				for _, f := range cmd.Flags {
					if flagCategory(f) == category {
						writeFlagRow(b, f)
					}
				}
			}
		}
		writeCommands(b, path, cmd.Subcommands)
	}
}

// categories lists the flags' categories in order of first appearance.
func categories(flags []cli.Flag) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range flags {
		c := flagCategory(f)
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

func flagCategory(f cli.Flag) string {
	if c, ok := f.(cli.CategorizableFlag); ok {
		return c.GetCategory()
	}
	return ""
}

func writeFlagRow(b *strings.Builder, f cli.Flag) {
	names := f.Names()
	var spelled []string
	for _, n := range names {
		if len(n) == 1 {
			spelled = append(spelled, "`-"+n+"`")
		} else {
			spelled = append(spelled, "`--"+n+"`")
		}
	}
	var usage, def, env string
	if d, ok := f.(cli.DocGenerationFlag); ok {
		usage = d.GetUsage()
		if d.TakesValue() {
			def = d.GetDefaultText()
			if def == "" {
				def = d.GetValue()
			}
		} else {
			def = "false"
		}
		if vars := d.GetEnvVars(); len(vars) > 0 {
			env = "`" + strings.Join(vars, "`, `") + "`"
		}
	}
	if def != "" {
		def = "`" + strings.Trim(def, `"`) + "`"
	}
	fmt.Fprintf(b, "| %s | %s | %s | %s |\n", strings.Join(spelled, ", "), env, def, strings.ReplaceAll(usage, "|", `\|`))
}
