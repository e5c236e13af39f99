package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/skiff-io/skiff/pkg/config"
	"github.com/skiff-io/skiff/pkg/layout"
)

const flagJSON = "json"

// pathsCommand prints the data dir's layout for scripts, so that shell (the
// installer's skiff-killall.sh, operators' own scripts) reads the paths from
// the binary that owns them instead of joining path segments by hand.
func pathsCommand() *cli.Command {
	const name = "paths"
	return configurable(&cli.Command{
		Name:  name,
		Usage: "print every path skiff keeps under its data dir, and its run dir, as shell assignments",
		UsageText: "skiff paths [--data-dir DIR] [--json]\n\n" +
			"One NAME='value' line per path, e.g. AGENT_CNI_IPAM_DIR='/var/lib/skiff/agent/cni/networks',\n" +
			"quoted for sh: eval \"$(skiff paths)\" sets them all. --json prints the same names and values.",
		Flags: []cli.Flag{configFlag(), dataDirFlag(), &cli.BoolFlag{
			Name:  flagJSON,
			Usage: "print one JSON object, the same names as keys",
		}},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return inCommand(name, fmt.Errorf("unexpected argument %q; paths takes only flags", c.Args().First()))
			}
			dataDir := c.String(flagDataDir)
			if err := config.ValidateDataDir(dataDir); err != nil {
				return inCommand(name, err)
			}
			paths, err := layoutPaths(layout.New(dataDir))
			if err != nil {
				return inCommand(name, err)
			}
			if c.Bool(flagJSON) {
				return inCommand(name, writePathsJSON(c.App.Writer, paths))
			}
			return inCommand(name, writePathsShell(c.App.Writer, paths))
		},
	})
}

// namedPath is one path of a Layout under its shell name.
type namedPath struct {
	name, value string
}

// layoutPaths lists every path of l, in the order of its fields, named
// after them: the upper snake case of the field, after its group's
// (Agent.CNIIPAMDir is AGENT_CNI_IPAM_DIR, HelpersDir is HELPERS_DIR).
// A field added to pkg/layout appears here by itself.
func layoutPaths(l layout.Layout) ([]namedPath, error) {
	var out []namedPath
	seen := map[string]string{}
	var walk func(v reflect.Value, prefix, field string) error
	walk = func(v reflect.Value, prefix, field string) error {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				f := v.Type().Field(i)
				if !f.IsExported() {
					continue
				}
				p := prefix
				if v.Field(i).Kind() == reflect.Struct {
					p += shellName(f.Name) + "_"
				}
				if err := walk(v.Field(i), p, field+"."+f.Name); err != nil {
					return err
				}
			}
		case reflect.String:
			name := prefix + shellName(field[strings.LastIndex(field, ".")+1:])
			if other, ok := seen[name]; ok {
				return fmt.Errorf("layout fields %s and %s both have the name %s", other, field, name)
			}
			seen[name] = field
			out = append(out, namedPath{name: name, value: v.String()})
		default:
			return fmt.Errorf("layout field %s is a %s; paths prints only strings and groups of them", field, v.Kind())
		}
		return nil
	}
	if err := walk(reflect.ValueOf(l), "", "Layout"); err != nil {
		return nil, err
	}
	return out, nil
}

// initialisms split a run of capitals made of several of them
// ("CNIIPAM" is CNI and IPAM); a run that is not made of them stays one
// word.
var initialisms = []string{"API", "CA", "CNI", "CRI", "DB", "DNS", "ETCD", "HTTP", "ID", "IP", "IPAM", "OCI", "TLS", "VXLAN"}

// shellName is a Go field name in upper snake case: a word starts at a
// capital after a lower-case letter or digit, and at the last capital of a
// run that a lower-case letter follows (TLSDir is TLS_DIR, StateDB is
// STATE_DB).
func shellName(field string) string {
	r := []rune(field)
	var words []string
	start := 0
	for i := 1; i < len(r); i++ {
		lowerBefore := unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1])
		runEnds := unicode.IsUpper(r[i-1]) && i+1 < len(r) && unicode.IsLower(r[i+1])
		if unicode.IsUpper(r[i]) && (lowerBefore || runEnds) {
			words = append(words, splitInitialisms(string(r[start:i]))...)
			start = i
		}
	}
	words = append(words, splitInitialisms(string(r[start:]))...)
	return strings.ToUpper(strings.Join(words, "_"))
}

// splitInitialisms splits a word made only of initialisms into them, and
// leaves any other word whole.
func splitInitialisms(word string) []string {
	if word == "" || strings.ToUpper(word) != word {
		return []string{word}
	}
	var split func(s string) []string
	split = func(s string) []string {
		if s == "" {
			return []string{}
		}
		for _, in := range initialisms {
			if rest, ok := strings.CutPrefix(s, in); ok {
				if tail := split(rest); tail != nil {
					return append([]string{in}, tail...)
				}
			}
		}
		return nil
	}
	if parts := split(word); parts != nil {
		return parts
	}
	return []string{word}
}

// shellQuote is s as one sh word: in single quotes, each ' written '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func writePathsShell(w io.Writer, paths []namedPath) error {
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(p.name + "=" + shellQuote(p.value) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writePathsJSON writes one object whose keys, in the layout's order, are
// the shell names.
func writePathsJSON(w io.Writer, paths []namedPath) error {
	var b strings.Builder
	b.WriteString("{")
	for i, p := range paths {
		k, err := json.Marshal(p.name)
		if err != nil {
			return err
		}
		v, err := json.Marshal(p.value)
		if err != nil {
			return err
		}
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  " + string(k) + ": " + string(v))
	}
	b.WriteString("\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}
