package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// applyConfigFile folds the config file, and its drop-ins, into the flags
// of the running command. It sits between environment and defaults in
// precedence: urfave reports a flag as set when it came from the command
// line or from its environment variable, and only unset flags take the
// files' values.
//
// Every key is checked against the server flags, whichever command runs, so
// one file serves all commands and a typo is reported by each of them.
func applyConfigFile(c *cli.Context) error {
	entries, err := loadConfigFiles(c.String(flagConfig), c.IsSet(flagConfig))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !hasFlag(c.Command.Flags, e.key) || c.IsSet(e.key) {
			continue
		}
		for _, v := range e.values {
			if err := c.Set(e.key, v); err != nil {
				return fmt.Errorf("config file %s: line %d: key %q: %w", e.file, e.line, e.key, err)
			}
		}
	}
	return nil
}

// dropInDir is where drop-ins of a config file live: config.yaml.d/ beside
// config.yaml.
func dropInDir(path string) string { return path + ".d" }

// loadConfigFiles reads the config file at path (a missing one is an error
// only when explicit), then its drop-ins, *.yaml in <path>.d/ in lexical
// order. A later file's key replaces an earlier one's, except that "key+"
// appends to a list. The result has one entry per key.
func loadConfigFiles(path string, explicit bool) ([]configEntry, error) {
	if path == "" {
		return nil, nil
	}
	files := []string{path}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if explicit {
			return nil, fmt.Errorf("config file %s does not exist; create it or point --config (SKIFF_CONFIG_FILE) at an existing file", path)
		}
		files = nil
	}
	dropIns, err := filepath.Glob(filepath.Join(dropInDir(path), "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("list drop-ins of %s: %w", path, err)
	}
	sort.Strings(dropIns)
	files = append(files, dropIns...)

	var merged []configEntry
	index := map[string]int{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read config file: %w", err)
		}
		entries, err := parseConfigFile(file, data)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			i, ok := index[e.key]
			switch {
			case !ok:
				index[e.key] = len(merged)
				merged = append(merged, e)
			case e.appends:
				merged[i].values = append(merged[i].values, e.values...)
				merged[i].file, merged[i].line = e.file, e.line
			default:
				merged[i] = e
			}
		}
	}
	return merged, nil
}

// configEntry is one key of the config file with its values rendered as the
// strings the flag would get on the command line.
type configEntry struct {
	key    string
	file   string
	line   int
	values []string
	// appends is the "key+" form: add to the list an earlier file set.
	appends bool
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
		key, appends := strings.CutSuffix(keyNode.Value, "+")
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
		if _, list := f.(*cli.StringSliceFlag); appends && !list {
			return nil, fmt.Errorf("config file %s: line %d: key %q+ appends to a list, but %s takes one value; write %q", path, keyNode.Line, key, key, key+":")
		}
		values, err := flagValues(f, valueNode)
		if err != nil {
			return nil, fmt.Errorf("config file %s: line %d: key %q %w", path, valueNode.Line, key, err)
		}
		entries = append(entries, configEntry{key: key, file: path, line: valueNode.Line, values: values, appends: appends})
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
