package containerd

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/template"

	"github.com/pelletier/go-toml/v2"
)

// TemplateValues are what a containerd config template refers to, e.g.
// {{ .RootDir }} or {{ range .Runtimes }}{{ .Handler }}{{ end }}.
type TemplateValues struct {
	// Config is the configuration containerd runs with, defaults applied
	// and the snapshotter chosen: .RootDir, .StateDir, .ConfigDir,
	// .Address, .BinDir, .CNIBinDirs, .CNIConfDir, .SandboxImage,
	// .Snapshotter, .RegistriesFile, .DefaultRuntime...
	Config
	// Runtimes are the runtimes found on the host; Base has a handler for
	// each.
	Runtimes []Runtime
	// Base is the whole config skiff generated, so a template can start
	// from it and append tables; {{ template "base" . }} writes it too.
	Base string
}

// findTemplate returns the first of paths that exists, with its text; ""
// when none does.
func findTemplate(paths []string) (string, []byte, error) {
	for _, p := range paths {
		text, err := os.ReadFile(p)
		if err == nil {
			return p, text, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", nil, fmt.Errorf("read containerd config template: %w", err)
		}
	}
	return "", nil, nil
}

// renderTemplate executes the template text read from path over v and
// returns the config it produces, checked to be TOML, and decoded.
func renderTemplate(path string, text []byte, v TemplateValues) ([]byte, map[string]any, error) {
	broken := func(err error) ([]byte, map[string]any, error) {
		return nil, nil, fmt.Errorf("containerd config template %s is broken (%v); fix it, or remove it to run with the generated config", path, err)
	}
	// "base" first, so that a template defining its own "base" keeps it.
	t := template.New(filepath.Base(path)).Option("missingkey=error")
	if _, err := t.New("base").Parse("{{ .Base }}"); err != nil {
		return broken(err)
	}
	if _, err := t.Parse(string(text)); err != nil {
		return broken(err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, v); err != nil {
		return broken(err)
	}
	var doc map[string]any
	if err := toml.Unmarshal(out.Bytes(), &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			err = fmt.Errorf("line %d, column %d of its output: %v", row, col, de)
		}
		return broken(fmt.Errorf("it does not produce valid TOML: %w", err))
	}
	return out.Bytes(), doc, nil
}
