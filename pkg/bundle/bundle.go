// Package bundle carries the helper executables a node needs beside skiff
// itself (runc, the CNI plugins, the containerd shim) inside the skiff
// binary, and extracts them once per content to the data dir.
package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/sirupsen/logrus"
)

// archive and archiveSum are the helper archive (a zstd-compressed tar) and the hex
// SHA-256 of it, embedded by embedded.go, which scripts/build-helpers
// writes beside the archive; both are build products, so a tree that was
// never built compiles without them and reports ErrNoHelpers. The recorded
// sum spares every start a read of the whole archive. Strings, not an
// embed.FS, so that the archive's place in memory is known and its pages
// can be given back after the extraction (releaseArchive).
var archive, archiveSum string

// archiveName and sumName are the embedded files, named in messages.
const (
	archiveName = "assets/helpers.tar.zst"
	sumName     = "assets/helpers.tar.zst.sha256"
)

// ErrNoHelpers means the binary was built without the helper archive.
var ErrNoHelpers = errors.New("this skiff binary was built without its helper executables (runc, CNI plugins); build it with scripts/build")

// openArchive streams the embedded helper archive. It is never copied into
// memory whole: a copy of tens of MiB stays resident until the next
// garbage collection, which on an idle node comes minutes later.
func openArchive() (io.ReadCloser, error) {
	if archive == "" {
		return nil, ErrNoHelpers
	}
	return io.NopCloser(strings.NewReader(archive)), nil
}

// Extract unpacks the embedded helpers under helpersDir (a layout's
// HelpersDir) and returns the folder holding the executables. When that
// folder exists, the archive is not read at all.
func Extract(helpersDir string) (string, error) {
	hash, err := ContentHash()
	if err != nil {
		return "", err
	}
	binDir, read, err := extract(hash, helpersDir, openArchive)
	if read {
		releaseArchive()
		// The decoder's window is garbage now; an idle node would not
		// collect it for minutes.
		debug.FreeOSMemory()
	}
	return binDir, err
}

// ContentHash names this binary's helpers: the same build always gives the
// same value, so system images built from the helpers can be tagged with it
// and every node of one skiff version refers to the same tags.
func ContentHash() (string, error) {
	hashOnce.Do(func() { hash, hashErr = embeddedHash() })
	return hash, hashErr
}

var (
	hashOnce sync.Once
	hash     string
	hashErr  error
)

// embeddedHash is the recorded sum of the archive, or, for an archive put
// in place without one, the sum computed by streaming it.
func embeddedHash() (string, error) {
	f, err := openArchive()
	if err != nil {
		return "", err
	}
	defer f.Close()
	if archiveSum != "" {
		sum := strings.TrimSpace(archiveSum)
		if len(sum) != sha256.Size*2 {
			return "", fmt.Errorf("embedded %s holds %q, not a SHA-256; rebuild with scripts/build", sumName, sum)
		}
		return sum[:16], nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash embedded helper archive: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func contentHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:16]
}

// ExtractArchive unpacks a zstd-compressed tar of helpers to
// <helpersDir>/<content-hash>/ and returns its bin folder; see extract.
func ExtractArchive(data []byte, helpersDir string) (string, error) {
	binDir, _, err := extract(contentHash(data), helpersDir, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	return binDir, err
}

// extract unpacks the archive open returns to <parent>/<hash>/ and
// returns its bin folder. The folder is filled under a temporary name and
// renamed into place, so a folder with the final name is always complete;
// an existing one is reused as is, without opening the archive. read says
// whether the archive was read.
func extract(hash, parent string, open func() (io.ReadCloser, error)) (binDir string, read bool, err error) {
	final := filepath.Join(parent, hash)
	binDir = filepath.Join(final, "bin")
	if fi, err := os.Stat(binDir); err == nil && fi.IsDir() {
		return binDir, false, nil
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", read, fmt.Errorf("create %s: %w", parent, err)
	}
	began := time.Now()
	tmp, err := os.MkdirTemp(parent, ".extract-"+hash+"-")
	if err != nil {
		return "", read, fmt.Errorf("create extraction folder in %s: %w", parent, err)
	}
	defer os.RemoveAll(tmp)
	r, err := open()
	if err != nil {
		return "", false, err
	}
	read = true
	err = untar(r, tmp)
	r.Close()
	if err != nil {
		return "", read, fmt.Errorf("extract helpers to %s: %w", tmp, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", read, err
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another skiff extracting the same content may have won the race.
		if fi, statErr := os.Stat(binDir); statErr == nil && fi.IsDir() {
			return binDir, read, nil
		}
		return "", read, fmt.Errorf("move helpers into %s: %w", final, err)
	}
	removeStale(parent, hash)
	// A first start on a slow disk spends seconds here: say so.
	logrus.Infof("unpacked the helper executables into %s in %s", final, time.Since(began).Round(10*time.Millisecond))
	return binDir, read, nil
}

// removeStale deletes interrupted extractions. Older content folders stay:
// running containerd shims of a previous version may still execute from them.
func removeStale(parent, keep string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".extract-") && !strings.HasPrefix(e.Name(), ".extract-"+keep) {
			os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
}

// archiveWindow bounds the decompression's memory: scripts/build-helpers
// compresses with a window of this size (zstd --long=27), so that code a
// helper shares with the helpers before it is stored once (the archive is
// a fifth smaller than with zstd's default window). The decoder holds that
// much history while a first start unpacks; Extract gives it back.
const archiveWindow = 128 << 20

func untar(archive io.Reader, dst string) error {
	zr, err := zstd.NewReader(archive, zstd.WithDecoderMaxWindow(archiveWindow), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if name == "." {
			continue
		}
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("unsafe path %q in archive", h.Name)
		}
		target := filepath.Join(dst, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := writeFile(target, tr, os.FileMode(h.Mode)&0o755); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unsupported entry %q (type %c) in archive", h.Name, h.Typeflag)
		}
	}
}

func writeFile(name string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
