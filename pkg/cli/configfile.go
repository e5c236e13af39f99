package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// applyConfigFile folds the config file into the flags of the running
// command. It sits between environment and defaults in precedence: urfave
// reports a flag as set when it came from the command line or from its
// environment variable, and only unset flags take the file's value.
//
// Every key is checked against the server flags, whichever command runs, so
// one file serves all commands and a typo is reported by each of them.
func applyConfigFile(c *cli.Context) error {
	path := c.String(flagConfig)
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if !c.IsSet(flagConfig) {
				return nil
			}
			return fmt.Errorf("config file %s does not exist; create it or point --config (SKIFF_CONFIG_FILE) at an existing file", path)
		}
		return fmt.Errorf("read config file: %w", err)
	}
	entries, err := parseConfigFile(path, data)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !hasFlag(c.Command.Flags, e.key) || c.IsSet(e.key) {
			continue
		}
		for _, v := range e.values {
			if err := c.Set(e.key, v); err != nil {
				return fmt.Errorf("config file %s: line %d: key %q: %w", path, e.line, e.key, err)
			}
		}
	}
	return nil
}

// configEntry is one key of the config file with its values rendered as the
// strings the flag would get on the command line.
type configEntry struct {
	key    string
	line   int
	values []string
}

// parseConfigFile checks the whole file against the server flags before
// anything is applied, so a bad file never half-configures a command.
// Parsing goes through yaml.Node rather than a map so that scalars keep the
// text the user wrote (write-kubeconfig-mode: 0644 must stay "0644", not
// become 420) and errors can cite line numbers.
func parseConfigFile(path string, data []byte) ([]configEntry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config file %s: not valid YAML: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil // empty or comment-only file
	}
	root := resolveAlias(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s: the top level must be a map of flag names to values, e.g. \"data-dir: /var/lib/skiff\"", path)
	}

	schema := map[string]cli.Flag{}
	for _, f := range append(serverFlags(), agentFlags()...) {
		schema[f.Names()[0]] = f
	}
	seen := map[string]int{}
	var entries []configEntry
	for i := 0; i+1 < len(root.Content); i += 2 {
		keyNode, valueNode := root.Content[i], resolveAlias(root.Content[i+1])
		if keyNode.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("config file %s: line %d: keys must be flag names such as data-dir, not a list or map", path, keyNode.Line)
		}
		key := keyNode.Value
		if first, dup := seen[key]; dup {
			return nil, fmt.Errorf("config file %s: line %d: key %q already set on line %d; keep only one", path, keyNode.Line, key, first)
		}
		seen[key] = keyNode.Line
		if key == flagConfig {
			return nil, fmt.Errorf("config file %s: line %d: key %q is not allowed in a config file; pass --config or set SKIFF_CONFIG_FILE instead", path, keyNode.Line, key)
		}
		f, ok := schema[key]
		if !ok {
			return nil, fmt.Errorf("config file %s: unknown key %q; keys are the server and agent flag names, e.g. %s", path, key, flagDataDir)
		}
		values, err := flagValues(f, valueNode)
		if err != nil {
			return nil, fmt.Errorf("config file %s: line %d: key %q %w", path, valueNode.Line, key, err)
		}
		entries = append(entries, configEntry{key: key, line: valueNode.Line, values: values})
	}
	return entries, nil
}

// flagValues converts a YAML value to flag arguments. A null value (a key
// with nothing after the colon) yields none, leaving the default in place.
// Errors complete the sentence `key "x" ...`.
func flagValues(f cli.Flag, n *yaml.Node) ([]string, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	switch f.(type) {
	case *cli.StringSliceFlag:
		if n.Kind == yaml.ScalarNode {
			return []string{n.Value}, nil
		}
		if n.Kind != yaml.SequenceNode {
			return nil, errors.New("must be a string or a list of strings")
		}
		values := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			item = resolveAlias(item)
			if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
				return nil, errors.New("must be a string or a list of strings")
			}
			values = append(values, item.Value)
		}
		return values, nil
	case *cli.IntFlag:
		if n.Kind != yaml.ScalarNode {
			return nil, errors.New("must be a whole number, not a list or map")
		}
		var v int
		if n.Tag == "!!int" && n.Decode(&v) == nil {
			return []string{strconv.Itoa(v)}, nil
		}
		// Accept quoted numbers too; people quote values out of habit.
		if v, err := strconv.Atoi(strings.TrimSpace(n.Value)); err == nil && n.Tag == "!!str" {
			return []string{strconv.Itoa(v)}, nil
		}
		return nil, fmt.Errorf("must be a whole number, got %q", n.Value)
	case *cli.BoolFlag:
		if n.Kind != yaml.ScalarNode {
			return nil, errors.New("must be true or false, not a list or map")
		}
		var v bool
		if n.Tag == "!!bool" && n.Decode(&v) == nil {
			return []string{strconv.FormatBool(v)}, nil
		}
		if v, err := strconv.ParseBool(strings.TrimSpace(n.Value)); err == nil && n.Tag == "!!str" {
			return []string{strconv.FormatBool(v)}, nil
		}
		return nil, fmt.Errorf("must be true or false, got %q", n.Value)
	default:
		if n.Kind != yaml.ScalarNode {
			return nil, errors.New("must be a single value, not a list or map")
		}
		return []string{n.Value}, nil
	}
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// hasFlag reports whether flags contains a flag with the given long name.
func hasFlag(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		if f.Names()[0] == name {
			return true
		}
	}
	return false
}
