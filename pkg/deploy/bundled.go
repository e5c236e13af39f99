package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

// Bundled is an addon that ships inside skiff, already rendered for this
// cluster.
type Bundled struct {
	Name     string // the file is <Name>.yaml in the manifests folder
	Content  []byte
	Disabled bool // --disable: the file is removed, so its objects are pruned
}

// skipped reports whether the user asked skiff to leave a bundled file alone,
// with "<name>.skip" or "<name>.yaml.skip" beside it.
func skipped(dir, name string) bool {
	for _, marker := range []string{name + ".skip", name + ".yaml.skip"} {
		if _, err := os.Stat(filepath.Join(dir, marker)); err == nil {
			return true
		}
	}
	return false
}

// writeBundled brings the bundled files in dir up to date: each is
// rewritten when its content differs (so an upgrade of skiff updates the
// addon), unless skipped; a disabled one is removed.
func writeBundled(dir string, bundled []Bundled) error {
	for _, b := range bundled {
		path := filepath.Join(dir, b.Name+".yaml")
		if b.Disabled {
			if err := os.Remove(path); err == nil {
				logrus.Infof("addon %s is disabled: removed %s", b.Name, path)
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove disabled addon %s: %w", path, err)
			}
			continue
		}
		if skipped(dir, b.Name) {
			logrus.Infof("addon %s: %s.skip exists, leaving %s as it is", b.Name, b.Name, path)
			continue
		}
		// An unchanged file is left alone: the folder's watcher would
		// apply it again.
		if _, err := fileutil.WriteIfChanged(path, b.Content, 0o600); err != nil {
			return fmt.Errorf("write bundled addon %s: %w", b.Name, err)
		}
	}
	return nil
}
