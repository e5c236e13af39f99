package containerd

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestIsArchive(t *testing.T) {
	for name, want := range map[string]bool{
		"/i/a.tar": true, "/i/a.tar.gz": true, "/i/a.tgz": true, "/i/a.tar.zst": true, "/i/a.tzst": true,
		"/i/a.txt": false, "/i/a.tar.bz2": false, "/i/.a.tar.tmp": false, "/i/.a.tar": false,
	} {
		if got := IsArchive(name); got != want {
			t.Errorf("IsArchive(%q) = %v", name, got)
		}
	}
}

func TestFullReference(t *testing.T) {
	for in, want := range map[string]string{
		"latest":                   "",
		"busybox:1.36":             "docker.io/library/busybox:1.36",
		"docker.io/skiff/pause:3":  "docker.io/skiff/pause:3",
		"reg.example:5000/app:1.0": "reg.example:5000/app:1.0",
		"Not A Ref/x":              "",
	} {
		if got := fullReference(in); got != want {
			t.Errorf("fullReference(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestImportFileRejects(t *testing.T) {
	dir := t.TempDir()
	if _, err := ImportFile(context.Background(), "/nonexistent.sock", filepath.Join(dir, "x.zip")); err == nil || !strings.Contains(err.Error(), "not an image archive") {
		t.Errorf("zip: %v", err)
	}
	gz := filepath.Join(dir, "x.tar.gz")
	writeRegistries(t, gz, "plain text")
	if _, err := ImportFile(context.Background(), "/nonexistent.sock", gz); err == nil || !strings.Contains(err.Error(), "not gzip-compressed") {
		t.Errorf("gzip: %v", err)
	}
	zst := filepath.Join(dir, "x.tar.zst")
	writeRegistries(t, zst, "plain text")
	if _, err := ImportFile(context.Background(), "/nonexistent.sock", zst); err == nil || !strings.Contains(err.Error(), "not zstd-compressed") {
		t.Errorf("zstd: %v", err)
	}
}

// syncBuffer is a log sink that tests may read while goroutines log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// captureLogs collects logrus output for the test's duration.
func captureLogs(t *testing.T) *syncBuffer {
	t.Helper()
	buf := &syncBuffer{}
	old := logrus.StandardLogger().Out
	logrus.SetOutput(buf)
	t.Cleanup(func() { logrus.SetOutput(old) })
	return buf
}

func TestImageDirSkipsBrokenAndSeen(t *testing.T) {
	logs := captureLogs(t)
	dir := filepath.Join(t.TempDir(), "images") // created by ImportAll
	d := &ImageDir{Dir: dir, Address: "/nonexistent.sock"}
	if err := d.ImportAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.tar.gz")
	writeRegistries(t, broken, "not gzip")
	writeRegistries(t, filepath.Join(dir, "notes.txt"), "ignored")
	if err := d.ImportAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "import "+broken+": "); n != 1 {
		t.Fatalf("broken file logged %d times, want once:\n%s", n, logs)
	}
	// Unchanged: not tried again.
	if err := d.ImportAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "import "+broken+": "); n != 1 {
		t.Fatalf("unchanged broken file retried:\n%s", logs)
	}
	if strings.Contains(logs.String(), "notes.txt") {
		t.Errorf("non-archive touched:\n%s", logs)
	}
}

func TestImageDirWatch(t *testing.T) {
	logs := captureLogs(t)
	old := settle
	settle = 100 * time.Millisecond
	t.Cleanup(func() { settle = old })

	dir := filepath.Join(t.TempDir(), "images")
	watching := make(chan struct{})
	d := &ImageDir{Dir: dir, Address: "/nonexistent.sock", watching: func() { close(watching) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Watch(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	select {
	case <-watching:
	case err := <-done:
		t.Fatalf("Watch returned before watching: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not start watching")
	}
	f := filepath.Join(dir, "new.tgz")
	writeRegistries(t, f, "not gzip")
	for !strings.Contains(logs.String(), "import "+f+": ") {
		if time.Now().After(deadline) {
			t.Fatalf("new file not picked up:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
