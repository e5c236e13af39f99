package images

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A tree's directories, files and links reach the layer with their kinds
// and modes, and a directory's own mode beats the implied 0755.
func TestTreeFilesInLayer(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"bin", "tmp", "etc/nginx"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), []byte("#!busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/nginx/nginx.conf"), []byte("daemon off;"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	files, err := TreeFiles(root, "")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := planLayer(files)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeLayer(&buf, plan, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	got := map[string]*tar.Header{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	want := map[string]struct {
		typ  byte
		mode int64
		link string
	}{
		"bin/":                 {tar.TypeDir, 0o755, ""},
		"bin/busybox":          {tar.TypeReg, 0o755, ""},
		"bin/sh":               {tar.TypeSymlink, 0o777, "busybox"},
		"tmp/":                 {tar.TypeDir, 0o1777, ""},
		"etc/":                 {tar.TypeDir, 0o755, ""},
		"etc/nginx/":           {tar.TypeDir, 0o755, ""},
		"etc/nginx/nginx.conf": {tar.TypeReg, 0o644, ""},
	}
	if len(got) != len(want) {
		t.Errorf("layer has %d entries, want %d: %v", len(got), len(want), got)
	}
	for name, w := range want {
		h := got[name]
		if h == nil {
			t.Errorf("no %s in the layer", name)
			continue
		}
		if h.Typeflag != w.typ || h.Mode != w.mode || h.Linkname != w.link {
			t.Errorf("%s: type %c mode %o link %q, want %c %o %q", name, h.Typeflag, h.Mode, h.Linkname, w.typ, w.mode, w.link)
		}
	}
}

func TestLinkAndDirRefuseContent(t *testing.T) {
	for _, f := range []File{
		{Path: "/a", Link: "b", Content: []byte("x")},
		{Path: "/a", Dir: true, Source: "/etc/hostname"},
		{Path: "/a", Dir: true, Link: "b"},
	} {
		if _, err := planFile(f); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
	// A link is not a directory: nothing may be placed below it.
	if _, err := planLayer([]File{{Path: "/bin", Link: "usr/bin"}, {Path: "/bin/sh", Content: []byte("x")}}); err == nil {
		t.Error("a file below a symbolic link accepted")
	}
}
