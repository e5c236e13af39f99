// Package images builds reproducible single-layer OCI image layout tarballs from local files so nodes can import system images into containerd without a registry.
package images

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"

	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// File is one file placed in the image's single layer: a regular file, or
// with Dir or Link set, a directory or a symbolic link.
type File struct {
	Path    string      // absolute path inside the image, e.g. "/pause"
	Mode    os.FileMode // e.g. 0o755; zero means 0o644 (0o755 for a directory)
	Content []byte      // for small files
	Source  string      // alternatively: a host file path whose bytes are streamed (Content must then be nil)
	// Dir makes Path a directory with Mode, e.g. /tmp with 0o1777;
	// directories only implied by other paths are 0o755.
	Dir bool
	// Link makes Path a symbolic link to Link, e.g. "busybox".
	Link string
}

// Spec describes an image built from files.
type Spec struct {
	Name             string // full or short reference; see Normalize
	Files            []File
	Entrypoint       []string
	Cmd              []string
	Env              []string // "KEY=value"
	WorkingDir       string
	User             string   // e.g. "65535:65535"
	ExposedPorts     []string // e.g. "53/udp"; a bare port means tcp
	Labels           map[string]string
	OS, Architecture string    // default "linux" and runtime.GOARCH
	Created          time.Time // default: Unix epoch, so builds are reproducible
}

// The OCI structures are declared here rather than imported so the JSON
// field order and omissions are fixed by this package alone, which the
// reproducibility guarantee depends on.

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type imageConfig struct {
	Created      string          `json:"created"`
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Config       containerConfig `json:"config"`
	RootFS       rootFS          `json:"rootfs"`
}

type containerConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// Write writes an OCI image layout tarball (uncompressed layer) for spec to w
// and returns the manifest digest ("sha256:..."). The same spec always yields
// the same bytes.
//
// The layer is produced twice, once to learn its digest and size and once
// into w, so that a large Source is never held in memory or staged on disk
// (where /tmp may be a tmpfs). A Source that changes between the passes is
// detected and reported as an error.
func Write(w io.Writer, spec Spec) (string, error) {
	p, err := planImage(spec)
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(w)
	small := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", p.indexJSON},
		{"blobs/", nil},
		{"blobs/sha256/", nil},
		{blobPath(p.configDigest), p.configJSON},
		{blobPath(p.manifestDigest), p.manifestJSON},
	}
	for _, f := range small {
		if err := writeTarFile(tw, f.name, f.data, p.mtime); err != nil {
			return "", fmt.Errorf("image %s: %w", p.ref, err)
		}
	}

	// The large layer goes last so a reader sees all metadata first.
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     blobPath(p.layer.Digest),
		Mode:     0o644,
		Size:     p.layer.Size,
		ModTime:  p.mtime,
	}); err != nil {
		return "", fmt.Errorf("image %s: writing layer header: %w", p.ref, err)
	}
	check := newDigester(tw)
	if err := writeLayer(check, p.entries, p.mtime); err != nil {
		return "", fmt.Errorf("image %s: writing layer: %w", p.ref, err)
	}
	if got := check.digest(); got != p.layer.Digest || check.n != p.layer.Size {
		return "", fmt.Errorf("image %s: layer changed while writing (digest %s, expected %s); a Source file was modified", p.ref, got, p.layer.Digest)
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("image %s: finishing archive: %w", p.ref, err)
	}
	return p.manifestDigest, nil
}

// Digest returns the manifest digest Write returns for spec, from one pass
// over the layer: what a node compares with the image it already has.
func Digest(spec Spec) (string, error) {
	p, err := planImage(spec)
	if err != nil {
		return "", err
	}
	return p.manifestDigest, nil
}

// imagePlan is everything of an image but its layer's bytes.
type imagePlan struct {
	ref                                 reference
	entries                             []layerEntry
	mtime                               time.Time
	layer                               descriptor
	configJSON, manifestJSON, indexJSON []byte
	configDigest, manifestDigest        string
}

