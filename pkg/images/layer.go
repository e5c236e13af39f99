package images

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// layerEntry is one tar entry of the layer, planned up front so that both
// passes over the layer (digest, then output) emit exactly the same stream.
type layerEntry struct {
	name    string // tar name: relative, directories end in "/"
	dir     bool
	link    string // symbolic link target
	mode    int64
	content []byte
	source  string
	size    int64
}

// permission bits plus the special bits tar can express; anything else
// (directories, symlinks, devices, ...) is outside what File can describe.
const allowedModeBits = os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky

func planLayer(files []File) ([]layerEntry, error) {
	entries := make(map[string]layerEntry)
	isDir := make(map[string]bool)    // implied by a path below it
	explicit := make(map[string]bool) // directories a File names
	for i, f := range files {
		e, err := planFile(f)
		if err != nil {
			return nil, fmt.Errorf("file %d (%q): %w", i, f.Path, err)
		}
		key := strings.TrimSuffix(e.name, "/")
		if prev, dup := entries[key]; dup && !(e.dir && prev.dir && !explicit[key]) || isDir[key] && !e.dir {
			return nil, fmt.Errorf("file %q: path is used more than once or is also a parent directory", f.Path)
		}
		entries[key] = e
		if e.dir {
			explicit[key] = true
		}
		for d := path.Dir(key); d != "."; d = path.Dir(d) {
			if prev, ok := entries[d]; ok && !prev.dir {
				return nil, fmt.Errorf("file %q: parent %q is not a directory", f.Path, "/"+d)
			}
			isDir[d] = true
			if _, ok := entries[d]; !ok {
				entries[d] = layerEntry{name: d + "/", dir: true, mode: 0o755}
			}
		}
	}

	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	// A parent is a prefix of its children, so plain string order already
	// puts every directory before its contents.
	sort.Strings(keys)
	out := make([]layerEntry, 0, len(keys))
	for _, k := range keys {
		out = append(out, entries[k])
	}
	return out, nil
}

func planFile(f File) (layerEntry, error) {
	if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
		return layerEntry{}, fmt.Errorf("path must be absolute, clean and not the root")
	}
	if f.Mode&^allowedModeBits != 0 {
		return layerEntry{}, fmt.Errorf("mode %v: only regular files with permission, setuid, setgid and sticky bits are supported", f.Mode)
	}
	name := strings.TrimPrefix(f.Path, "/")
	switch {
	case f.Dir && f.Link != "":
		return layerEntry{}, fmt.Errorf("both Dir and Link are set")
	case (f.Dir || f.Link != "") && (f.Content != nil || f.Source != ""):
		return layerEntry{}, fmt.Errorf("a directory or link has no Content or Source")
	case f.Dir:
		mode := f.Mode
		if mode == 0 {
			mode = 0o755
		}
		return layerEntry{name: name + "/", dir: true, mode: tarMode(mode)}, nil
	case f.Link != "":
		return layerEntry{name: name, link: f.Link, mode: 0o777}, nil
	}
	mode := f.Mode
	if mode == 0 {
		// The zero value would yield an unreadable file, which is never what
		// a caller that forgot Mode wants.
		mode = 0o644
	}
	e := layerEntry{name: name, mode: tarMode(mode)}

	if f.Source == "" {
		e.content = f.Content
		e.size = int64(len(f.Content))
		return e, nil
	}
	if f.Content != nil {
		return layerEntry{}, fmt.Errorf("both Content and Source are set")
	}
	info, err := os.Stat(f.Source)
	if err != nil {
		return layerEntry{}, fmt.Errorf("source: %w", err)
	}
	if !info.Mode().IsRegular() {
		return layerEntry{}, fmt.Errorf("source %q is not a regular file", f.Source)
	}
	e.source = f.Source
	e.size = info.Size()
	return e, nil
}

func tarMode(m os.FileMode) int64 {
	mode := int64(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// writeLayer emits the uncompressed layer tar. Everything that could vary
// between runs (owner, times, order) is fixed so the digest is reproducible.
func writeLayer(w io.Writer, entries []layerEntry, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			ModTime: mtime,
		}
		switch {
		case e.dir:
			hdr.Typeflag = tar.TypeDir
		case e.link != "":
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = e.link
		default:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing layer header for %q: %w", e.name, err)
		}
		if e.dir || e.link != "" {
			continue
		}
		if e.source == "" {
			if _, err := tw.Write(e.content); err != nil {
				return fmt.Errorf("writing layer content for %q: %w", e.name, err)
			}
			continue
		}
		if err := copySource(tw, e); err != nil {
			return fmt.Errorf("writing layer content for %q: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finishing layer: %w", err)
	}
	return nil
}

func copySource(w io.Writer, e layerEntry) error {
	f, err := os.Open(e.source)
	if err != nil {
		return fmt.Errorf("opening source: %w", err)
	}
	defer f.Close()
	// The header already promised e.size bytes, so a file that changed size
	// since planning must fail rather than produce a corrupt archive.
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat source: %w", err)
	}
	if info.Size() != e.size {
		return fmt.Errorf("source %q changed size from %d to %d bytes while building the image", e.source, e.size, info.Size())
	}
	if _, err := io.CopyN(w, f, e.size); err != nil {
		return fmt.Errorf("copying source %q: %w", e.source, err)
	}
	return nil
}
