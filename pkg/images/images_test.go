package images

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, b []byte) ([]string, map[string]tarEntry) {
	t.Helper()
	var order []string
	entries := make(map[string]tarEntry)
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", hdr.Name, err)
		}
		if _, dup := entries[hdr.Name]; dup {
			t.Fatalf("duplicate tar entry %s", hdr.Name)
		}
		order = append(order, hdr.Name)
		entries[hdr.Name] = tarEntry{hdr: hdr, data: data}
	}
	return order, entries
}

func blob(t *testing.T, entries map[string]tarEntry, d descriptor) []byte {
	t.Helper()
	e, ok := entries[blobPath(d.Digest)]
	if !ok {
		t.Fatalf("blob %s missing", d.Digest)
	}
	if got := sha(e.data); got != d.Digest {
		t.Fatalf("blob %s has digest %s", d.Digest, got)
	}
	if int64(len(e.data)) != d.Size {
		t.Fatalf("blob %s has size %d, descriptor says %d", d.Digest, len(e.data), d.Size)
	}
	return e.data
}

func testSpec(t *testing.T) Spec {
	t.Helper()
	src := filepath.Join(t.TempDir(), "pause-binary")
	if err := os.WriteFile(src, []byte("\x7fELF pretend binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Spec{
		Name: "skiff/pause:3.10",
		Files: []File{
			{Path: "/etc/skiff/config.txt", Mode: 0o640, Content: []byte("hello\n")},
			{Path: "/pause", Mode: 0o755, Source: src},
		},
		Entrypoint:   []string{"/pause"},
		User:         "65535:65535",
		ExposedPorts: []string{"53/udp", "9153"},
		Env:          []string{"PATH=/"},
		Labels:       map[string]string{"b": "2", "a": "1"},
	}
}

func TestWriteLayout(t *testing.T) {
	spec := testSpec(t)
	var buf bytes.Buffer
	digest, err := Write(&buf, spec)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	_, entries := readTar(t, buf.Bytes())

	layout, ok := entries["oci-layout"]
	if !ok {
		t.Fatal("oci-layout missing")
	}
	var lv struct{ ImageLayoutVersion string }
	if err := json.Unmarshal(layout.data, &lv); err != nil || lv.ImageLayoutVersion != "1.0.0" {
		t.Fatalf("oci-layout = %q (%v)", layout.data, err)
	}

	var idx index
	if err := json.Unmarshal(entries["index.json"].data, &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if idx.SchemaVersion != 2 || idx.MediaType != mediaTypeIndex || len(idx.Manifests) != 1 {
		t.Fatalf("unexpected index: %+v", idx)
	}
	md := idx.Manifests[0]
	if md.MediaType != mediaTypeManifest {
		t.Errorf("manifest media type %q", md.MediaType)
	}
	if got := md.Annotations[annotationContainerdName]; got != "docker.io/skiff/pause:3.10" {
		t.Errorf("containerd name annotation %q", got)
	}
	if got := md.Annotations[annotationRefName]; got != "3.10" {
		t.Errorf("ref.name annotation %q", got)
	}
	if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != runtime.GOARCH {
		t.Errorf("platform %+v", md.Platform)
	}
	if md.Digest != digest {
		t.Errorf("index digest %s, Write returned %s", md.Digest, digest)
	}

	var m manifest
	if err := json.Unmarshal(blob(t, entries, md), &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if m.SchemaVersion != 2 || m.MediaType != mediaTypeManifest || m.Config.MediaType != mediaTypeConfig {
		t.Fatalf("unexpected manifest: %+v", m)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != mediaTypeLayer {
		t.Fatalf("unexpected layers: %+v", m.Layers)
	}

	var cfg imageConfig
	if err := json.Unmarshal(blob(t, entries, m.Config), &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	layer := blob(t, entries, m.Layers[0])
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != sha(layer) {
		t.Errorf("rootfs %+v, layer digest %s", cfg.RootFS, sha(layer))
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH || cfg.Created != "1970-01-01T00:00:00Z" {
		t.Errorf("config os/arch/created: %s %s %s", cfg.OS, cfg.Architecture, cfg.Created)
	}
	c := cfg.Config
	if strings.Join(c.Entrypoint, " ") != "/pause" || c.User != "65535:65535" || strings.Join(c.Env, ",") != "PATH=/" {
		t.Errorf("container config %+v", c)
	}
	if _, ok := c.ExposedPorts["53/udp"]; !ok || len(c.ExposedPorts) != 2 {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	if _, ok := c.ExposedPorts["9153/tcp"]; !ok {
		t.Errorf("bare port not normalized to tcp: %v", c.ExposedPorts)
	}
	if c.Labels["a"] != "1" || c.Labels["b"] != "2" {
		t.Errorf("labels %v", c.Labels)
	}

	order, files := readTar(t, layer)
	wantOrder := []string{"etc/", "etc/skiff/", "etc/skiff/config.txt", "pause"}
	if strings.Join(order, " ") != strings.Join(wantOrder, " ") {
		t.Errorf("layer entries %v, want %v", order, wantOrder)
	}
	src, err := os.ReadFile(spec.Files[1].Source)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		typ  byte
		mode int64
		data []byte
	}{
		"etc/":                 {tar.TypeDir, 0o755, nil},
		"etc/skiff/":           {tar.TypeDir, 0o755, nil},
		"etc/skiff/config.txt": {tar.TypeReg, 0o640, []byte("hello\n")},
		"pause":                {tar.TypeReg, 0o755, src},
	}
	for name, w := range want {
		e, ok := files[name]
		if !ok {
			t.Errorf("layer lacks %s", name)
			continue
		}
		h := e.hdr
		if h.Typeflag != w.typ || h.Mode != w.mode || !bytes.Equal(e.data, w.data) {
			t.Errorf("%s: type %c mode %o data %q, want type %c mode %o data %q", name, h.Typeflag, h.Mode, e.data, w.typ, w.mode, w.data)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: uid %d gid %d mtime %v", name, h.Uid, h.Gid, h.ModTime)
		}
	}
}

func TestWriteReproducible(t *testing.T) {
	spec := testSpec(t)
	var a, b bytes.Buffer
	da, err := Write(&a, spec)
	if err != nil {
		t.Fatal(err)
	}
	// Reordering files and label insertion must not matter.
	spec.Files[0], spec.Files[1] = spec.Files[1], spec.Files[0]
	spec.Labels = map[string]string{"a": "1", "b": "2"}
	db, err := Write(&b, spec)
	if err != nil {
		t.Fatal(err)
	}
	if da != db || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("two writes of the same spec differ: %s vs %s", da, db)
	}

	for i, f := range spec.Files {
		if f.Source != "" {
			if err := os.WriteFile(f.Source, []byte("different"), 0o600); err != nil {
				t.Fatal(err)
			}
			continue
		}
		spec.Files[i].Content = []byte("changed\n")
	}
	dc, err := Write(io.Discard, spec)
	if err != nil {
		t.Fatal(err)
	}
	if dc == da {
		t.Fatal("changing file content did not change the digest")
	}

	spec.Created = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	dd, err := Write(io.Discard, spec)
	if err != nil {
		t.Fatal(err)
	}
	if dd == dc {
		t.Fatal("changing Created did not change the digest")
	}
}

// A node decides whether to import a system image by its Digest, so it must
// be exactly what Write, which produces the import, returns.
func TestDigestMatchesWrite(t *testing.T) {
	spec := testSpec(t)
	for _, change := range []func(){
		func() {},
		func() { spec.User = "1000:1000" },
		func() { spec.Files[0].Mode = 0o700 },
	} {
		change()
		want, err := Write(io.Discard, spec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Digest(spec)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("Digest = %s, Write returned %s", got, want)
		}
	}
	spec.Name = "Not A Reference"
	if _, err := Digest(spec); err == nil {
		t.Fatal("Digest accepted an invalid image name")
	}
}

func TestWriteRejectsBadFiles(t *testing.T) {
	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]File{
		"relative":        {{Path: "pause", Content: []byte("x")}},
		"unclean":         {{Path: "/a/../pause", Content: []byte("x")}},
		"root":            {{Path: "/", Content: []byte("x")}},
		"duplicate":       {{Path: "/a", Content: []byte("x")}, {Path: "/a", Content: []byte("y")}},
		"file as parent":  {{Path: "/a", Content: []byte("x")}, {Path: "/a/b", Content: []byte("y")}},
		"parent as file":  {{Path: "/a/b", Content: []byte("x")}, {Path: "/a", Content: []byte("y")}},
		"content+source":  {{Path: "/a", Content: []byte("x"), Source: src}},
		"missing source":  {{Path: "/a", Source: src + ".missing"}},
		"directory mode":  {{Path: "/a", Mode: os.ModeDir | 0o755}},
		"source is a dir": {{Path: "/a", Source: filepath.Dir(src)}},
	}
	for name, files := range cases {
		if _, err := Write(io.Discard, Spec{Name: "a", Files: files}); err == nil {
			t.Errorf("%s: Write succeeded", name)
		}
	}
	if _, err := Write(io.Discard, Spec{Name: "a", ExposedPorts: []string{"53/icmp"}}); err == nil {
		t.Error("bad exposed port accepted")
	}
	if _, err := Write(io.Discard, Spec{Name: "Bad"}); err == nil {
		t.Error("bad name accepted")
	}
}

func TestNormalize(t *testing.T) {
	good := map[string]string{
		"pause":                               "docker.io/library/pause:latest",
		"pause:3.10":                          "docker.io/library/pause:3.10",
		"skiff/pause:3.10":                    "docker.io/skiff/pause:3.10",
		"docker.io/skiff/pause:3.10":          "docker.io/skiff/pause:3.10",
		"docker.io/pause":                     "docker.io/library/pause:latest",
		"registry.local:5000/a/b":             "registry.local:5000/a/b:latest",
		"localhost/x:V1_0.a-b":                "localhost/x:V1_0.a-b",
		"ghcr.io/skiff-io/core__dns.x:1":      "ghcr.io/skiff-io/core__dns.x:1",
		"[::1]:5000/a:b":                      "[::1]:5000/a:b",
		"a/b/c/d:" + strings.Repeat("t", 128): "docker.io/a/b/c/d:" + strings.Repeat("t", 128),
	}
	for in, want := range good {
		got, err := Normalize(in)
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"",
		"UPPER/case",
		"a/b:bad tag",
		"a//b",
		"a/",
		"/a",
		"a:",
		"a:-x",
		"a:" + strings.Repeat("t", 129),
		"a/b@sha256:" + strings.Repeat("0", 64),
		"a..b",
		"a-/b",
		"bad_host.:5000/a",
		"registry.local:5000/",
	}
	for _, in := range bad {
		if got, err := Normalize(in); err == nil {
			t.Errorf("Normalize(%q) = %q, want error", in, got)
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pause.tar")
	spec := testSpec(t)
	digest, err := WriteFile(path, spec)
	if err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	var buf bytes.Buffer
	want, err := Write(&buf, spec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if digest != want || !bytes.Equal(got, buf.Bytes()) {
		t.Fatalf("file content differs from Write output (digest %s vs %s, %d vs %d bytes)", digest, want, len(got), buf.Len())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "pause.tar" {
		t.Fatalf("directory holds %v, want only pause.tar", ents)
	}

	// A failed write must neither leave a temp file nor clobber the old file.
	if _, err := WriteFile(path, Spec{Name: "BAD"}); err == nil {
		t.Fatal("WriteFile with invalid name succeeded")
	}
	ents, _ = os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("failed WriteFile left %v", ents)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, got) {
		t.Fatal("failed WriteFile changed the existing file")
	}
}

func TestSourceChangedDuringWrite(t *testing.T) {
	src := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(src, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	entries, err := planLayer([]File{{Path: "/bin", Source: src}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("123"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeLayer(io.Discard, entries, time.Unix(0, 0)); err == nil {
		t.Fatal("a source that shrank after planning was not detected")
	}
}