func planImage(spec Spec) (*imagePlan, error) {
	ref, err := parseReference(spec.Name)
	if err != nil {
		return nil, err
	}
	created := spec.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()
	// Sub-second times would force PAX headers in one writer and not in
	// another; whole seconds keep the tar encoding stable.
	p := &imagePlan{ref: ref, mtime: created.Truncate(time.Second)}

	if p.entries, err = planLayer(spec.Files); err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	layerHash := newDigester(io.Discard)
	if err := writeLayer(layerHash, p.entries, p.mtime); err != nil {
		return nil, fmt.Errorf("image %s: computing layer digest: %w", ref, err)
	}
	p.layer = descriptor{MediaType: mediaTypeLayer, Digest: layerHash.digest(), Size: layerHash.n}

	cfg, err := buildConfig(spec, created, p.layer.Digest)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	if p.configJSON, err = json.Marshal(cfg); err != nil {
		return nil, fmt.Errorf("image %s: encoding config: %w", ref, err)
	}
	p.configDigest = digestOf(p.configJSON)

	p.manifestJSON, err = json.Marshal(manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        descriptor{MediaType: mediaTypeConfig, Digest: p.configDigest, Size: int64(len(p.configJSON))},
		Layers:        []descriptor{p.layer},
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: encoding manifest: %w", ref, err)
	}
	p.manifestDigest = digestOf(p.manifestJSON)

	p.indexJSON, err = json.Marshal(index{
		SchemaVersion: 2,
		MediaType:     mediaTypeIndex,
		Manifests: []descriptor{{
			MediaType: mediaTypeManifest,
			Digest:    p.manifestDigest,
			Size:      int64(len(p.manifestJSON)),
			Platform:  &platform{Architecture: cfg.Architecture, OS: cfg.OS},
			Annotations: map[string]string{
				annotationContainerdName: ref.String(),
				annotationRefName:        ref.tag,
			},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: encoding index: %w", ref, err)
	}
	return p, nil
}

// WriteFile writes the tarball to path atomically: readers see either the
// old file or the complete new one, never a partial import source.
func WriteFile(path string, spec Spec) (digest string, err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("creating temporary file for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	bw := bufio.NewWriterSize(tmp, 1<<20)
	digest, err = Write(bw, spec)
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	// CreateTemp uses 0600; the tarball holds nothing secret and is often
	// imported by another user or tool.
	if err = tmp.Chmod(0o644); err != nil {
		return "", fmt.Errorf("setting mode of %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return "", fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return "", fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("renaming %s to %s: %w", tmp.Name(), path, err)
	}
	// Persist the rename itself; without this a crash can lose the new name.
	if d, derr := os.Open(dir); derr == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil {
			return digest, fmt.Errorf("syncing directory %s: %w", dir, serr)
		}
	}
	return digest, nil
}

func buildConfig(spec Spec, created time.Time, layerDigest string) (imageConfig, error) {
	osName, arch := spec.OS, spec.Architecture
	if osName == "" {
		osName = "linux"
	}
	if arch == "" {
		arch = runtime.GOARCH
	}
	for _, e := range spec.Env {
		if i := strings.IndexByte(e, '='); i <= 0 {
			return imageConfig{}, fmt.Errorf("env %q must be KEY=value", e)
		}
	}
	var ports map[string]struct{}
	for _, p := range spec.ExposedPorts {
		norm, err := normalizePort(p)
		if err != nil {
			return imageConfig{}, err
		}
		if ports == nil {
			ports = make(map[string]struct{})
		}
		ports[norm] = struct{}{}
	}
	return imageConfig{
		Created:      created.Format(time.RFC3339Nano),
		Architecture: arch,
		OS:           osName,
		Config: containerConfig{
			User:         spec.User,
			ExposedPorts: ports,
			Env:          spec.Env,
			Entrypoint:   spec.Entrypoint,
			Cmd:          spec.Cmd,
			WorkingDir:   spec.WorkingDir,
			Labels:       spec.Labels,
		},
		RootFS: rootFS{Type: "layers", DiffIDs: []string{layerDigest}},
	}, nil
}

// normalizePort accepts "53/udp" or "8080" and returns the "port/proto" key
// the image config format requires.
func normalizePort(p string) (string, error) {
	port, proto, found := strings.Cut(p, "/")
	if !found {
		proto = "tcp"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("exposed port %q: port must be 1-65535", p)
	}
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return "", fmt.Errorf("exposed port %q: protocol must be tcp, udp or sctp", p)
	}
	return strconv.Itoa(n) + "/" + proto, nil
}

func writeTarFile(tw *tar.Writer, name string, data []byte, mtime time.Time) error {
	hdr := &tar.Header{Name: name, ModTime: mtime}
	if strings.HasSuffix(name, "/") {
		hdr.Typeflag = tar.TypeDir
		hdr.Mode = 0o755
	} else {
		hdr.Typeflag = tar.TypeReg
		hdr.Mode = 0o644
		hdr.Size = int64(len(data))
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing header for %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

func blobPath(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// digester passes writes through while hashing and counting them.
type digester struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newDigester(w io.Writer) *digester {
	return &digester{w: w, h: sha256.New()}
}

func (d *digester) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	return n, err
}

func (d *digester) digest() string {
	return "sha256:" + hex.EncodeToString(d.h.Sum(nil))
}
