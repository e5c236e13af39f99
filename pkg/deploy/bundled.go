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

// keepSuffix marks a bundled file the user edited, for skiff not to
// rewrite: "coredns.yaml.keep" beside "coredns.yaml". (".skip", as in k3s,
// means not to deploy it at all.)
const keepSuffix = ".keep"

// kept reports whether the user asked skiff not to rewrite a bundled file.
// "<name>.skip" is the marker's older name, from before ".skip" took k3s's
// meaning; it still keeps the file, and says what to rename it to.
func kept(dir, name string) bool {
	if _, err := os.Stat(filepath.Join(dir, name+".yaml"+keepSuffix)); err == nil {
		return true
	}
	if _, err := os.Stat(filepath.Join(dir, name+".skip")); err == nil {
		logrus.Warnf("addon %s: %s.skip is the old name of %s.yaml%s (do not rewrite my edits); rename it, since %s.yaml.skip now means do not deploy", name, name, name, keepSuffix, name)
		return true
	}
	return false
}

// writeBundled brings the bundled files in dir up to date: each is
// rewritten when its content differs (so an upgrade of skiff updates the
// addon), unless kept; a disabled one is removed.
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
		if kept(dir, b.Name) {
			logrus.Infof("addon %s: leaving %s as it is, as its %s marker asks", b.Name, path, keepSuffix)
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
