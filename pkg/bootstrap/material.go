// Package bootstrap carries the files every server of one cluster must
// share (its CAs and their keys, the service-account key, the Secrets
// encryption config, the token files): it collects them from a server's
// dir, seals them with the cluster token, keeps them in the datastore, and
// fetches them from a running server for a server that joins.
package bootstrap

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/skiff-io/skiff/pkg/fileutil"
)

// Material is the shared files' contents, keyed by their slash-separated
// path relative to the server dir (for example "tls/server-ca.key").
type Material map[string][]byte

// Collect reads the files named by rel under serverDir; those that do not
// exist are left out, since which of them a cluster has depends on its
// options (an encryption config only with --secrets-encryption).
func Collect(serverDir string, rel []string) (Material, error) {
	m := Material{}
	for _, r := range rel {
		if err := checkPath(r); err != nil {
			return nil, err
		}
		data, err := fileutil.ReadOptional(filepath.Join(serverDir, filepath.FromSlash(r)))
		if err != nil {
			return nil, fmt.Errorf("collect bootstrap material: %w", err)
		}
		if data != nil {
			m[r] = data
		}
	}
	return m, nil
}

// Apply writes the material under serverDir. It first checks that
// serverDir is not another cluster's: identity names the file that tells
// clusters apart (the server CA certificate), and a local copy that
// differs from the material's stops Apply before anything is written.
// Files already holding their content are left untouched, so that
// components watching them see no change.
func (m Material) Apply(serverDir, identity string) error {
	names := make([]string, 0, len(m))
	for name := range m {
		if err := checkPath(name); err != nil {
			return err
		}
		names = append(names, name)
	}
	if identity != "" {
		if err := m.checkIdentity(serverDir, identity); err != nil {
			return err
		}
	}
	// The identity goes last: a dir whose write was cut short then still
	// has no identity, or the cluster's, and the next Apply completes it.
	sort.Slice(names, func(a, b int) bool {
		if (names[a] == identity) != (names[b] == identity) {
			return names[b] == identity
		}
		return names[a] < names[b]
	})
	for _, name := range names {
		dst := filepath.Join(serverDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return fmt.Errorf("apply bootstrap material: %w", err)
		}
		if _, err := fileutil.WriteIfChanged(dst, m[name], modeOf(name)); err != nil {
			return fmt.Errorf("apply bootstrap material: %w", err)
		}
	}
	return nil
}

func (m Material) checkIdentity(serverDir, identity string) error {
	want, ok := m[identity]
	if !ok {
		return fmt.Errorf("the bootstrap material has no %s to check %s against, so it is incomplete; store it again from a server of the cluster", identity, serverDir)
	}
	local, err := fileutil.ReadOptional(filepath.Join(serverDir, filepath.FromSlash(identity)))
	if err != nil {
		return fmt.Errorf("check which cluster %s belongs to: %w", serverDir, err)
	}
	if local != nil && !bytes.Equal(local, want) {
		return fmt.Errorf("the server data in %s belongs to another cluster (its %s differs from this cluster's); empty that directory to join this cluster, or pass the --token of the cluster it belongs to", serverDir, identity)
	}
	return nil
}

// Equal reports whether m and o hold the same files with the same contents.
func (m Material) Equal(o Material) bool {
	if len(m) != len(o) {
		return false
	}
	for name, data := range m {
		other, ok := o[name]
		if !ok || !bytes.Equal(data, other) {
			return false
		}
	}
	return true
}

// modeOf keeps certificates readable, as pkg/pki writes them, and every
// other file (keys, tokens, the encryption config) to its owner.
func modeOf(name string) os.FileMode {
	if strings.HasSuffix(name, ".crt") {
		return 0o644
	}
	return 0o600
}

// checkPath refuses names that would leave the server dir: material comes
// from the network and the datastore.
func checkPath(name string) error {
	if name == "" || strings.Contains(name, `\`) || path.Clean(name) != name || !filepath.IsLocal(filepath.FromSlash(name)) {
		return fmt.Errorf("bootstrap material path %q is not a clean path inside the server dir", name)
	}
	return nil
}
