package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
)

// manifestFile is one file of the manifests folder as last read.
type manifestFile struct {
	Rel      string // path relative to the folder, with forward slashes
	Addon    string // name of the Addon record that tracks it
	Checksum string // sha256 of the content
	Content  []byte
	// Skipped: "<file>.skip" beside it says not to deploy it (k3s's
	// convention); what it created earlier is left as it is.
	Skipped bool
}

// skipSuffix marks a manifest not to deploy: "web.yaml.skip" beside
// "web.yaml".
const skipSuffix = ".skip"

// isManifest reports whether a file name is one the folder applies.
func isManifest(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// scanDir reads every manifest under dir (subfolders included), sorted by
// path so that files apply in a predictable order.
func scanDir(dir string) ([]manifestFile, error) {
	var files []manifestFile
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			// A folder that vanished or cannot be read must not hide the rest.
			return nil
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !isManifest(d.Name()) {
			return nil
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return nil
		}
		rel = filepath.ToSlash(rel)
		sum := sha256.Sum256(content)
		_, skipErr := os.Stat(path + skipSuffix)
		files = append(files, manifestFile{
			Rel:      rel,
			Addon:    addonName(rel),
			Checksum: hex.EncodeToString(sum[:]),
			Content:  content,
			Skipped:  skipErr == nil,
		})
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].Rel < files[j].Rel })
	return files, err
}

var invalidNameChars = regexp.MustCompile(`[^a-z0-9.-]+`)

// disabledBy reports whether --disable names f: by its file name without
// the extension ("web" for "apps/web.yaml", as k3s matches), or by its
// Addon name ("apps-web").
func (f manifestFile) disabledBy(disabled []string) bool {
	base := strings.TrimSuffix(path.Base(f.Rel), path.Ext(f.Rel))
	return slices.Contains(disabled, base) || slices.Contains(disabled, f.Addon)
}

// addonName derives a valid object name from a manifest's relative path:
// "coredns.yaml" is "coredns", "apps/web.yaml" is "apps-web".
func addonName(rel string) string {
	name := strings.TrimSuffix(rel, filepath.Ext(rel))
	name = strings.ToLower(strings.ReplaceAll(name, "/", "-"))
	name = invalidNameChars.ReplaceAllString(name, "-")
	name = strings.Trim(name, "-.")
	if len(name) > 63 {
		sum := sha256.Sum256([]byte(rel))
		name = strings.Trim(name[:54], "-.") + "-" + hex.EncodeToString(sum[:])[:8]
	}
	if name == "" {
		sum := sha256.Sum256([]byte(rel))
		name = "manifest-" + hex.EncodeToString(sum[:])[:8]
	}
	return name
}

// parseObjects decodes a multi-document YAML or JSON manifest into objects.
// Lists (kind: List or any *List) are expanded; empty documents are skipped.
// Every object must name its apiVersion, kind and name, so a typo fails the
// whole file here rather than half-applying it.
func parseObjects(content []byte) ([]runtime.Object, error) {
	dec := yamlutil.NewYAMLOrJSONDecoder(bytes.NewReader(content), 4096)
	var objs []runtime.Object
	for doc := 1; ; doc++ {
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(raw) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: raw}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", doc, err)
			}
			for i := range list.Items {
				item := &list.Items[i]
				if err := checkObject(item); err != nil {
					return nil, fmt.Errorf("document %d, item %d: %w", doc, i+1, err)
				}
				objs = append(objs, item)
			}
			continue
		}
		if err := checkObject(u); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

func checkObject(u *unstructured.Unstructured) error {
	switch {
	case u.GetAPIVersion() == "":
		return errors.New("apiVersion is missing")
	case u.GetKind() == "":
		return errors.New("kind is missing")
	case u.GetName() == "":
		return fmt.Errorf("%s has no metadata.name", u.GetKind())
	}
	return nil
}
