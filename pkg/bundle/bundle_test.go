package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/pkg/layout"
)

func makeArchive(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractArchiveContentAddressed(t *testing.T) {
	dir := t.TempDir()
	a := makeArchive(t, map[string]string{"bin/runc": "#!/bin/sh\necho runc\n", "bin/bridge": "b"})
	binDir, err := ExtractArchive(a, layout.New(dir).HelpersDir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(binDir, layout.New(dir).HelpersDir+string(filepath.Separator)) || filepath.Base(binDir) != "bin" {
		t.Fatalf("unexpected bin dir %s", binDir)
	}
	fi, err := os.Stat(filepath.Join(binDir, "runc"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Fatalf("runc mode %v, want 0755", fi.Mode().Perm())
	}

	// Same content: same folder, reused without rewriting.
	again, err := ExtractArchive(a, layout.New(dir).HelpersDir)
	if err != nil || again != binDir {
		t.Fatalf("second extract = %s, %v; want %s", again, err, binDir)
	}

	// New content: a new folder; the old one stays for running shims.
	b := makeArchive(t, map[string]string{"bin/runc": "v2"})
	other, err := ExtractArchive(b, layout.New(dir).HelpersDir)
	if err != nil {
		t.Fatal(err)
	}
	if other == binDir {
		t.Fatal("different content extracted to the same folder")
	}
	if _, err := os.Stat(binDir); err != nil {
		t.Fatalf("old helper folder removed: %v", err)
	}
}

func TestExtractIgnoresAndCleansHalfExtracted(t *testing.T) {
	dir := t.TempDir()
	a := makeArchive(t, map[string]string{"bin/runc": "r"})
	// A crash during an earlier extraction leaves a temporary folder behind.
	stale := filepath.Join(dir, "data", ".extract-0123456789abcdef-42")
	if err := os.MkdirAll(filepath.Join(stale, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	binDir, err := ExtractArchive(a, layout.New(dir).HelpersDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(binDir, "runc")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("half-extracted folder still present: %v", err)
	}
	entries, _ := os.ReadDir(layout.New(dir).HelpersDir)
	if len(entries) != 1 {
		t.Fatalf("data dir holds %d entries, want only the extracted folder", len(entries))
	}
}

func TestExtractRejectsUnsafePaths(t *testing.T) {
	dir := t.TempDir()
	a := makeArchive(t, map[string]string{"../evil": "x"})
	if _, err := ExtractArchive(a, layout.New(dir).HelpersDir); err == nil || !strings.Contains(err.Error(), "unsafe path") {
		t.Fatalf("err = %v, want unsafe path", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "evil")); !os.IsNotExist(err) {
		t.Fatal("file written outside the data dir")
	}
}

func TestExtractRejectsCorruptArchive(t *testing.T) {
	if _, err := ExtractArchive([]byte("not zstd"), t.TempDir()); err == nil {
		t.Fatal("corrupt archive accepted")
	}
}

// embeddedOrSkip skips tests of the real archive in builds without it
// (scripts/build-helpers writes it; scripts/test runs that first).
func embeddedOrSkip(t *testing.T) {
	t.Helper()
	f, err := openArchive()
	if errors.Is(err, ErrNoHelpers) {
		t.Skip("no helper archive embedded: run scripts/build-helpers")
	}
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestEmbeddedSumMatchesArchive(t *testing.T) {
	embeddedOrSkip(t)
	if archiveSum == "" {
		t.Fatalf("archive embedded without %s, so every start would hash the whole archive", sumName)
	}
	f, err := openArchive()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))[:16]
	got, err := ContentHash()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("ContentHash() = %s from %s, but the archive hashes to %s: the sum is stale", got, sumName, want)
	}
}

// allocated returns the bytes f allocates on the Go heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// The archive is tens of MiB: extracting it must stream it, and a start
// that finds it extracted must not read it.
func TestExtractStreamsEmbeddedArchive(t *testing.T) {
	embeddedOrSkip(t)
	size := len(archive)
	dir := t.TempDir()
	var binDir string
	var err error
	cold := allocated(func() { binDir, err = Extract(layout.New(dir).HelpersDir) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(binDir, "runc")); err != nil {
		t.Fatalf("runc not extracted: %v", err)
	}
	// Decoding allocates the compression window once (archiveWindow) and
	// a few MiB of tables and buffers, none of it kept; a copy of the
	// archive would add all of its size.
	if limit := archiveWindow + uint64(size)/2; cold > limit {
		t.Errorf("extracting a %d-byte archive allocated %d bytes; it should stream (at most %d)", size, cold, limit)
	}
	// A later start finds the folder and leaves the archive alone.
	hash, err := ContentHash()
	if err != nil {
		t.Fatal(err)
	}
	again, read, err := extract(hash, layout.New(dir).HelpersDir, func() (io.ReadCloser, error) {
		t.Error("the archive was opened although its helpers are extracted")
		return openArchive()
	})
	if err != nil || read || again != binDir {
		t.Fatalf("second extraction: %q, read %v, %v; want %q", again, read, err, binDir)
	}
}

// Once the archive's pages are given back, reading the archive still
// gives its bytes: the kernel maps them back from the executable.
func TestReleasedArchiveReadsTheSame(t *testing.T) {
	embeddedOrSkip(t)
	if _, err := io.Copy(io.Discard, strings.NewReader(archive)); err != nil {
		t.Fatal(err)
	}
	if err := dropPages(archive); err != nil {
		t.Fatalf("madvise: %v", err)
	}
	sum := sha256.Sum256([]byte(archive))
	if got := hex.EncodeToString(sum[:]); got != strings.TrimSpace(archiveSum) {
		t.Fatalf("the archive hashes to %s after its pages were released, want %s", got, archiveSum)
	}
}

// dropPages must drop only the whole pages inside the string.
func TestDropPagesStaysInside(t *testing.T) {
	page := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 6*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = 1
	}
	// From the middle of page 0 to the middle of page 5: pages 1 to 4
	// are whole; anonymous pages dropped read back as zeros.
	if err := dropPages(unsafe.String(&mem[page/2], 5*page)); err != nil {
		t.Fatal(err)
	}
	for i, want := range map[int]byte{0: 1, page / 2: 1, page - 1: 1, page: 0, 3 * page: 0, 5*page - 1: 0, 5 * page: 1, 6*page - 1: 1} {
		if mem[i] != want {
			t.Errorf("byte %d is %d after dropPages, want %d", i, mem[i], want)
		}
	}
}

// Extractions racing on one data dir (a node starting while `skiff crictl`
// runs, say) all get the same complete folder, and nothing half-extracted
// stays behind.
func TestConcurrentExtractsAgree(t *testing.T) {
	embeddedOrSkip(t)
	dir := t.TempDir()
	dirs := make(chan string, 3)
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() {
			d, err := Extract(layout.New(dir).HelpersDir)
			dirs <- d
			errs <- err
		}()
	}
	var binDir string
	for i := 0; i < 3; i++ {
		d, err := <-dirs, <-errs
		if err != nil {
			t.Fatal(err)
		}
		if binDir != "" && d != binDir {
			t.Fatalf("Extract returned %q and %q", binDir, d)
		}
		binDir = d
	}
	if _, err := os.Stat(filepath.Join(binDir, "runc")); err != nil {
		t.Fatalf("runc not extracted: %v", err)
	}
	entries, err := os.ReadDir(layout.New(dir).HelpersDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("data dir holds %v; want only the extracted folder", names)
	}
}
